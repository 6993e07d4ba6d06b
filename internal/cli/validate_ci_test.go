package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// runEnv runs egwct with an environment.
func runEnv(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ios, out, errOut := TestIO("")
	ios.Env = func(k string) string { return env[k] }
	code = Main(args, ios)
	return code, out.String(), errOut.String()
}

// TestValidateSARIF checks -o sarif against the SARIF 2.1.0 schema, and
// that every rule links to an anchor that docs/timeouts.md has.
func TestValidateSARIF(t *testing.T) {
	chdirRoot(t)
	code, out, stderr := run(t, "", "validate", "--cilium-version", "1.18.3", "-o", "sarif", "examples/")
	if code != ExitFindings {
		t.Fatalf("exit %d, want 1; stderr: %s", code, stderr)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	abs, _ := filepath.Abs("internal/cli/testdata/sarif-schema-2.1.0.json")
	s, err := c.Compile(abs)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("not JSON: %v\n%.500s", err, out)
	}
	if err := s.Validate(doc); err != nil {
		t.Fatalf("-o sarif does not match the SARIF 2.1.0 schema: %v", err)
	}
	// The schema is strict: a misspelt property would be refused.
	doc.(map[string]any)["runs"].([]any)[0].(map[string]any)["resultz"] = []any{}
	if s.Validate(doc) == nil {
		t.Fatal("the schema accepts an unknown property: the test proves nothing")
	}

	var log sarifLog
	if err := json.Unmarshal([]byte(out), &log); err != nil {
		t.Fatal(err)
	}
	run := log.Runs[0]
	if run.ColumnKind != "unicodeCodePoints" {
		t.Errorf("columnKind %q: egwct's columns count characters, not SARIF's default UTF-16 units", run.ColumnKind)
	}
	timeouts, err := os.ReadFile("docs/timeouts.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range run.Tool.Driver.Rules {
		_, anchor, ok := strings.Cut(r.HelpURI, "#")
		if !ok || !strings.Contains(string(timeouts), fmt.Sprintf(`<a id="%s"></a>`, anchor)) {
			t.Errorf("rule %s: helpUri %s has no anchor in docs/timeouts.md", r.ID, r.HelpURI)
		}
	}
	var found bool
	for _, res := range run.Results {
		if run.Tool.Driver.Rules[res.RuleIndex].ID != res.RuleID {
			t.Errorf("result %s points at rule %d", res.RuleID, res.RuleIndex)
		}
		loc := res.Locations[0].PhysicalLocation
		if res.RuleID == "unknown-key" && loc.ArtifactLocation.URI == "examples/invalid/typos.yaml" &&
			loc.Region != nil && loc.Region.StartLine == 18 && loc.Region.StartColumn == 5 {
			found = true
			if res.Level != "error" || !strings.Contains(res.Message.Text, `did you mean "bpfCtTimeoutRegularTcp"`) {
				t.Errorf("result = %+v", res)
			}
		}
	}
	if !found {
		t.Errorf("no unknown-key result at examples/invalid/typos.yaml:18:5:\n%.3000s", out)
	}
	if n := run.Invocations[0].Notifications; len(n) == 0 || n[0].Descriptor.ID != "profile" {
		t.Errorf("the run's own findings are not notifications: %+v", n)
	}
}

// TestValidateSARIFNodeSettings: the node's settings are about the run, so
// they are a notification (with the node configuration as its location)
// even when they name the --node-config file, never a result that code
// scanning would open an alert for.
func TestValidateSARIFNodeSettings(t *testing.T) {
	chdirRoot(t)
	c := jsonschema.NewCompiler()
	abs, _ := filepath.Abs("internal/cli/testdata/sarif-schema-2.1.0.json")
	schema, err := c.Compile(abs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		nodeConfig    string
		notifications int // node-settings notifications
	}{
		{"", 1},
		{"examples/node/cilium-config.yaml", 1},
		{"examples/node/agent-runtime-config.json", 1},
	} {
		t.Run(tc.nodeConfig, func(t *testing.T) {
			args := []string{"validate", "--cilium-version", "1.18.3", "-o", "sarif", "examples/valid"}
			if tc.nodeConfig != "" {
				args = append(args, "--node-config", tc.nodeConfig)
			}
			code, out, stderr := run(t, "", args...)
			if code != 0 {
				t.Fatalf("exit %d; stderr %s", code, stderr)
			}
			doc, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			if err := schema.Validate(doc); err != nil {
				t.Fatalf("not SARIF 2.1.0: %v", err)
			}
			var log sarifLog
			if err := json.Unmarshal([]byte(out), &log); err != nil {
				t.Fatal(err)
			}
			run := log.Runs[0]
			for _, res := range run.Results {
				if res.RuleID == "node-settings" {
					t.Errorf("node-settings is a result: %+v", res)
				}
			}
			n := 0
			for _, no := range run.Invocations[0].Notifications {
				if no.Descriptor.ID != "node-settings" {
					continue
				}
				n++
				if tc.nodeConfig == "" && len(no.Locations) != 0 {
					t.Errorf("node-settings without a node configuration has a location: %+v", no.Locations)
				}
				if tc.nodeConfig != "" && (len(no.Locations) != 1 || no.Locations[0].PhysicalLocation.ArtifactLocation.URI != tc.nodeConfig) {
					t.Errorf("node-settings locations = %+v, want %s", no.Locations, tc.nodeConfig)
				}
			}
			if n != tc.notifications {
				t.Errorf("%d node-settings notifications, want %d", n, tc.notifications)
			}
		})
	}
}

func TestSARIFURI(t *testing.T) {
	for _, tt := range []struct{ file, uri, base string }{
		{"examples/a b.yaml", "examples/a%20b.yaml", "%SRCROOT%"},
		{"./p.yaml", "p.yaml", "%SRCROOT%"},
		{"<stdin>", "%3Cstdin%3E", "%SRCROOT%"},
		{"/abs/p.yaml", "file:///abs/p.yaml", ""},
	} {
		uri, base := sarifURI(tt.file)
		if uri != tt.uri || base != tt.base {
			t.Errorf("sarifURI(%q) = %q, %q; want %q, %q", tt.file, uri, base, tt.uri, tt.base)
		}
	}
}

// TestValidateStepSummary: with $GITHUB_STEP_SUMMARY set, validate
// appends a Markdown summary, and says when GitHub will not show every
// finding as an annotation.
func TestValidateStepSummary(t *testing.T) {
	chdirRoot(t)
	dir := t.TempDir()
	summary := filepath.Join(dir, "summary.md")
	os.WriteFile(summary, []byte("earlier step\n"), 0o644)
	env := map[string]string{"GITHUB_STEP_SUMMARY": summary}

	code, _, stderr := runEnv(t, env, "validate", "--cilium-version", "1.18.3", "-o", "github", "examples/invalid/typos.yaml")
	if code != ExitFindings {
		t.Fatalf("exit %d; stderr %s", code, stderr)
	}
	got, _ := os.ReadFile(summary)
	s := string(got)
	for _, want := range []string{"earlier step\n", "### :x: egwct validate: Cilium 1.18.3 (profile 1.18)", "5 errors",
		"| error | examples/invalid/typos.yaml:18:5 | crawler-egress | [`unknown-key`](https://github.com/egwct/egwct/blob/main/docs/timeouts.md#rule-unknown-key) |"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "at most 10 annotations") {
		t.Errorf("5 errors do not exceed GitHub's limits:\n%s", s)
	}

	// 12 policies with an unknown key each: more errors than GitHub shows.
	var b strings.Builder
	for i := range 12 {
		fmt.Fprintf(&b, "---\napiVersion: cilium.io/v2\nkind: CiliumEgressGatewayPolicy\nmetadata:\n  name: p%d\n  annotations:\n    egwct.io/connection-timeouts: |\n      bpfCtTimeoutRegularTCP: 5m\n", i)
	}
	many := filepath.Join(dir, "many.yaml")
	os.WriteFile(many, []byte(b.String()), 0o644)
	os.Remove(summary)
	code, out, _ := runEnv(t, env, "validate", "--cilium-version", "1.18.3", "-o", "github", many)
	if code != ExitFindings || strings.Count(out, "::error ") != 12 {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	got, _ = os.ReadFile(summary)
	if !strings.Contains(string(got), "GitHub shows at most 10 annotations of each kind per step and 50 per job; this run has 12 errors") {
		t.Errorf("summary does not warn of the annotation limit:\n%s", got)
	}
	if n := regexp.MustCompile(`(?m)^\| error \|`).FindAllString(string(got), -1); len(n) != 12 {
		t.Errorf("summary lists %d errors, want 12", len(n))
	}

	// An unwritable summary is an environment error.
	code, _, stderr = runEnv(t, map[string]string{"GITHUB_STEP_SUMMARY": filepath.Join(dir, "no", "such", "file")},
		"validate", "--cilium-version", "1.18.3", "examples/valid")
	if code != ExitEnv || !strings.Contains(stderr, "$GITHUB_STEP_SUMMARY") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestMDCell(t *testing.T) {
	if got := mdCell("a|b\n<script>`x`"); got != `a\|b\x0a&lt;script&gt;'x'` {
		t.Errorf("mdCell = %q", got)
	}
}

// TestValidateEnvVersion: $EGWCT_CILIUM_VERSION stands for a missing
// --cilium-version; the flag wins.
func TestValidateEnvVersion(t *testing.T) {
	chdirRoot(t)
	env := map[string]string{envCiliumVersion: "1.14.5"}
	code, out, stderr := runEnv(t, env, "validate", "examples/valid")
	if code != ExitOK || !strings.Contains(out, "Cilium 1.14.5 uses profile 1.14") || !strings.Contains(out, "version from $EGWCT_CILIUM_VERSION") {
		t.Errorf("exit %d\n%s%s", code, out, stderr)
	}
	_, out, _ = runEnv(t, env, "validate", "--cilium-version", "1.18.3", "examples/valid")
	if !strings.Contains(out, "Cilium 1.18.3 uses profile 1.18") || !strings.Contains(out, "version from --cilium-version") {
		t.Errorf("the flag does not win over the environment:\n%s", out)
	}
	code, _, stderr = runEnv(t, map[string]string{envCiliumVersion: "1.99.0"}, "validate", "examples/valid")
	if code != ExitUsage || !strings.Contains(stderr, "$EGWCT_CILIUM_VERSION") {
		t.Errorf("bad version in the environment: exit %d, %s", code, stderr)
	}
}

// TestAdmissionPolicyCommand: the command prints the policy and binding,
// takes the version from the flag or the environment, and refuses bad
// flags with exit 2.
func TestAdmissionPolicyCommand(t *testing.T) {
	code, out, stderr := runEnv(t, nil, "admission-policy", "--cilium-version", "1.17.4", "--validation-actions", "Warn,Audit")
	if code != ExitOK || !strings.Contains(out, "kind: ValidatingAdmissionPolicy\n") || !strings.Contains(out, "kind: ValidatingAdmissionPolicyBinding\n") ||
		!strings.Contains(out, "    - Warn\n    - Audit\n") || !strings.Contains(out, "egwct.io/cilium-version: 1.17.4") {
		t.Errorf("exit %d\n%s%s", code, out, stderr)
	}
	code, out, _ = runEnv(t, map[string]string{envCiliumVersion: "1.14.5"}, "admission-policy")
	if code != ExitOK || !strings.Contains(out, `"bpfCtTimeoutRegularTcp": 21600`) {
		t.Errorf("from $EGWCT_CILIUM_VERSION: exit %d", code)
	}
	for _, args := range [][]string{
		{"admission-policy"},
		{"admission-policy", "--cilium-version", "1.99"},
		{"admission-policy", "--cilium-version", "1.18", "--validation-actions", "Deny,Warn"},
	} {
		if code, _, stderr := runEnv(t, nil, args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want 2: %s", args, code, stderr)
		}
	}
}
