package mapsource

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egwct/egwct/internal/tui"
	"github.com/egwct/egwct/pkg/sweep"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args []string
		want agentInfo
	}{
		{[]string{"egwct", "apply", "-f", "x"}, agentInfo{Mode: "reclaim", Interval: 10 * time.Second}},
		{[]string{"egwct", "agent", "-f", "x"}, agentInfo{Agent: true, Mode: "reclaim", Interval: 10 * time.Second}},
		{[]string{"egwct", "agent", "--mode", "mark", "--interval=3s"}, agentInfo{Agent: true, Mode: "mark", Interval: 3 * time.Second}},
		{[]string{"egwct", "agent", "--mode=mark", "--interval", "bad"}, agentInfo{Agent: true, Mode: "mark", Interval: 10 * time.Second}},
		{[]string{"egwct", "agent", "--mode"}, agentInfo{Agent: true, Mode: "reclaim", Interval: 10 * time.Second}},
	}
	for _, tc := range tests {
		if got := parseArgs(tc.args); got != tc.want {
			t.Errorf("parseArgs(%q) = %+v, want %+v", tc.args, got, tc.want)
		}
	}
}

// TestSweeperStatus: the holder of egwct's lock is found in /proc/locks
// and its command line read; mark mode with Cilium's GC far away warns.
func TestSweeperStatus(t *testing.T) {
	dir := t.TempDir()
	state := sweep.Dir(dir)
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	// A process whose command line reads like an agent's.
	p := exec.Command("/bin/sh", "-c", "sleep 10; true", "agent", "--mode", "mark", "--interval", "3s")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { p.Process.Kill(); p.Wait() }()
	// Wait for the command line to read like the agent's: on a loaded
	// machine the child may not have exec'd yet when Start returns.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Process.Pid))
		if strings.Contains(string(b), "agent\x00--mode") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("command line %q", b)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(state, &st); err != nil {
		t.Fatal(err)
	}
	locks := filepath.Join(dir, "locks")
	line := fmt.Sprintf("1: POSIX  ADVISORY  WRITE 1 00:00:1 0 EOF\n2: FLOCK  ADVISORY  WRITE %d %02x:%02x:%d 0 EOF\n",
		p.Process.Pid, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	os.WriteFile(locks, []byte(line), 0o644)

	for _, tc := range []struct {
		gc   time.Duration
		warn bool
	}{{0, true}, {time.Hour, true}, {time.Minute, false}} {
		s := &Source{BPFFS: dir, ProcLocks: locks, GCInterval: tc.gc}
		snap := &tui.Snapshot{}
		got := s.sweeper(snap)
		if want := fmt.Sprintf("egwct agent running (pid %d, mode mark, a sweep every 3s)", p.Process.Pid); got != want {
			t.Errorf("sweeper %q, want %q", got, want)
		}
		if warned := len(snap.Node.Warnings) == 1 && strings.Contains(snap.Node.Warnings[0], "mark mode"); warned != tc.warn {
			t.Errorf("gc %v: warnings %q", tc.gc, snap.Node.Warnings)
		}
	}

	os.WriteFile(locks, []byte("1: FLOCK  ADVISORY  WRITE 1 00:00:1 0 EOF\n"), 0o644)
	if got := (&Source{BPFFS: dir, ProcLocks: locks}).sweeper(&tui.Snapshot{}); !strings.HasPrefix(got, "no egwct agent running") {
		t.Errorf("no holder: %q", got)
	}
}
