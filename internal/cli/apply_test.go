package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/egwct/egwct/internal/lab"
	"github.com/egwct/egwct/internal/printer"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

// TestApplyLab: lab up → apply the lab's manifests → the expired entries
// of policies with timeouts and their SNAT entries are gone, the live ones
// and everything else stay; the dry run predicted it; reset removes
// egwct's state only.
func TestApplyLab(t *testing.T) {
	for _, tc := range []struct{ mode, engine string }{
		{"reclaim", "auto"}, {"mark", "auto"}, {"reclaim", "foreach"}, {"reclaim", "iterator"}, {"mark", "iterator"},
		{"reclaim", "userspace"}, {"mark", "userspace"},
	} {
		t.Run(tc.mode+"/"+tc.engine, func(t *testing.T) {
			applyLab(t, "1.18.3", "jiffies", tc.mode, tc.engine, 4000)
		})
	}
}

// TestApplyPolicyWithoutFlows: a policy none of whose flows is in the CT
// maps (new, or quiet) is applied and reported with no entries.
func TestApplyPolicyWithoutFlows(t *testing.T) {
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "0"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	code, out, errOut := run(t, "", "apply", "-o", "json", "-f", filepath.Join(dir+".state", "manifests"),
		"--bpffs", dir, "--cilium-state-dir", dir+".state", "--cilium-version", "1.18.3")
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	var doc printer.ApplyResult
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Policies) == 0 {
		t.Fatalf("no policies reported: %s", out)
	}
	for _, p := range doc.Policies {
		if p.Entries != 0 || p.Expired != 0 {
			t.Errorf("%s: %d entries, %d expired on a node without flows", p.Policy, p.Entries, p.Expired)
		}
	}
}

// TestApplyEveryProfile: apply and reset on a lab node of every profile,
// with both clocks over the profiles.
func TestApplyEveryProfile(t *testing.T) {
	for i, p := range profiles.All() {
		clock := []string{"ktime", "jiffies"}[i%2]
		t.Run(p.Name+"/"+clock, func(t *testing.T) {
			applyLab(t, p.Name, clock, "reclaim", "auto", 1500)
		})
	}
}

// applyLab runs lab up, apply --dry-run, apply and reset on a lab node and
// checks each step against the maps.
func applyLab(t *testing.T, version, clock, mode, engine string, flows int) {
	t.Helper()
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", version, "--flows", fmt.Sprint(flows), "--clock", clock, "--hz", "250"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	r, err := profiles.Resolve(version)
	if err != nil {
		t.Fatal(err)
	}
	dualStack := len(sweep.Families(r.Profile)) == 2
	node := []string{"--bpffs", dir, "--cilium-state-dir", dir + ".state", "--cilium-version", version}
	manifests := filepath.Join(dir+".state", "manifests")
	ctBefore := countAll(t, node, "ct")
	natBefore := countAll(t, node, "nat")
	v6Before := countIPv6(t, node)
	if dualStack != (v6Before > 0) {
		t.Fatalf("profile %s: %d IPv6 flows", version, v6Before)
	}

	code, out, errOut := run(t, "", append([]string{"apply", "--dry-run", "-f", manifests}, node...)...)
	if code != 0 || !strings.Contains(out, "EXPIRE NOW") {
		t.Fatalf("dry run: %d %s %s", code, out, errOut)
	}
	if _, err := os.Stat(sweep.Dir(dir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("the dry run wrote egwct's state")
	}
	if countAll(t, node, "ct") != ctBefore {
		t.Fatal("the dry run changed the CT maps")
	}

	code, out, errOut = run(t, "", append([]string{"apply", "-o", "json", "--mode", mode, "--engine", engine, "-f", manifests}, node...)...)
	if code == ExitEnv && strings.Contains(errOut, "cannot be loaded on this node") {
		t.Skipf("this kernel refuses the engine: %s", errOut)
	}
	if code != 0 {
		t.Fatalf("apply: %d %s", code, errOut)
	}
	var rows []printer.AppliedPolicy
	if err := unmarshalApply(out, &rows); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var doc printer.ApplyResult
	json.Unmarshal([]byte(out), &doc)
	if (engine == "auto" && doc.Engine == "auto") || (engine != "auto" && doc.Engine != engine) || doc.EngineReason == "" ||
		!strings.Contains(errOut, "with the "+doc.Engine+" engine (") {
		t.Errorf("--engine %s: swept with %q (%s); stderr %s", engine, doc.Engine, doc.EngineReason, errOut)
	}
	var expired, ct, nat uint64
	for _, r := range rows {
		expired += r.Expired
		ct += r.DeletedCT
		nat += r.DeletedNAT
	}
	if expired == 0 || len(rows) == 0 {
		t.Fatalf("nothing expired: %+v", rows)
	}
	ctAfter, natAfter := countAll(t, node, "ct"), countAll(t, node, "nat")
	switch mode {
	case "reclaim":
		if ct != expired || nat != 2*ct || ctAfter != ctBefore-int(ct) || natAfter != natBefore-int(nat) {
			t.Errorf("expired %d, deleted %d CT (%d → %d) and %d NAT (%d → %d)", expired, ct, ctBefore, ctAfter, nat, natBefore, natAfter)
		}
		// IPv6 flows are swept like IPv4 ones.
		if v6After := countIPv6(t, node); dualStack && v6After >= v6Before {
			t.Errorf("no IPv6 entry deleted: %d → %d", v6Before, v6After)
		}
	case "mark":
		if ct != 0 || ctAfter != ctBefore || natAfter != natBefore {
			t.Errorf("mark deleted entries: %d CT, %d → %d", ct, ctBefore, ctAfter)
		}
		// The marked entries are now expired for Cilium's GC.
		code, out, _ := run(t, "", append([]string{"ct", "list", "-o", "json", "--expired"}, node...)...)
		if code != 0 || len(jsonLines(t, out)) < int(expired) {
			t.Errorf("%d expired entries listed, %d marked", len(jsonLines(t, out)), expired)
		}
	}
	// Nothing is left for a sweep now (the clock may tick a unit meanwhile).
	code, out, _ = run(t, "", append([]string{"apply", "--dry-run", "-f", manifests}, node...)...)
	if left := expireNow(t, out); code != 0 || (mode == "reclaim" && left > expired/50) {
		t.Errorf("after apply a sweep would still expire %d entries (of %d)", left, expired)
	}
	code, _, _ = run(t, "", "reset", "--bpffs", dir)
	if _, err := os.Stat(filepath.Join(dir, "egwct")); code != 0 || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reset: %d %v", code, err)
	}
	if countAll(t, node, "ct") != ctAfter {
		t.Error("reset touched Cilium's maps")
	}
}

// countIPv6 counts the IPv6 CT entries.
func countIPv6(t *testing.T, node []string) int {
	t.Helper()
	code, out, errOut := run(t, "", append([]string{"ct", "list", "-o", "json"}, node...)...)
	if code != 0 {
		t.Fatalf("ct list: %s", errOut)
	}
	n := 0
	for _, r := range jsonLines(t, out) {
		if ip, _ := r["srcIP"].(string); strings.Contains(ip, ":") {
			n++
		}
	}
	return n
}

// expireNow sums the EXPIRE NOW column of a dry run.
func expireNow(t *testing.T, out string) uint64 {
	t.Helper()
	var sum uint64
	in := false
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) > 2 && f[0] == "POLICY":
			in = true
		case len(f) == 0:
			in = false
		case in && len(f) == 7:
			var n uint64
			fmt.Sscan(f[2], &n)
			sum += n
		}
	}
	return sum
}

func countAll(t *testing.T, node []string, what string) int {
	t.Helper()
	code, out, errOut := run(t, "", append([]string{what, "list", "-o", "json"}, node...)...)
	if code != 0 {
		t.Fatalf("%s list: %s", what, errOut)
	}
	return len(jsonLines(t, out))
}

// TestApplyRefuses: validation errors and mismatched maps change nothing.
func TestApplyRefuses(t *testing.T) {
	dir := labDir(t)
	if code, _, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "100"); code != 0 {
		t.Fatal(errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	node := []string{"--bpffs", dir, "--cilium-state-dir", dir + ".state", "--cilium-version", "1.18.3"}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: cilium.io/v2\nkind: CiliumEgressGatewayPolicy\nmetadata: {name: x}\nspec:\n  connection-timeouts: |\n    bpfCtTimeoutRegularTcp: 3h\n"), 0o644)
	code, _, errOut := run(t, "", append([]string{"apply", "-f", bad}, node...)...)
	if code != ExitFindings || !strings.Contains(errOut, "above-node-timeout") {
		t.Errorf("exit %d: %s", code, errOut)
	}
	code, _, errOut = run(t, "", append([]string{"apply", "--engine", "turbo", "-f", filepath.Join(dir+".state", lab.PoliciesFile)}, node...)...)
	if code != ExitUsage || !strings.Contains(errOut, `unknown engine "turbo": want one of auto, foreach, iterator, userspace`) {
		t.Errorf("bad engine: exit %d %s", code, errOut)
	}
	code, _, errOut = run(t, "", append([]string{"apply", "-f", filepath.Join(dir+".state", lab.PoliciesFile)}, node[:4]...)...)
	if code != ExitUsage || !strings.Contains(errOut, "--cilium-version is required") {
		t.Errorf("no version: exit %d %s", code, errOut)
	}
	// A SNAT map of another shape behind Cilium's pin is refused.
	pin := filepath.Join(dir, ctmap.GlobalsDir, "cilium_snat_v4_external")
	os.Remove(pin)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "cilium_snat_v4_", Type: ebpf.LRUHash, KeySize: 14, ValueSize: 48, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Pin(pin); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, "", append([]string{"apply", "-f", filepath.Join(dir+".state", lab.PoliciesFile), "-f", filepath.Join(dir+".state", lab.EndpointsFile)}, node...)...)
	if code != ExitEnv || !strings.Contains(errOut, "value size is 48, the profile expects 40") {
		t.Errorf("mismatched SNAT map: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(sweep.Dir(dir)); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a refused apply wrote egwct's state")
	}
}

// TestDryRunBesideAgent: a dry run beside a running agent (which holds
// egwct's lock) previews against the set in force, and leaves every pin
// under the bpffs as it was.
func TestDryRunBesideAgent(t *testing.T) {
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "2000"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	node := []string{"--bpffs", dir, "--cilium-state-dir", dir + ".state", "--cilium-version", "1.18.3"}
	manifests := filepath.Join(dir+".state", "manifests")
	if code, out, errOut := run(t, "", append([]string{"apply", "-f", manifests}, node...)...); code != 0 {
		t.Fatalf("apply: %s %s", out, errOut)
	}
	// The agent: egwct's state opened for changes, its lock held.
	st, err := sweep.OpenState(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	before := pins(t, dir)
	code, out, errOut := run(t, "", append([]string{"apply", "--dry-run", "-f", manifests}, node...)...)
	if code != 0 || !strings.Contains(out, "(+0 added, -0 removed against the set in force)") {
		t.Fatalf("dry run beside the agent: exit %d\n%s\n%s", code, out, errOut)
	}
	if after := pins(t, dir); !slices.Equal(before, after) {
		t.Errorf("the dry run changed the pins:\nbefore %v\nafter  %v", before, after)
	}
	// A real apply is refused while the agent runs.
	if code, _, errOut := run(t, "", append([]string{"apply", "-f", manifests}, node...)...); code != 3 || !strings.Contains(errOut, "locked") {
		t.Errorf("apply beside the agent: exit %d %s", code, errOut)
	}
}

// pins lists every file under a bpffs with its inode and size.
func pins(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %d %v", path, info.Sys().(*syscall.Stat_t).Ino, info.Mode()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unmarshalApply reads the policies of apply's JSON document.
func unmarshalApply(out string, rows *[]printer.AppliedPolicy) error {
	var doc printer.ApplyResult
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return err
	}
	if doc.Kind != printer.KindApplyResult {
		return fmt.Errorf("kind %q", doc.Kind)
	}
	*rows = doc.Policies
	return nil
}
