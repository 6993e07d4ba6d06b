package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestNodeCommandsNeedLinux: on a build for another system, each node
// command exits 3 with a sentence saying it needs Linux, its flags still
// parse as usage errors, and the commands that need no kernel still run.
func TestNodeCommandsNeedLinux(t *testing.T) {
	defer func(v bool) { nodeOS = v }(nodeOS)
	nodeOS = false
	chdirRoot(t)
	for _, args := range [][]string{
		{"ct", "list"}, {"nat", "list"}, {"egress", "list"}, {"lab", "up", "--bpffs", "x"}, {"lab", "down", "--bpffs", "x"},
		{"apply", "-f", "examples/valid"}, {"reset"}, {"agent"}, {"top", "--once"},
	} {
		code, out, errOut := run(t, "", args...)
		if code != ExitEnv || !strings.Contains(errOut, "egwct "+args[0]) || !strings.Contains(errOut, "needs Linux") || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	if code, _, errOut := run(t, "", "ct", "list", "--no-such-flag"); code != ExitUsage {
		t.Errorf("a bad flag on a node command: exit %d, %s", code, errOut)
	}
	for _, args := range [][]string{
		{"validate", "--cilium-version", "1.18.3", "examples/valid"},
		{"profiles", "list"},
		{"version"},
		{"completion", "bash"},
		{"ct", "list", "--help"},
	} {
		if code, _, errOut := run(t, "", args...); code != 0 {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
		}
	}
}

// TestVersionStamp: the ldflags stamp wins over the toolchain's, and
// version -o json shows all of it.
func TestVersionStamp(t *testing.T) {
	defer func(v, c, d string) { version, commit, date = v, c, d }(version, commit, date)
	version, commit, date = "v1.2.3", "0123456789abcdef0123456789abcdef01234567", "2026-01-02T15:04:05Z"
	code, out, errOut := run(t, "", "version", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var b buildInfo
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatal(err)
	}
	if b.Version != version || b.Commit != commit || b.BuildDate != date || b.Kind != "Version" || !strings.Contains(b.Platform, "/") {
		t.Errorf("version -o json: %s", out)
	}
	if _, out, _ := run(t, "", "version"); out != "" && !strings.HasPrefix(out, "egwct v1.2.3 (0123456789ab) go") || !strings.Contains(out, "built 2026-01-02T15:04:05Z") {
		t.Errorf("version: %q", out)
	}
}
