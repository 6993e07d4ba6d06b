package cli

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egwct/egwct/internal/lab"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/sweep"
)

// buildBinary builds egwct once per test.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	bin := filepath.Join(t.TempDir(), "egwct")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/egwct")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func currentKeys(t *testing.T, bpffs string) map[policy.Key]bool {
	t.Helper()
	st, err := sweep.OpenStateReadOnly(bpffs)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, err := st.CurrentKeys()
	if err != nil {
		t.Fatal(err)
	}
	out := map[policy.Key]bool{}
	for k := range keys {
		out[k] = true
	}
	return out
}

func sameKeys(a, b map[policy.Key]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestApplyKilled kills `egwct apply` at random points, 100 times: the
// policy set in force is always the old one or the new one, never a mix,
// and the next apply succeeds.
func TestApplyKilled(t *testing.T) {
	bin := buildBinary(t)
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "2000"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	node := []string{"--bpffs", dir, "--cilium-state-dir", dir + ".state", "--cilium-version", "1.18.3"}
	eps := filepath.Join(dir+".state", lab.EndpointsFile)
	data, _ := os.ReadFile(filepath.Join(dir+".state", lab.PoliciesFile))
	// Set B: one more policy gets timeouts, so its keys join the set.
	b := filepath.Join(t.TempDir(), "b.yaml")
	os.WriteFile(b, []byte(strings.Replace(string(data), "    name: search-egress", "    annotations:\n      egwct.io/connection-timeouts: |\n        bpfCtTimeoutRegularAny: 30s\n    name: search-egress", 1)), 0o644)
	a := filepath.Join(dir+".state", lab.PoliciesFile)

	apply := func(set string) *exec.Cmd {
		return exec.Command(bin, append([]string{"apply", "-f", set, "-f", eps}, node...)...)
	}
	for _, set := range []string{b, a} {
		if out, err := apply(set).CombinedOutput(); err != nil {
			t.Fatalf("apply: %v %s", err, out)
		}
	}
	keysA := currentKeys(t, dir)
	if out, err := apply(b).CombinedOutput(); err != nil {
		t.Fatalf("apply: %v %s", err, out)
	}
	keysB := currentKeys(t, dir)
	if sameKeys(keysA, keysB) {
		t.Fatal("the two sets have the same keys")
	}
	rng := rand.New(rand.NewPCG(7, 7))
	sets := []string{a, b}
	want := []map[policy.Key]bool{keysA, keysB}
	before, after := 0, 0
	for i := 0; i < 100; i++ {
		cmd := apply(sets[i%2])
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
		cmd.Process.Signal(unix.SIGKILL)
		cmd.Wait()
		got := currentKeys(t, dir)
		switch {
		case sameKeys(got, want[i%2]): // the set this trial applied (or already had)
			after++
		case sameKeys(got, want[(i+1)%2]):
			before++
		default:
			t.Fatalf("trial %d: the set in force is neither the old nor the new one (%d keys)", i, len(got))
		}
	}
	t.Logf("killed before the swap: %d, after: %d", before, after)
	if before == 0 || after == 0 {
		t.Errorf("the kills did not land on both sides of the swap (%d before, %d after)", before, after)
	}
	if out, err := apply(a).CombinedOutput(); err != nil {
		t.Fatalf("apply after the kills: %v %s", err, out)
	}
	if !sameKeys(currentKeys(t, dir), keysA) {
		t.Fatal("the last apply did not take")
	}
}

// TestApplyBadBPFFS: no bpffs, or a read-only one, gives a clear error
// (exit 3) and writes nothing.
func TestApplyBadBPFFS(t *testing.T) {
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "100"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	state := dir + ".state"
	files := []string{"-f", filepath.Join(state, lab.PoliciesFile), "-f", filepath.Join(state, lab.EndpointsFile)}

	empty := t.TempDir()
	code, _, errOut := run(t, "", append([]string{"apply", "--bpffs", empty, "--cilium-state-dir", state, "--cilium-version", "1.18.3"}, files...)...)
	if code != ExitEnv || !strings.Contains(errOut, "cilium_ct4_global: map not pinned") {
		t.Errorf("no maps: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(empty, "egwct")); !errors.Is(err, os.ErrNotExist) {
		t.Error("state written next to missing maps")
	}

	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	defer unix.Mount("", dir, "", unix.MS_REMOUNT, "")
	code, _, errOut = run(t, "", append([]string{"apply", "--bpffs", dir, "--cilium-state-dir", state, "--cilium-version", "1.18.3"}, files...)...)
	if code != ExitEnv || !strings.Contains(errOut, "read-only file system") {
		t.Errorf("read-only bpffs: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(sweep.Dir(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Error("state half-written on a read-only bpffs")
	}
}

// TestReadOnlyCommandsNeedOnlyBPF: the listing commands and top work as
// root with CAP_BPF alone: they only read maps. (On Linux 6.18 they even
// work as uid 0 with no capability at all: reading a pinned map needs
// only access to its file.)
func TestReadOnlyCommandsNeedOnlyBPF(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
	bin := buildBinary(t)
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "500"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	node := []string{"--bpffs", dir, "--cilium-state-dir", dir + ".state", "--cilium-version", "1.18.3"}
	for _, args := range [][]string{{"ct", "list", "-o", "json"}, {"nat", "list", "-o", "json"}, {"egress", "list", "-o", "json"}, {"top", "--once", "-o", "json"}} {
		for _, caps := range []string{"-all,+bpf"} {
			cmd := exec.Command(setpriv, append([]string{"--bounding-set", caps, "--inh-caps=-all", "--", bin}, append(args, node...)...)...)
			out, err := cmd.Output()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != 0 || len(out) == 0 {
				t.Errorf("%v with CAP_BPF only: exit %d", args, code)
			}
		}
	}
}

// TestMetricsLoopbackByDefault: the agent's metrics are only reachable
// from the node unless an address is given.
func TestMetricsLoopbackByDefault(t *testing.T) {
	ios, _, _ := TestIO("")
	f := newAgentCmd(ios).Flags().Lookup("metrics-addr")
	if f == nil || !strings.HasPrefix(f.DefValue, "127.0.0.1:") {
		t.Fatalf("metrics-addr default %v", f)
	}
}
