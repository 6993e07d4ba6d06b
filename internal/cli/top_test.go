package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/egwct/egwct/internal/lab"
	"github.com/egwct/egwct/internal/printer"
	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/internal/tui"
)

// TestTopFlags: usage errors come before any map is touched.
func TestTopFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"top", "-o", "xml", "--cilium-version", "1.18.3"}, ExitUsage, "unknown output format"},
		{[]string{"top", "--refresh", "1ms", "--cilium-version", "1.18.3"}, ExitUsage, "--refresh"},
		{[]string{"top", "--once"}, ExitUsage, "--cilium-version is required"},
		{[]string{"top", "extra", "--cilium-version", "1.18.3"}, ExitUsage, "unknown command"},
	} {
		code, _, errOut := run(t, "", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%v: exit %d %q", tc.args, code, errOut)
		}
	}
}

// TestTopOnceSynthetic: one snapshot as a table, JSON and YAML, with
// names from the cluster escaped.
func TestTopOnceSynthetic(t *testing.T) {
	src := tui.SourceFunc(func(q tui.Query) (*tui.Snapshot, error) {
		s := &tui.Snapshot{
			Taken: time.Unix(0, 0).UTC(), Node: tui.Node{Profile: "profile 1.18", Clock: "ktime", Sweeper: "ok"},
			Policies: []tui.Policy{{Name: tui.NoPolicy, Total: 3}, {Name: "evil\x1b[2J", Total: 2, Timeouts: [4]time.Duration{0, 5 * time.Minute}}},
		}
		if q.Flows {
			s.FlowsOf = q.FlowsOf
		}
		return s, nil
	})
	for _, format := range []string{"table", "json", "yaml"} {
		ios, out, errOut := TestIO("")
		o := &topOptions{io: ios, Refresh: time.Second, print: printer.Flags{Spec: topSpec, Output: format}, source: src}
		if err := runTop(o); err != nil {
			t.Fatalf("%s: %v %s", format, err, errOut)
		}
		s := out.String()
		if strings.ContainsRune(s, 0x1b) || !strings.Contains(s, "evil") {
			t.Errorf("%s: %q", format, s)
		}
		switch format {
		case "table":
			if !strings.Contains(s, "5m0s (node 0s)") || !strings.Contains(s, "(no policy)") {
				t.Errorf("table:\n%s", s)
			}
		case "json":
			var rep topReport
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Policies) != 2 || rep.Policies[1].Timeouts.Established != 300 {
				t.Errorf("json %v: %s", err, s)
			}
		case "yaml":
			if !strings.Contains(s, "established: 300") {
				t.Errorf("yaml:\n%s", s)
			}
		}
	}
	ios, _, _ := TestIO("")
	o := &topOptions{io: ios, Refresh: time.Second, Once: true, Flows: "nope", flowsSet: true, source: src}
	if code, _ := exitCode(runTop(o)); code != ExitUsage {
		t.Errorf("--flows of an unknown policy: exit %d", code)
	}
}

// TestTopLab: top -o json on a lab node before and after apply agrees
// with the maps; missing maps exit 3.
func TestTopLab(t *testing.T) {
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "3000"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	node := []string{"--bpffs", dir, "--cilium-state-dir", dir + ".state", "--cilium-version", "1.18.3"}
	top := func(extra ...string) *topReport {
		t.Helper()
		code, out, errOut := run(t, "", append(append([]string{"top", "-o", "json"}, node...), extra...)...)
		if code != 0 {
			t.Fatalf("top: %d %s", code, errOut)
		}
		var rep topReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		return &rep
	}
	rep := top()
	entries := 0
	for _, m := range rep.Maps {
		if strings.HasPrefix(m.Name, "cilium_ct") {
			entries += m.Entries
		}
	}
	if len(rep.Policies) != 1 || rep.Policies[0].Flows != entries || entries < 3000 {
		t.Fatalf("before apply: %+v (%d entries)", rep.Policies, entries)
	}

	if code, out, errOut := run(t, "", append([]string{"apply", "-f", filepath.Join(dir+".state", "manifests")}, node...)...); code != 0 {
		t.Fatalf("apply: %s %s", out, errOut)
	}
	rep = top()
	total, reclaimed := 0, uint64(0)
	names := map[string]bool{}
	for _, p := range rep.Policies {
		total += p.Flows
		reclaimed += p.Reclaimed
		names[p.Name] = true
		if p.Syn+p.Est+p.Closing+p.NonTCP != p.Flows || p.IdleP50 > p.IdleP99 {
			t.Errorf("inconsistent row %+v", p)
		}
	}
	if !names["payments-egress"] || !names[tui.NoPolicy] || reclaimed == 0 {
		t.Errorf("after apply: %+v", rep.Policies)
	}
	entries = 0
	for _, m := range rep.Maps {
		if strings.HasPrefix(m.Name, "cilium_ct") {
			entries += m.Entries
		}
	}
	if total != entries {
		t.Errorf("rows hold %d flows, the maps %d", total, entries)
	}
	rep = top("--flows", "payments-egress")
	if rep.FlowsOf == nil || *rep.FlowsOf != "payments-egress" || len(rep.Flows) == 0 {
		t.Fatalf("flows: %+v", rep.Flows)
	}
	for i, f := range rep.Flows {
		// payments-egress sets timeouts for established TCP and non-TCP only.
		withPolicy := f.State == "established" || f.State == "non-tcp"
		// The lab's pods: 10.1.0.0/16, and fd00:10:1::/64 once IPv6 keys are in force.
		if !(strings.HasPrefix(f.Src, "10.1.") || strings.HasPrefix(f.Src, "[fd00:10:1::")) || f.Egress == "" || (f.PolicyRemaining != nil) != withPolicy {
			t.Errorf("flow %+v", f)
		}
		if i > 0 && f.Idle > rep.Flows[i-1].Idle {
			t.Errorf("flows not sorted by idle time: %v after %v", f.Idle, rep.Flows[i-1].Idle)
		}
	}

	// Port use is measured against the ports above the node-port range:
	// Cilium's default without one in agent-runtime-config.json, 25,535
	// with a range up to 40000.
	if rep.PortCapacity != 32768 {
		t.Errorf("portCapacity %d without a node-port range, want 32768", rep.PortCapacity)
	}
	arc := filepath.Join(dir+".state", lab.RuntimeConfigFile)
	var cfg map[string]any
	if data, err := os.ReadFile(arc); err != nil || json.Unmarshal(data, &cfg) != nil {
		t.Fatalf("the lab's %s: %v", arc, err)
	}
	cfg["NodePortMin"], cfg["NodePortMax"] = 30000, 40000
	if data, err := json.Marshal(cfg); err != nil || os.WriteFile(arc, data, 0o644) != nil {
		t.Fatal(err)
	}
	if rep = top(); rep.PortCapacity != 25535 {
		t.Errorf("portCapacity %d with the node-port range 30000-40000, want 25535", rep.PortCapacity)
	}
	if code, out, errOut := run(t, "", append([]string{"top", "--once"}, node...)...); code != 0 || !strings.Contains(out, "/25535 ") {
		t.Errorf("top --once: exit %d, WORST PORTS not of 25535:\n%s%s", code, out, errOut)
	}

	empty := testutil.PrivateBPFFS(t)
	code, _, errOut := run(t, "", "top", "--once", "--bpffs", empty, "--cilium-state-dir", dir+".state", "--cilium-version", "1.18.3")
	if code != ExitEnv || !strings.Contains(errOut, "cilium_ct4_global is missing") {
		t.Errorf("missing maps: exit %d %q", code, errOut)
	}
}

// TestTopTmux runs the built binary in tmux against a lab node whose
// traffic is being driven: it navigates, sorts, filters, drills down and
// sees the numbers change between refreshes.
func TestTopTmux(t *testing.T) {
	testutil.RequireRoot(t)
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tmux is missing (make deps installs it)")
		}
		t.Skip("tmux is missing (make deps installs it)")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	bin := filepath.Join(t.TempDir(), "egwct")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/egwct").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "5000"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	node := []string{"--bpffs", dir, "--cilium-state-dir", dir + ".state", "--cilium-version", "1.18.3"}
	if code, out, errOut := run(t, "", append([]string{"apply", "-f", filepath.Join(dir+".state", lab.PoliciesFile), "-f", filepath.Join(dir+".state", lab.EndpointsFile)}, node...)...); code != 0 {
		t.Fatalf("apply: %s %s", out, errOut)
	}
	agent := exec.Command(bin, append([]string{"agent", "-f", filepath.Join(dir+".state", "manifests"), "--interval", "500ms", "--metrics-addr", ""}, node...)...)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { agent.Process.Kill(); agent.Wait() }()
	drive := exec.Command(bin, "lab", "drive", "--bpffs", dir, "--interval", "100ms", "--rate", "20000")
	if err := drive.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { drive.Process.Kill(); drive.Wait() }()

	sock := filepath.Join(t.TempDir(), "tmux.sock")
	tm := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v %s", args, err, out)
		}
		return string(out)
	}
	cmdline := strings.Join(append([]string{bin, "top", "--refresh", "300ms"}, node...), " ")
	tm("new-session", "-d", "-s", "top", "-x", "160", "-y", "40", cmdline+"; sleep 30")
	defer exec.Command(tmux, "-S", sock, "kill-server").Run()
	screen := func() string { return tm("capture-pane", "-p", "-t", "top") }
	waitFor := func(what string, cond func(string) bool) string {
		t.Helper()
		var s string
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if s = screen(); cond(s) {
				return s
			}
		}
		t.Fatalf("timed out waiting for %s; screen:\n%s", what, s)
		return ""
	}
	has := func(sub string) func(string) bool { return func(s string) bool { return strings.Contains(s, sub) } }

	s := waitFor("the policies view", has("payments-egress"))
	if !strings.Contains(s, "[1 Policies]") || !strings.Contains(s, "(no policy)") {
		t.Fatalf("first frame:\n%s", s)
	}
	agentLine := regexp.MustCompile(fmt.Sprintf(`egwct agent \S+ running \(pid %d, mode reclaim, engine (foreach|iterator|userspace) \(auto\), a sweep every 500ms\)`, agent.Process.Pid))
	waitFor("the agent", agentLine.MatchString)
	// Numbers move while the datapath is driven.
	row := regexp.MustCompile(`(?m)^maps: .*$`)
	first := row.FindString(s)
	waitFor("numbers to change", func(s string) bool { return row.FindString(s) != first })

	tm("send-keys", "-t", "top", "/", "p", "a", "y", "Enter")
	s = waitFor("the filter", has(`filter "pay"`))
	if strings.Contains(s, "mail-egress") {
		t.Errorf("filter kept other policies:\n%s", s)
	}
	tm("send-keys", "-t", "top", "Enter")
	s = waitFor("the flows of payments-egress", has("[2 Flows: payments-egress]"))
	s = waitFor("flows", has("192.168.100."))
	tm("send-keys", "-t", "top", "j", "j", "G")
	tm("send-keys", "-t", "top", "3")
	waitFor("the ports view", has("[3 Ports]"))
	waitFor("ports rows", has("PRESSURE"))
	tm("send-keys", "-t", "top", "Escape")
	waitFor("back to policies", has("[1 Policies]"))
	tm("send-keys", "-t", "top", "p")
	waitFor("pause", has("PAUSED"))
	tm("send-keys", "-t", "top", "?")
	waitFor("help", has("reverse sort"))
	tm("send-keys", "-t", "top", "j") // any key closes the help
	waitFor("help to close", func(s string) bool { return !strings.Contains(s, "reverse sort") })
	tm("send-keys", "-t", "top", "q")
	waitFor("top to exit", func(s string) bool { return !strings.Contains(s, "egwct top ·") })
}

// TestTopLabJiffies: on a node whose datapath clock is jiffies, idle and
// remaining times agree with ct list's.
func TestTopLabJiffies(t *testing.T) {
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.16.15", "--flows", "2000", "--clock", "jiffies", "--hz", "250"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	node := []string{"--bpffs", dir, "--cilium-state-dir", dir + ".state", "--cilium-version", "1.16.15"}
	code, out, errOut := run(t, "", append([]string{"top", "-o", "json", "--flows", ""}, node...)...)
	if code != 0 {
		t.Fatalf("top: %d %s", code, errOut)
	}
	var rep topReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rep.Clock, "jiffies") || len(rep.Flows) != rep.Policies[0].Flows || len(rep.Flows) < 2000 {
		t.Fatalf("clock %q, %d flows, row %+v", rep.Clock, len(rep.Flows), rep.Policies[0])
	}
	code, out, _ = run(t, "", append([]string{"ct", "list", "-o", "json"}, node...)...)
	if code != 0 {
		t.Fatal("ct list failed")
	}
	idle := map[string]float64{}
	for _, r := range jsonLines(t, out) {
		idle[fmt.Sprintf("%v:%v>%v:%v", r["srcIP"], r["srcPort"], r["dstIP"], r["dstPort"])] = r["idleSeconds"].(float64)
	}
	expired := 0
	for _, f := range rep.Flows {
		want, ok := idle[f.Src+">"+f.Dst]
		// Both read the clock at their own moment, ct list after top, and
		// the clock counts 1.024 s units: ct list may be a unit or two ahead.
		if !ok || f.Idle < want-2.1 || f.Idle > want+0.1 {
			t.Fatalf("flow %+v: ct list says idle %v (%v)", f, want, ok)
		}
		if f.Remaining < 0 {
			expired++
		}
	}
	if expired != rep.Policies[0].Expired || expired == 0 {
		t.Errorf("%d flows with negative remaining, the row says %d", expired, rep.Policies[0].Expired)
	}
}
