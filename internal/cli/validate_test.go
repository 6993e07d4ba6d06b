package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egwct/egwct/internal/manifest"
	"github.com/egwct/egwct/internal/printer"
	"github.com/egwct/egwct/pkg/profiles"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// run runs egwct in-process, from the repository root, with stdin.
func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ios, out, errOut := TestIO(stdin)
	code = Main(args, ios)
	return code, out.String(), errOut.String()
}

func chdirRoot(t *testing.T) {
	t.Helper()
	t.Chdir(filepath.Join("..", ".."))
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("internal", "cli", "testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/cli -update)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test ./internal/cli -update to accept):\n%s", path, got)
	}
}

func TestValidateGolden(t *testing.T) {
	chdirRoot(t)
	for _, tt := range []struct {
		golden string
		args   []string
		code   int
	}{
		{"validate-examples.txt", []string{"validate", "--cilium-version", "1.18.3", "examples/"}, 1},
		{"validate-examples.json", []string{"validate", "--cilium-version", "1.18.3", "-o", "json", "examples/"}, 1},
		{"validate-examples.github", []string{"validate", "--cilium-version", "1.18.3", "-o", "github", "examples/"}, 1},
		{"validate-valid-jiffies.txt", []string{"validate", "--cilium-version", "1.17", "--node-config", "examples/node/agent-runtime-config.json", "examples/valid"}, 0},
		{"validate-1.14-configmap.txt", []string{"validate", "--cilium-version", "v1.14.5", "--node-config", "examples/node/cilium-config.yaml", "examples/invalid/longer-than-node.yaml"}, 1},
	} {
		t.Run(tt.golden, func(t *testing.T) {
			code, out, stderr := run(t, "", tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.code, stderr)
			}
			golden(t, tt.golden, out)
		})
	}
}

func TestValidateJSONSchema(t *testing.T) {
	chdirRoot(t)
	_, out, _ := run(t, "", "validate", "--cilium-version", "1.18.3", "-o", "json", "examples/invalid/typos.yaml")
	var rep struct {
		SchemaVersion int
		Summary       struct{ Errors, Warnings, Infos int }
		Findings      []map[string]any
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.SchemaVersion != printer.SchemaVersion || rep.Summary.Errors != 5 || len(rep.Findings) == 0 {
		t.Fatalf("report = %+v", rep)
	}
	for _, f := range rep.Findings {
		for _, k := range []string{"severity", "rule", "message"} {
			if _, ok := f[k]; !ok {
				t.Errorf("finding without %s: %v", k, f)
			}
		}
	}
}

func TestExitCodes(t *testing.T) {
	chdirRoot(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"ClockSource": 9}`), 0o644)
	valid, _ := os.ReadFile("examples/valid/payments-egress.yaml")
	big := filepath.Join(dir, "big.yaml")
	f, _ := os.Create(big)
	f.Truncate(manifest.MaxSize + 1)
	f.Close()
	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stderr string
		stdout string
	}{
		{name: "valid", args: []string{"validate", "--cilium-version", "1.18.3", "examples/valid"}, code: 0},
		{name: "errors", args: []string{"validate", "--cilium-version", "1.18.3", "examples/"}, code: 1},
		{name: "strict warnings", args: []string{"validate", "--strict", "--cilium-version", "1.18.3", "examples/valid"}, code: 1},
		{name: "stdin", stdin: string(valid), args: []string{"validate", "--cilium-version", "1.18.3", "-"}, code: 0, stdout: "<stdin>:27:5: warning"},
		{name: "no input", args: []string{"validate", "--cilium-version", "1.18"}, code: 2, stderr: "no input"},
		{name: "no version", args: []string{"validate", "examples/"}, code: 2, stderr: "--cilium-version is required"},
		{name: "unknown version", args: []string{"validate", "--cilium-version", "1.99.0", "examples/"}, code: 2, stderr: "known: 1.14"},
		{name: "bad output", args: []string{"validate", "--cilium-version", "1.18", "-o", "xml", "examples/"}, code: 2, stderr: "unknown output format"},
		{name: "bad flag", args: []string{"validate", "--bogus"}, code: 2, stderr: "unknown flag: --bogus"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: "unknown command"},
		{name: "missing file", args: []string{"validate", "--cilium-version", "1.18", "nope.yaml"}, code: 3, stderr: "nope.yaml"},
		{name: "missing node config", args: []string{"validate", "--cilium-version", "1.18", "--node-config", "nope.json", "examples/valid"}, code: 3, stderr: "--node-config"},
		{name: "bad node config", args: []string{"validate", "--cilium-version", "1.18", "--node-config", bad, "examples/valid"}, code: 3, stderr: "bad.json:1:17: ClockSource"},
		{name: "too large", args: []string{"validate", "--cilium-version", "1.18", big}, code: 1, stdout: "[file-too-large]"},
		{name: "verbose lists skipped", args: []string{"validate", "-v", "--cilium-version", "1.18", "examples/node"}, code: 0, stderr: "kind ConfigMap"},
		{name: "missing folder", args: []string{"validate", "--cilium-version", "1.18", dir + "/none"}, code: 3},
		{name: "folder without manifests", args: []string{"validate", "--cilium-version", "1.18", "internal/gendocs"}, code: 0, stderr: "no *.yaml"},
		{name: "profiles show", args: []string{"profiles", "show", "1.14"}, code: 0, stdout: "21600s"},
		{name: "profiles show unknown", args: []string{"profiles", "show", "1.9"}, code: 2, stderr: "no profile"},
		{name: "version", args: []string{"version"}, code: 0, stdout: "egwct "},
		{name: "completion", args: []string{"completion", "bash"}, code: 0, stdout: "bash completion"},

		// Every node command: usage (2), findings (1), environment (3).
		{name: "apply missing file", args: []string{"apply", "-f", "/nonexistent.yaml", "--cilium-version", "1.18", "--bpffs", dir}, code: 3, stderr: "/nonexistent.yaml"},
		{name: "apply no input", args: []string{"apply", "--cilium-version", "1.18"}, code: 2, stderr: "no input"},
		{name: "apply extra argument", args: []string{"apply", "-f", "examples/valid", "extra"}, code: 2},
		{name: "apply bad mode", args: []string{"apply", "-f", "examples/valid", "--cilium-version", "1.18", "--mode", "x"}, code: 2, stderr: "--mode"},
		{name: "apply bad engine", args: []string{"apply", "-f", "examples/valid", "--cilium-version", "1.18", "--engine", "x"}, code: 2, stderr: "--engine"},
		{name: "apply no version", args: []string{"apply", "-f", "examples/valid"}, code: 2, stderr: "--cilium-version is required"},
		{name: "apply errors", args: []string{"apply", "-f", "examples/invalid", "--cilium-version", "1.18.3", "--bpffs", dir}, code: 1, stderr: "[unknown-key]"},
		{name: "apply maps missing", args: []string{"apply", "-f", "examples/valid", "--cilium-version", "1.18.3", "--bpffs", dir}, code: 3, stderr: "map not pinned"},
		{name: "dry run maps missing", args: []string{"apply", "--dry-run", "-f", "examples/valid", "--cilium-version", "1.18.3", "--bpffs", dir}, code: 3, stderr: "map not pinned"},
		{name: "agent missing file", args: []string{"agent", "-f", "/nonexistent.yaml", "--cilium-version", "1.18", "--bpffs", dir, "--metrics-addr", ""}, code: 3, stderr: "/nonexistent.yaml"},
		{name: "agent no input", args: []string{"agent", "--cilium-version", "1.18"}, code: 2, stderr: "no input"},
		{name: "agent stdin", args: []string{"agent", "-f", "-", "--cilium-version", "1.18"}, code: 2, stderr: "standard input"},
		{name: "agent interval", args: []string{"agent", "-f", "examples/valid", "--interval", "1ms"}, code: 2, stderr: "--interval"},
		{name: "agent log format", args: []string{"agent", "-f", "examples/valid", "--log-format", "xml", "--cilium-version", "1.18"}, code: 2, stderr: "--log-format"},
		{name: "agent metrics address", args: []string{"agent", "-f", "examples/valid", "--cilium-version", "1.18", "--bpffs", dir, "--metrics-addr", "256.0.0.1:1"}, code: 3, stderr: "--metrics-addr"},
		{name: "ct list no version", args: []string{"ct", "list"}, code: 2, stderr: "--cilium-version is required"},
		{name: "ct list maps missing", args: []string{"ct", "list", "--cilium-version", "1.18", "--bpffs", dir}, code: 3, stderr: "map not pinned"},
		{name: "nat list maps missing", args: []string{"nat", "list", "--cilium-version", "1.18", "--bpffs", dir}, code: 3, stderr: "no SNAT map"},
		{name: "egress list maps missing", args: []string{"egress", "list", "--cilium-version", "1.18", "--bpffs", dir}, code: 3, stderr: "no egress-gateway policy map"},
		{name: "lab up no bpffs", args: []string{"lab", "up", "--cilium-version", "1.18"}, code: 2, stderr: "bpffs"},
		{name: "lab down no lab", args: []string{"lab", "down", "--bpffs", dir + "/none"}, code: 3, stderr: "no lab"},
		{name: "lab drive no lab", args: []string{"lab", "drive", "--bpffs", dir + "/none"}, code: 3, stderr: "no lab"},
		{name: "top no version", args: []string{"top", "--once"}, code: 2, stderr: "--cilium-version"},
		{name: "profiles bad output", args: []string{"profiles", "list", "-o", "xml"}, code: 2, stderr: "unknown output format"},
		{name: "version extra argument", args: []string{"version", "extra"}, code: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if !strings.Contains(errOut, tt.stderr) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.stderr)
			}
			if !strings.Contains(out, tt.stdout) {
				t.Errorf("stdout does not contain %q:\n%s", tt.stdout, out)
			}
		})
	}
}

func TestProfilesOutput(t *testing.T) {
	for _, format := range []string{"json", "yaml", "table"} {
		code, out, errOut := run(t, "", "profiles", "list", "-o", format)
		if code != 0 || !strings.Contains(out, "main") {
			t.Errorf("-o %s: exit %d, %s %s", format, code, out, errOut)
		}
	}
	_, out, _ := run(t, "", "profiles", "show", "main", "-o", "json")
	var v profileView
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Name != "main" || len(v.Parameters) != 4 || len(v.Maps) == 0 {
		t.Errorf("profiles show -o json = %+v, %v", v, err)
	}
}

// TestBinary checks the exit-code contract through the built program.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	chdirRoot(t)
	bin := filepath.Join(t.TempDir(), "egwct")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/egwct").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"validate", "--cilium-version", "1.18.3", "examples/valid"}, 0},
		{[]string{"validate", "--cilium-version", "1.18.3", "examples"}, 1},
		{[]string{"validate", "examples"}, 2},
		{[]string{"validate", "--cilium-version", "1.18.3", "missing"}, 3},
	} {
		err := exec.Command(bin, tt.args...).Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.code {
			t.Errorf("egwct %v: exit %d, want %d", tt.args, code, tt.code)
		}
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain":            "plain",
		"a\x1b[31mred":     `a\x1b[31mred`,
		"line\nbreak\ttab": `line\x0abreak` + "\ttab",
		"bidi\u202eevil":   `bidi\u202eevil`,
		"c1\u009bx":        `c1\x9bx`,
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDocumentedCommands runs every `egwct validate` command line of the
// user guide against the examples, so the documented CI jobs keep working.
func TestDocumentedCommands(t *testing.T) {
	chdirRoot(t)
	doc, err := os.ReadFile("docs/validate.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- "))
		line = strings.TrimPrefix(line, "run: ")
		if !strings.HasPrefix(line, "egwct validate ") {
			continue
		}
		line = strings.SplitN(line, " > ", 2)[0]
		line = strings.ReplaceAll(line, `"$CILIUM_VERSION"`, "1.18.3")
		line = strings.ReplaceAll(line, "policies/", "examples/valid/")
		args := strings.Fields(line)[1:]
		// The GitHub job sets the version once, in the environment.
		code, _, errOut := runEnv(t, map[string]string{envCiliumVersion: "1.18.3"}, args...)
		if code != 0 && !(code == 1 && strings.Contains(line, "--strict")) {
			t.Errorf("documented %q exits %d: %s", line, code, errOut)
		}
		n++
	}
	if n < 3 {
		t.Errorf("found %d documented commands, want at least 3", n)
	}
}

// TestStrictOnEveryVerifiedRelease: a valid policy passes validate --strict
// for every release a profile was verified against and for a newer patch of
// a verified minor (a note, not a warning); a development build and a minor
// still in development stay warnings (exit 1 with --strict).
func TestStrictOnEveryVerifiedRelease(t *testing.T) {
	chdirRoot(t)
	versions := []string{"1.18.3", "1.18.11"}
	for _, p := range profiles.All() {
		for _, v := range p.VerifiedAgainst {
			versions = append(versions, v.String())
		}
		if n := p.NewestChecked(); !p.Dev && n != (profiles.Version{}) {
			versions = append(versions, fmt.Sprintf("%d.%d.%d", n.Major, n.Minor, n.Patch+1))
		}
	}
	for _, v := range versions {
		code, out, errOut := run(t, "", "validate", "--strict", "--cilium-version", v, "examples/valid/cluster-policies.yaml")
		if code != 0 {
			t.Errorf("validate --strict --cilium-version %s: exit %d\n%s%s", v, code, out, errOut)
		}
	}
	for _, v := range []string{"main", "1.21.0", "1.20.0-rc.1"} {
		code, out, _ := run(t, "", "validate", "--strict", "--cilium-version", v, "examples/valid/cluster-policies.yaml")
		if code != 1 || !strings.Contains(out, "unverified-version") {
			t.Errorf("validate --strict --cilium-version %s: exit %d, want 1 with an unverified-version warning\n%s", v, code, out)
		}
	}
}
