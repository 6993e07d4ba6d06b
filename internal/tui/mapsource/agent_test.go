package mapsource

import (
	"strings"
	"testing"
	"time"

	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/internal/tui"
	"github.com/egwct/egwct/pkg/ctstats"
	"github.com/egwct/egwct/pkg/sweep"
)

// TestSweeperStatus: who sweeps is read from the status the agent pins in
// egwct's state and judged by the snapshot's clock: a fresh heartbeat is
// a running agent (with its mode, engine and interval), one older than 3
// intervals is an agent gone; mark mode with Cilium's GC far away warns.
func TestSweeperStatus(t *testing.T) {
	bpffs := testutil.PrivateBPFFS(t)
	w, err := sweep.OpenState(bpffs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := sweep.OpenStateReadOnly(bpffs)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	now := time.Unix(1700000000, 0)
	agent := sweep.AgentStatus{Mode: sweep.Reclaim, Engine: "iterator", Interval: 10 * time.Second, Version: "v0.4.0",
		PID: 4242, Started: now.Add(-time.Hour)}
	running := "egwct agent v0.4.0 running (pid 4242, mode reclaim, engine iterator, a sweep every 10s)"
	tests := []struct {
		name   string
		ago    time.Duration // of the heartbeat; negative: in the future
		mode   sweep.Mode
		gc     time.Duration
		clear  bool
		want   string
		warned bool
	}{
		{name: "just now", want: running},
		{name: "three intervals", ago: 30 * time.Second, want: running},
		{name: "clock skew", ago: -5 * time.Second, want: running},
		{name: "gone", ago: 31 * time.Second, want: "no egwct agent sweeping (last seen 31s ago)"},
		{name: "long gone", ago: 3 * time.Hour, mode: sweep.Mark, want: "no egwct agent sweeping (last seen 3h0m0s ago)"},
		{name: "mark, GC unbounded", mode: sweep.Mark, want: strings.Replace(running, "reclaim", "mark", 1), warned: true},
		{name: "mark, GC hourly", mode: sweep.Mark, gc: time.Hour, want: strings.Replace(running, "reclaim", "mark", 1), warned: true},
		{name: "mark, GC every minute", mode: sweep.Mark, gc: time.Minute, want: strings.Replace(running, "reclaim", "mark", 1)},
		{name: "stopped", clear: true, want: "no egwct agent running: nothing sweeps until the next apply"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := agent
			a.Mode, a.Heartbeat = tc.mode, now.Add(-tc.ago)
			if err := w.SetAgentStatus(a); err != nil {
				t.Fatal(err)
			}
			if tc.clear {
				if err := w.ClearAgentStatus(); err != nil {
					t.Fatal(err)
				}
			}
			snap := &tui.Snapshot{Taken: now}
			got := (&Source{BPFFS: bpffs, GCInterval: tc.gc}).sweeper(snap, r)
			if got != tc.want {
				t.Errorf("sweeper %q, want %q", got, tc.want)
			}
			if warned := len(snap.Node.Warnings) == 1 && strings.Contains(snap.Node.Warnings[0], "mark mode"); warned != tc.warned || len(snap.Node.Warnings) > 1 {
				t.Errorf("warnings %q", snap.Node.Warnings)
			}
		})
	}
}

// TestPortCapacityFromAgent: where the node's file gives no node-port
// range (Cilium 1.18 and later), top measures port use against the
// capacity a running agent recorded (it may have read cilium-config);
// the node's own wins, and an agent gone says nothing.
func TestPortCapacityFromAgent(t *testing.T) {
	bpffs := testutil.PrivateBPFFS(t)
	w, err := sweep.OpenState(bpffs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	now := time.Unix(1700000000, 0)
	for _, tc := range []struct {
		name         string
		node, agent  int
		ago          time.Duration
		want, wantPs int
	}{
		{name: "the agent's", agent: 32767, want: 32767, wantPs: 32767},
		{name: "the node's wins", node: 25000, agent: 32767, want: 25000, wantPs: 25000},
		{name: "neither: Cilium's default", want: 0, wantPs: ctstats.PortCapacity},
		{name: "the agent gone", agent: 32767, ago: time.Hour, want: 0, wantPs: ctstats.PortCapacity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := sweep.AgentStatus{Interval: 10 * time.Second, PID: 1, Heartbeat: now.Add(-tc.ago), PortCapacity: tc.agent}
			if err := w.SetAgentStatus(a); err != nil {
				t.Fatal(err)
			}
			snap := &tui.Snapshot{Taken: now, Node: tui.Node{PortCapacity: tc.node}}
			(&Source{BPFFS: bpffs}).sweeper(snap, w)
			if snap.Node.PortCapacity != tc.want || snap.Node.Ports() != tc.wantPs {
				t.Errorf("port capacity %d (%d), want %d (%d)", snap.Node.PortCapacity, snap.Node.Ports(), tc.want, tc.wantPs)
			}
		})
	}
}

func TestAgentAlive(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tests := []struct {
		interval, ago, took time.Duration
		alive               bool
	}{
		{10 * time.Second, 0, 0, true},
		{10 * time.Second, 30 * time.Second, 0, true},
		{10 * time.Second, 31 * time.Second, 0, false},
		{10 * time.Second, 31 * time.Second, 2 * time.Second, true}, // a long sweep delays the heartbeat
		{10 * time.Second, 33 * time.Second, 2 * time.Second, false},
		{10 * time.Second, -time.Minute, 0, true}, // the agent's clock is ahead
		{0, 3 * time.Second, 0, true},             // no interval recorded: at least a second
		{0, 4 * time.Second, 0, false},
		{time.Hour, 2 * time.Hour, 0, true},
	}
	for _, tc := range tests {
		a := sweep.AgentStatus{Interval: tc.interval, Heartbeat: now.Add(-tc.ago)}
		ago, alive := agentAlive(a, tc.took, now)
		if alive != tc.alive || ago != max(tc.ago, 0) {
			t.Errorf("interval %v, heartbeat %v ago, sweep took %v: alive %v (%v ago), want %v", tc.interval, tc.ago, tc.took, alive, ago, tc.alive)
		}
	}
}
