package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/egwct/egwct/pkg/validate"
)

// SARIF 2.1.0 (OASIS), the format GitHub code scanning and other CI
// dashboards read: `egwct validate -o sarif`. Only the parts egwct fills
// are modelled; the test checks the output against the schema.

const (
	sarifVersion = "2.1.0"
	sarifSchema  = "https://json.schemastore.org/sarif-2.1.0.json"
)

type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool        sarifTool         `json:"tool"`
	Invocations []sarifInvocation `json:"invocations"`
	Results     []sarifResult     `json:"results"`
	// ColumnKind says what a column counts: egwct's count characters
	// (code points), where SARIF's default is UTF-16 code units.
	ColumnKind string         `json:"columnKind"`
	Properties map[string]any `json:"properties,omitempty"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID                   string       `json:"id"`
	Name                 string       `json:"name"`
	ShortDescription     sarifMessage `json:"shortDescription"`
	HelpURI              string       `json:"helpUri"`
	Help                 sarifMessage `json:"help"`
	DefaultConfiguration struct {
		Level string `json:"level"`
	} `json:"defaultConfiguration"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifInvocation struct {
	ExecutionSuccessful bool                `json:"executionSuccessful"`
	Notifications       []sarifNotification `json:"toolExecutionNotifications,omitempty"`
}

type sarifNotification struct {
	Level      string          `json:"level"`
	Message    sarifMessage    `json:"message"`
	Descriptor *sarifReference `json:"descriptor,omitempty"`
	Locations  []sarifLocation `json:"locations,omitempty"`
}

type sarifReference struct {
	ID string `json:"id"`
}

type sarifResult struct {
	RuleID     string          `json:"ruleId"`
	RuleIndex  int             `json:"ruleIndex"`
	Level      string          `json:"level"`
	Message    sarifMessage    `json:"message"`
	Locations  []sarifLocation `json:"locations"`
	Properties map[string]any  `json:"properties,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation struct {
		URI       string `json:"uri"`
		URIBaseID string `json:"uriBaseId,omitempty"`
	} `json:"artifactLocation"`
	Region *sarifRegion `json:"region,omitempty"`
}

type sarifRegion struct {
	StartLine   int `json:"startLine"`
	StartColumn int `json:"startColumn,omitempty"`
}

func sarifLevel(s validate.Severity) string {
	switch s {
	case validate.Error:
		return "error"
	case validate.Warning:
		return "warning"
	}
	return "note"
}

// sarifURI is a file name as a relative URI reference against the
// checkout (%SRCROOT%), or an absolute file URI.
func sarifURI(file string) (uri, base string) {
	p := filepath.ToSlash(file)
	if filepath.IsAbs(file) {
		return (&url.URL{Scheme: "file", Path: p}).String(), ""
	}
	return (&url.URL{Path: strings.TrimPrefix(p, "./")}).String(), "%SRCROOT%"
}

func sarifLoc(f validate.Finding) sarifLocation {
	var l sarifLocation
	l.PhysicalLocation.ArtifactLocation.URI, l.PhysicalLocation.ArtifactLocation.URIBaseID = sarifURI(f.File)
	if f.Line > 0 {
		l.PhysicalLocation.Region = &sarifRegion{StartLine: f.Line, StartColumn: f.Column}
	}
	return l
}

// newSARIF builds the SARIF log of a report. Findings with a file are
// results; findings about the run as a whole (the profile, the node's
// settings, quirks) have no place in the code, so they are the
// invocation's notifications.
func newSARIF(r *report) *sarifLog {
	drv := sarifDriver{Name: "egwct", Version: currentBuild().Version,
		InformationURI: "https://github.com/egwct/egwct/blob/main/docs/validate.md"}
	index := map[string]int{}
	for i, rule := range validate.Rules {
		sr := sarifRule{ID: rule.ID, Name: sarifRuleName(rule.ID), ShortDescription: sarifMessage{rule.Summary},
			HelpURI: rule.HelpURL(), Help: sarifMessage{rule.Summary + ". Reference: " + rule.HelpURL()}}
		sr.DefaultConfiguration.Level = sarifLevel(rule.Severity)
		drv.Rules = append(drv.Rules, sr)
		index[rule.ID] = i
	}
	run := sarifRun{Tool: sarifTool{Driver: drv}, Results: []sarifResult{}, ColumnKind: "unicodeCodePoints",
		Properties: map[string]any{"ciliumVersion": r.version, "profile": r.profile, "files": r.files, "policies": r.policies}}
	inv := sarifInvocation{ExecutionSuccessful: true}
	for _, it := range r.items {
		f := it.Finding
		msg := f.Message
		if f.Policy != "" {
			msg = "policy " + f.Policy + ": " + msg
		}
		if f.Suggestion != "" {
			msg += ". Hint: " + f.Suggestion
		}
		// The node's settings name the --node-config file, but are about
		// the run: as a result, code scanning would open an alert on it.
		if f.File == "" || f.Rule == validate.RuleNodeSettings.ID {
			n := sarifNotification{Level: sarifLevel(f.Severity), Message: sarifMessage{msg}, Descriptor: &sarifReference{ID: f.Rule}}
			if f.File != "" {
				n.Locations = []sarifLocation{sarifLoc(f)}
			}
			inv.Notifications = append(inv.Notifications, n)
			continue
		}
		res := sarifResult{RuleID: f.Rule, RuleIndex: index[f.Rule], Level: sarifLevel(f.Severity),
			Message: sarifMessage{msg}, Locations: []sarifLocation{sarifLoc(f)}}
		props := map[string]any{}
		for k, v := range map[string]string{"policy": f.Policy, "field": f.Field, "key": f.Key, "suggestion": f.Suggestion} {
			if v != "" {
				props[k] = v
			}
		}
		if len(props) > 0 {
			res.Properties = props
		}
		run.Results = append(run.Results, res)
	}
	run.Invocations = []sarifInvocation{inv}
	return &sarifLog{Schema: sarifSchema, Version: sarifVersion, Runs: []sarifRun{run}}
}

// sarifRuleName is a rule id in the PascalCase SARIF viewers expect of
// rule names: unknown-key is UnknownKey.
func sarifRuleName(id string) string {
	var b strings.Builder
	for _, part := range strings.Split(id, "-") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func renderSARIF(w io.Writer, r *report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(newSARIF(r))
}

// GitHub shows at most this many annotations of one kind (error, warning,
// notice) per step, and this many per job; the rest are only in the log.
const (
	ghAnnotationsPerKind = 10
	ghAnnotationsPerJob  = 50
	// summaryRows caps the findings listed in the step summary (GitHub
	// takes at most 1 MiB of summary per step).
	summaryRows = 200
)

// writeStepSummary appends a Markdown summary of the report to the file
// GitHub Actions names in $GITHUB_STEP_SUMMARY; it shows on the run's
// page. With -o github it says which findings GitHub does not show as
// annotations.
func writeStepSummary(path string, r *report, format string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("$GITHUB_STEP_SUMMARY: %w", err)
	}
	_, err = io.WriteString(f, stepSummary(r, format))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("$GITHUB_STEP_SUMMARY: %w", err)
	}
	return nil
}

func stepSummary(r *report, format string) string {
	var b strings.Builder
	icon := ":white_check_mark:"
	if r.errors > 0 {
		icon = ":x:"
	}
	fmt.Fprintf(&b, "### %s egwct validate: Cilium %s (profile %s)\n\n", icon, mdCell(r.version), mdCell(r.profile))
	fmt.Fprintf(&b, "%s in %s (%s).\n\n", counts(r), plural(r.policies, "policy", "policies"), plural(r.files, "file", "files"))
	if format == "github" {
		var over []string
		for _, k := range []struct {
			n    int
			kind string
		}{{r.errors, "errors"}, {r.warnings, "warnings"}, {r.notices, "notices"}} {
			if k.n > ghAnnotationsPerKind {
				over = append(over, fmt.Sprintf("%d %s", k.n, k.kind))
			}
		}
		total := r.errors + r.warnings + r.notices
		if len(over) > 0 || total > ghAnnotationsPerJob {
			what := strings.Join(over, ", ")
			if what == "" {
				what = fmt.Sprintf("%d findings", total)
			}
			fmt.Fprintf(&b, "> [!WARNING]\n> GitHub shows at most %d annotations of each kind per step and %d per job; this run has %s, "+
				"so some are not on the pull request. All of them are listed below and in the step's log.\n\n",
				ghAnnotationsPerKind, ghAnnotationsPerJob, what)
		}
	}
	var rows []item
	for _, it := range r.items {
		if it.Severity != validate.Info || it.File != "" {
			rows = append(rows, it)
		}
	}
	if len(rows) == 0 {
		return b.String()
	}
	b.WriteString("| Severity | Where | Policy | Rule | Message |\n|---|---|---|---|---|\n")
	for i, it := range rows {
		if i == summaryRows {
			fmt.Fprintf(&b, "\n%d more findings are in the step's log.\n", len(rows)-summaryRows)
			break
		}
		f := it.Finding
		rule, _ := validate.RuleByID(f.Rule)
		msg := f.Message
		if f.Suggestion != "" {
			msg += " (" + f.Suggestion + ")"
		}
		where := "(the run)"
		if f.File != "" {
			where = mdCell(f.Pos().String())
		}
		fmt.Fprintf(&b, "| %s | %s | %s | [`%s`](%s) | %s |\n", f.Severity, where, mdCell(f.Policy),
			f.Rule, rule.HelpURL(), mdCell(msg))
	}
	return b.String()
}

// mdCell makes text from input safe inside a Markdown table cell: control
// characters escaped (clean), no pipes, HTML or code spans.
func mdCell(s string) string {
	return strings.NewReplacer("|", "\\|", "<", "&lt;", ">", "&gt;", "`", "'").Replace(clean(s))
}
