package enforce

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"log/slog"

	"github.com/egwct/egwct/internal/lab"
	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/ctstats"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

// labEnv brings up a small lab node in a private bpffs.
func labEnv(t *testing.T, version string) *Env {
	t.Helper()
	testutil.RequireRoot(t)
	fs := testutil.PrivateBPFFS(t)
	res, err := profiles.Resolve(version)
	if err != nil {
		t.Fatal(err)
	}
	clock := nodeconfig.Clock{Mode: nodeconfig.Ktime}
	if _, err := lab.Up(lab.Config{BPFFS: fs, StateDir: filepath.Join(t.TempDir(), "state"), Version: res, Flows: 500, Policies: 2, Seed: 1, Clock: clock}); err != nil {
		t.Fatal(err)
	}
	var none *nodeconfig.Config
	return &Env{BPFFS: fs, Resolution: res, Clock: clock, ClockFrom: "test", Timeouts: none.NodeTimeouts(res.Profile)}
}

// countingSource serves fixed objects and counts how often they are read.
type countingSource struct {
	mu      sync.Mutex
	objs    Objects
	reads   atomic.Int32
	changed chan struct{}
}

func (s *countingSource) Objects() (Objects, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.objs, nil
}

func (s *countingSource) Changed() <-chan struct{} { return s.changed }

func (s *countingSource) set(o Objects) {
	s.mu.Lock()
	s.objs = o
	s.mu.Unlock()
	s.changed <- struct{}{}
}

// events records what the agent reports, in order.
type events struct {
	ch chan string
}

func (e events) Swept(map[uint32]string, *sweep.Result, time.Time) { e.ch <- "swept" }
func (e events) SweepFailed(error)                                 { e.ch <- "failed" }
func (e events) Resolved(ps []PolicyStatus) {
	var parts []string
	for _, p := range ps {
		parts = append(parts, p.Name+"="+string(p.Outcome))
	}
	e.ch <- "resolved " + strings.Join(parts, ",")
}
func (e events) ReloadFailed() { e.ch <- "reload-failed" }
func (e events) MapsReopened() { e.ch <- "reopened" }
func (e events) Ports(top []ctstats.PortUse, capacity int) {
	e.ch <- fmt.Sprintf("ports %d of %d", len(top), capacity)
}
func (e events) Engine(name string) { e.ch <- "engine " + name }

func (e events) next(t *testing.T) string {
	t.Helper()
	select {
	case ev := <-e.ch:
		return ev
	case <-time.After(2 * time.Minute): // only ends a hung test
		t.Fatal("no event from the agent")
		return ""
	}
}

// expect reads events until one with prefix, failing on any other but
// those allowed.
func (e events) expect(t *testing.T, prefix string) string {
	t.Helper()
	ev := e.next(t)
	if !strings.HasPrefix(ev, prefix) {
		t.Fatalf("event %q, want %q", ev, prefix)
	}
	return ev
}

// TestAgentEventDriven: ticks only sweep, a change of the source is read
// once after the debounce, a policy turning invalid keeps its timeouts
// while the other one changes, and every log line is a JSON record.
func TestAgentEventDriven(t *testing.T) {
	env := labEnv(t, "1.18.3")
	src := &countingSource{changed: make(chan struct{}, 1)}
	eps := cep("a1", "a", "10.0.0.1") + cep("b1", "b", "10.0.0.2")
	src.objs = objects(t, "p.yaml", cegp("pa", "a", "bpfCtTimeoutRegularTcp: 5m")+cegp("pb", "b", "bpfCtTimeoutRegularTcp: 10m"), "e.yaml", eps)
	clk := clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0))
	ev := events{ch: make(chan string, 100)}
	var logs bytes.Buffer
	var logMu sync.Mutex
	a := &Agent{
		Env: env, Source: src, Interval: 10 * time.Second, Debounce: time.Second, Log: slog.New(slog.NewJSONHandler(lockedWriter{&logs, &logMu}, nil)),
		Metrics: ev, Clock: clk, Mode: sweep.Reclaim, Engine: sweep.Auto,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	ev.expect(t, "resolved pa=applied,pb=applied")
	engine := strings.TrimPrefix(ev.expect(t, "engine "), "engine ")
	ev.expect(t, "swept")
	if got := ev.expect(t, "ports "); strings.HasPrefix(got, "ports 0 ") {
		t.Errorf("no SNAT port use on a lab with traffic")
	}
	// The agent says who it is in egwct's pinned state, for top.
	st, err := sweep.OpenStateReadOnly(env.BPFFS)
	if err != nil {
		t.Fatal(err)
	}
	status, ok, err := st.AgentStatus()
	st.Close()
	if err != nil || !ok || status.PID != os.Getpid() || status.Interval != 10*time.Second || status.Engine != engine || engine == "auto" || status.Mode != sweep.Reclaim {
		t.Errorf("agent status %+v %v %v", status, ok, err)
	}
	waiters := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); clk.Waiters() != n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the agent waits on %d timers, want %d", clk.Waiters(), n)
			}
		}
	}
	for i := 0; i < 5; i++ {
		waiters(1) // the ticker
		clk.Step(10 * time.Second)
		ev.expect(t, "swept")
	}
	if n := src.reads.Load(); n != 1 {
		t.Errorf("5 idle ticks read the source %d times in all, want once (at the start)", n)
	}

	// pa turns invalid, pb changes: one read after the debounce.
	src.set(objects(t, "p.yaml", cegp("pa", "a", "bpfCtTimeoutRegularTCP: 1m")+cegp("pb", "b", "bpfCtTimeoutRegularTcp: 7m"), "e.yaml", eps))
	waiters(2) // the ticker and the debounce
	clk.Step(time.Second)
	ev.expect(t, "resolved pa=kept,pb=applied")
	if n := src.reads.Load(); n != 2 {
		t.Errorf("the source was read %d times, want 2", n)
	}
	cur := a.Current()
	if got := cur.Set[0].Timeouts[profiles.StateEstablished]; cur.Set[0].Name != "pa" || got != 300 {
		t.Errorf("pa in force with %d s, want its last valid 300 s", got)
	}
	if got := cur.Set[1].Timeouts[profiles.StateEstablished]; got != 420 {
		t.Errorf("pb in force with %d s, want 420 s", got)
	}
	st, err = sweep.OpenStateReadOnly(env.BPFFS)
	if err != nil {
		t.Fatal(err)
	}
	set, err := st.Set()
	st.Close()
	if err != nil || len(set) != 2 || set[1].Timeouts[profiles.StateEstablished] != 420 {
		t.Errorf("pinned set %+v, %v", set, err)
	}
	// What top shows of the refused policy.
	st, err = sweep.OpenStateReadOnly(env.BPFFS)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := st.Outcomes()
	st.Close()
	if err != nil || len(outs) != 1 || outs[0].Name != "pa" || outs[0].Outcome != "kept" || !strings.Contains(outs[0].Reason, "unknown-key at p.yaml:") {
		t.Errorf("outcomes %+v, %v", outs, err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, err = sweep.OpenStateReadOnly(env.BPFFS)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.AgentStatus(); ok || err != nil {
		t.Errorf("the stopped agent's status stays: %v %v", ok, err)
	}
	st.Close()
	logMu.Lock()
	defer logMu.Unlock()
	var sawFinding bool
	for i, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %d is not JSON: %v\n%s", i+1, err, line)
		}
		if rec["msg"] == "policy finding" {
			sawFinding = true
			if rec["policy"] != "pa" || rec["rule"] != "unknown-key" || rec["file"] != "p.yaml" || rec["line"] == nil || rec["outcome"] != "kept" {
				t.Errorf("finding record %v", rec)
			}
		}
	}
	if !sawFinding {
		t.Errorf("no finding logged:\n%s", logs.String())
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestAgentSetTooLarge: a set beyond the sweeper's limits (more pods than
// its table holds) is refused and counted; the agent goes on sweeping
// with the set in force instead of exiting.
func TestAgentSetTooLarge(t *testing.T) {
	env := labEnv(t, "1.18.3")
	objs := objects(t, "p.yaml", cegp("pa", "a", "bpfCtTimeoutRegularTcp: 5m"))
	for i := range sweep.MaxPods + 1 {
		objs.Endpoints = append(objs.Endpoints, policy.NewEndpoint(fmt.Sprint(i), "default", []string{"k8s:app=a"},
			[]string{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()}, policy.Position{}))
	}
	src := &countingSource{changed: make(chan struct{}, 1), objs: objs}
	clk := clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0))
	ev := events{ch: make(chan string, 100)}
	a := &Agent{Env: env, Source: src, Interval: 10 * time.Second, Metrics: ev, Clock: clk, PortsEvery: -1}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	ev.expect(t, "reload-failed")
	ev.expect(t, "engine ")
	ev.expect(t, "swept")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("the agent stopped: %v", err)
	}
}
