package mapsource

import (
	"fmt"
	"strings"
	"time"

	"github.com/egwct/egwct/internal/tui"
	"github.com/egwct/egwct/pkg/sweep"
)

// staleAfter is how many sweep intervals an agent's heartbeat may be old,
// beyond the last sweep's duration, before top says nobody sweeps.
const staleAfter = 3

// sweeper says who sweeps, from the status the agent records in egwct's
// pinned state: an agent whose heartbeat is recent (by the snapshot's
// clock), one last seen too long ago, or none. An agent in mark mode on a
// node whose Cilium CT GC may be far away adds a warning.
func (s *Source) sweeper(snap *tui.Snapshot, state *sweep.State) string {
	a, ok, err := state.AgentStatus()
	switch {
	case err != nil:
		return "agent status unreadable: " + err.Error()
	case !ok:
		return "no egwct agent running: nothing sweeps until the next apply"
	}
	var took time.Duration
	if l, ok, err := state.LastSweep(); err == nil && ok {
		took = l.Duration
	}
	if ago, alive := agentAlive(a, took, snap.Taken); !alive {
		return fmt.Sprintf("no egwct agent sweeping (last seen %s ago)", ago.Round(time.Second))
	}
	if snap.Node.PortCapacity == 0 {
		// The node's file has no node-port range (Cilium 1.18 and
		// later); the agent may have read it from cilium-config.
		snap.Node.PortCapacity = a.PortCapacity
	}
	if a.Mode == sweep.Mark {
		gc := s.GCInterval
		what := "up to " + gc.String()
		if gc <= 0 {
			gc, what = 12*time.Hour, "up to 12h (its interval adapts)"
		}
		if gc > 5*time.Minute {
			snap.Node.Warnings = append(snap.Node.Warnings, "mark mode: expired flows keep their SNAT ports until Cilium's next CT GC pass, "+
				what+" away; use reclaim mode or bound conntrack-gc-max-interval")
		}
	}
	version := ""
	if a.Version != "" {
		version = " " + tui.Clean(a.Version)
	}
	engine := tui.Clean(a.Engine)
	if e, ok, err := state.Engine(); err == nil && ok && e.PID == a.PID && e.Engine == a.Engine {
		how, _, _ := strings.Cut(e.Reason, ":")
		engine += " (" + tui.Clean(how) + ")"
		if strings.Contains(e.Reason, " refused: ") {
			snap.Node.Warnings = append(snap.Node.Warnings, "sweep engine "+tui.Clean(e.Engine)+": "+tui.Clean(e.Reason))
		}
	}
	return fmt.Sprintf("egwct agent%s running (pid %d, mode %s, engine %s, a sweep every %s)", version, a.PID, a.Mode, engine, a.Interval)
}

// agentAlive says whether an agent whose last sweep took took still runs
// at now: its heartbeat is at most staleAfter intervals (of at least a
// second) plus took old. ago is the heartbeat's age (0 if in the future).
func agentAlive(a sweep.AgentStatus, took time.Duration, now time.Time) (ago time.Duration, alive bool) {
	ago = max(now.Sub(a.Heartbeat), 0)
	return ago, ago <= staleAfter*max(a.Interval, time.Second)+took
}
