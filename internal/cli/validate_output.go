package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/egwct/egwct/internal/printer"
	"github.com/egwct/egwct/pkg/validate"
)

// validateSpec are validate's -o formats: github and sarif are its own.
var validateSpec = printer.Spec{Default: printer.Table,
	Formats: []string{printer.Table, printer.JSON, printer.YAML, printer.JSONPath, printer.GoTemplate, "github", "sarif"},
	Aliases: map[string]string{"text": printer.Table}, Headerless: true}

// printReport writes a report in the printer's format.
func printReport(ios *IO, p *printer.Printer, r *report) error {
	switch p.Format {
	case "github":
		return renderGitHub(ios, r)
	case "sarif":
		return renderSARIF(ios.Out, r)
	}
	return printErr(p.Print(ios.Out, printer.View{
		Doc:   newValidateReport(r),
		Table: func(io.Writer, printer.TableOptions) error { return renderText(ios, r) },
	}))
}

// ANSI styles for the text output on a terminal.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[1;31m"
	ansiYellow = "\x1b[1;33m"
	ansiCyan   = "\x1b[36m"
	ansiDim    = "\x1b[2m"
)

func renderText(ios *IO, r *report) error {
	style := func(code, s string) string {
		if !ios.Color {
			return s
		}
		return code + s + ansiReset
	}
	var b strings.Builder
	for _, it := range r.items {
		f := it.Finding
		sev := f.Severity.String()
		switch f.Severity {
		case validate.Error:
			sev = style(ansiRed, sev)
		case validate.Warning:
			sev = style(ansiYellow, sev)
		default:
			sev = style(ansiCyan, sev)
		}
		if f.File != "" {
			b.WriteString(style(ansiBold, clean(f.Pos().String())) + ": ")
		}
		fmt.Fprintf(&b, "%s: %s %s\n", sev, clean(f.Message), style(ansiDim, "["+f.Rule+"]"))
		if f.Policy != "" {
			fmt.Fprintf(&b, "    policy %s, %s\n", clean(f.Policy), f.Field)
		}
		if it.source != "" && f.Column > 0 {
			src := clean(strings.TrimRight(it.source, "\r"))
			num := fmt.Sprint(f.Line)
			fmt.Fprintf(&b, "    %s | %s\n", num, src)
			fmt.Fprintf(&b, "    %s | %s%s\n", strings.Repeat(" ", len(num)), caretPad(src, f.Column), style(ansiRed, "^"))
		}
		if f.Suggestion != "" {
			fmt.Fprintf(&b, "    hint: %s\n", clean(f.Suggestion))
		}
	}
	fmt.Fprintf(&b, "%s: %s in %s (%s), profile %s\n",
		verdict(r, ios.Color), counts(r), plural(r.policies, "policy", "policies"), plural(r.files, "file", "files"), r.profile)
	_, err := ios.Out.Write([]byte(b.String()))
	return err
}

// caretPad is the blank before a caret under column col (1-based, in
// characters) of line: a tab where the line has one, so that the caret
// lands under the column whatever width the terminal gives a tab.
func caretPad(line string, col int) string {
	var b strings.Builder
	for _, r := range line {
		if col <= 1 {
			break
		}
		col--
		if r == '\t' {
			b.WriteByte('\t')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

func verdict(r *report, color bool) string {
	s, code := "ok", "\x1b[1;32m"
	if r.errors > 0 {
		s, code = "failed", ansiRed
	}
	if !color {
		return s
	}
	return code + s + ansiReset
}

func counts(r *report) string {
	return fmt.Sprintf("%s, %s, %s",
		plural(r.errors, "error", "errors"), plural(r.warnings, "warning", "warnings"), plural(r.notices, "note", "notes"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// validateReport is the document of `egwct validate -o json|yaml`
// (docs/schemas/validate-report.json).
type validateReport struct {
	printer.Header
	CiliumVersion string             `json:"ciliumVersion"`
	Profile       string             `json:"profile"`
	Files         int                `json:"files"`
	Policies      int                `json:"policies"`
	Summary       jsonSummary        `json:"summary"`
	Findings      []validate.Finding `json:"findings"`
}

type jsonSummary struct {
	Errors   int `json:"errors"`
	Warnings int `json:"warnings"`
	Infos    int `json:"infos"`
}

func newValidateReport(r *report) *validateReport {
	out := &validateReport{
		Header: printer.NewHeader("ValidateReport"), CiliumVersion: r.version, Profile: r.profile,
		Files: r.files, Policies: r.policies,
		Summary:  jsonSummary{Errors: r.errors, Warnings: r.warnings, Infos: r.notices},
		Findings: make([]validate.Finding, 0, len(r.items)),
	}
	for _, it := range r.items {
		out.Findings = append(out.Findings, it.Finding)
	}
	return out
}

// renderGitHub writes GitHub Actions workflow commands, which the runner
// turns into annotations on the changed lines.
func renderGitHub(ios *IO, r *report) error {
	var b strings.Builder
	for _, it := range r.items {
		f := it.Finding
		cmd := map[validate.Severity]string{validate.Error: "error", validate.Warning: "warning", validate.Info: "notice"}[f.Severity]
		var props []string
		if f.File != "" {
			props = append(props, "file="+ghProperty(f.File))
			if f.Line > 0 {
				props = append(props, fmt.Sprintf("line=%d", f.Line))
			}
			if f.Column > 0 {
				props = append(props, fmt.Sprintf("col=%d", f.Column))
			}
		}
		props = append(props, "title="+ghProperty("egwct "+f.Rule))
		msg := clean(f.Message)
		if f.Policy != "" {
			msg = "policy " + clean(f.Policy) + ": " + msg
		}
		if f.Suggestion != "" {
			msg += "\n" + clean(f.Suggestion)
		}
		fmt.Fprintf(&b, "::%s %s::%s\n", cmd, strings.Join(props, ","), ghData(msg))
	}
	fmt.Fprintf(&b, "egwct validate: %s in %s (%s), profile %s\n",
		counts(r), plural(r.policies, "policy", "policies"), plural(r.files, "file", "files"), r.profile)
	_, err := ios.Out.Write([]byte(b.String()))
	return err
}

func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func ghProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(clean(s))
}
