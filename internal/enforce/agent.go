package enforce

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"k8s.io/utils/clock"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/ctstats"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
	"github.com/egwct/egwct/pkg/validate"
)

// Source gives the agent its objects and says when they changed.
type Source interface {
	// Objects returns the objects known now. It is called only after
	// Changed fired (and once at the start); an error keeps the set in
	// force.
	Objects() (Objects, error)
	// Changed receives a value when Objects may return something new;
	// several changes may come as one.
	Changed() <-chan struct{}
}

// Metrics receives what the agent does. Every method must be safe to
// call from the agent's goroutine while metrics are served.
type Metrics interface {
	// Swept records a successful sweep; names maps its policy slots.
	Swept(names map[uint32]string, res *sweep.Result, at time.Time)
	// SweepFailed records a sweep that failed (or could not start).
	SweepFailed(err error)
	// Resolved records what became of each policy, replacing the
	// previous set of policies.
	Resolved(ps []PolicyStatus)
	// ReloadFailed records a change that could not be read or put in
	// force.
	ReloadFailed()
	// MapsReopened records that Cilium re-created its maps.
	MapsReopened()
	// Ports records the SNAT port use of the busiest destinations, and
	// how many ports an egress IP has per destination on the node.
	Ports(top []ctstats.PortUse, capacity int)
	// Engine names the sweep engine in use, each time a sweeper loads.
	Engine(name string)
}

// Agent keeps a policy set in force on a node: it resolves its Source's
// objects when they change, swaps the set in when it differs, and sweeps
// every Interval. An idle tick only sweeps: nothing is re-read.
type Agent struct {
	Env      *Env
	Source   Source
	Interval time.Duration
	// Debounce gathers a burst of changes into one resolve (default
	// 200ms): the first change starts it.
	Debounce time.Duration
	Mode     sweep.Mode
	// Engine is the engine asked for: Auto (the default) loads the first
	// of sweep.AutoOrder that the node accepts.
	Engine sweep.Engine
	Log    *slog.Logger
	// Metrics may be nil.
	Metrics Metrics
	// Events, when set, receives the events of the cluster's policies
	// after each resolve (one writer among the agents writes them).
	Events Reporter
	// Clock is the wall clock and the agent's timers (default: the real
	// one).
	Clock clock.WithTicker
	// Version is egwct's version, recorded in the pinned status.
	Version string
	// PortsEvery is the least time between two readings of the SNAT maps
	// for the port-pressure metric (default 1 minute); a reading also
	// waits ten times its last cost, so that it takes at most a tenth of
	// a core on a node with millions of SNAT entries. Negative: never.
	PortsEvery time.Duration
	// NodeConfig is Cilium's agent-runtime-config.json on this node, and
	// Reread reads the node's settings again for a Cilium version (Env
	// with its profile, timeouts and clock). When both are set, the agent
	// calls Reread before a sweep whenever the file changed (Cilium
	// restarted with other settings, or wrote the file after egwct
	// started), and judges with what it returns (see followNode).
	NodeConfig string
	Reread     func(profiles.Resolution) (*Env, error)
	// Detect, when set, detects Cilium's version again (--from-cluster:
	// the cilium DaemonSet's image tag). Cilium rewrites NodeConfig at
	// each start, so the agent calls it when the file changed after it
	// was first read, and after a failure again before a sweep at most
	// every DetectRetry; a version of another resolution is put in force
	// as the node's settings are. It runs beside the sweeps: until it
	// answers, the settings read before stay. Nil: the version given at
	// start stays.
	Detect func() (string, error)

	state        *sweep.State
	node         fileStamp                        // the version of NodeConfig last read
	nodeTimeouts map[profiles.State]time.Duration // the node's, as last read
	gens         []generation                     // older ones entries may carry
	sw           *sweep.Sweeper
	pins         map[string]uint64
	resolver     *Resolver
	current      *Resolved
	setHash      uint64
	choice       string              // the engine in use and why, as last logged
	told         map[string]string   // what was last logged of each policy
	portsAt      time.Time           // when ports may be read again
	version      profiles.Resolution // Cilium's version as last detected
	asked        fileStamp           // the version of NodeConfig Detect was last called for
	detectAt     time.Time           // when a failed detection is tried again
	detected     chan detection      // the answer of the detection under way (nil: none)
	again        bool                // Cilium restarted while a detection was under way
}

// Run keeps the set in force until ctx ends. It returns an error only
// when egwct's state cannot be opened (another egwct holds it, no bpffs,
// no privileges); a refused policy, an unreadable change or a failed
// sweep is logged and counted, and the agent goes on.
func (a *Agent) Run(ctx context.Context) error {
	if a.Clock == nil {
		a.Clock = clock.RealClock{}
	}
	if a.Debounce <= 0 {
		a.Debounce = 200 * time.Millisecond
	}
	if a.Metrics == nil {
		a.Metrics = nopMetrics{}
	}
	if a.Log == nil {
		a.Log = slog.New(slog.DiscardHandler)
	}
	st, err := sweep.OpenState(a.Env.BPFFS, true)
	if err != nil {
		return err
	}
	a.state = st
	if a.PortsEvery == 0 {
		a.PortsEvery = time.Minute
	}
	now := a.Clock.Now()
	status := sweep.AgentStatus{Mode: a.Mode, Engine: a.Engine.String(), Interval: a.Interval, Version: a.Version, PID: os.Getpid(), Started: now, Heartbeat: now}
	status.PortCapacity, _ = a.Env.Config.PortCapacity(0)
	if err := st.SetAgentStatus(status); err != nil {
		st.Close()
		return err
	}
	defer func() {
		if a.sw != nil {
			a.sw.Close()
		}
		if err := st.ClearAgentStatus(); err != nil {
			a.Log.Warn("cannot clear the agent's status", "err", err)
		}
		st.Close()
	}()
	a.resolver = NewResolver(a.Env)
	a.told = map[string]string{}
	a.reload()
	// What the start needed once (every object of a first list, decoded
	// whole before the informers kept their part) goes back to the
	// system, not just to Go's heap.
	debug.FreeOSMemory()
	a.Log.Info("agent started", "profile", a.Env.Resolution.Profile.Name, "clock", a.Env.Clock.String(),
		"mode", a.Mode.String(), "engine", a.Engine.String(), "interval", a.Interval.String(), "policies", len(a.current.Set))
	ticker := a.Clock.NewTicker(a.Interval)
	defer ticker.Stop()
	a.sweep()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			a.Log.Info("agent stopped; egwct's pinned state stays")
			return nil
		case <-ticker.C():
			a.sweep()
		case <-a.Source.Changed():
			if debounce == nil {
				debounce = a.Clock.After(a.Debounce)
			}
		case <-debounce:
			debounce = nil
			// Changes signalled meanwhile are read now, not once more.
			select {
			case <-a.Source.Changed():
			default:
			}
			a.reload()
		}
	}
}

// Current is the last resolved set (nil before the first).
func (a *Agent) Current() *Resolved { return a.current }

// reload resolves the source's objects and puts the set in force when it
// differs from the one in force.
func (a *Agent) reload() {
	objs, err := a.Source.Objects()
	if err != nil {
		a.Metrics.ReloadFailed()
		a.Log.Error("cannot read the policies and endpoints; the set in force stays", "err", err)
		if a.current == nil {
			a.current = &Resolved{}
		}
		return
	}
	res := a.resolver.Resolve(objs)
	a.tell(objs.Findings, res)
	if a.Events != nil {
		a.Events.Report(PolicyEvents(a.Env.Resolution.Profile, res))
	}
	if err := a.state.SetOutcomes(Outcomes(res)); err != nil {
		a.Log.Warn("cannot record the refused policies for egwct top", "err", err)
	}
	h := sweep.Fingerprint(res.Set)
	if a.current != nil && h == a.setHash {
		a.current = res
		a.Metrics.Resolved(res.Policies)
		return
	}
	if err := a.state.Replace(res.Set); err != nil {
		a.Metrics.ReloadFailed()
		a.Log.Error("the new policy set cannot be put in force; the set in force stays", "err", err, "policies", len(res.Set), "keys", res.Keys())
		if a.current == nil {
			a.current = &Resolved{}
		}
		return
	}
	a.current, a.setHash = res, h
	a.Metrics.Resolved(res.Policies)
	a.Log.Info("policy set in force", "policies", len(res.Set), "keys", res.Keys(), "endpoints", res.Endpoints)
}

// tell logs what changed for each policy since the last resolve, one
// structured record per finding.
func (a *Agent) tell(inputs []validate.Finding, res *Resolved) {
	seen := map[string]bool{}
	say := func(key, sig string, log func()) {
		seen[key] = true
		if a.told[key] != sig {
			a.told[key] = sig
			log()
		}
	}
	for _, f := range inputs {
		if f.Severity != validate.Error {
			continue
		}
		f := f
		say("input "+f.File, Summary([]validate.Finding{f}), func() {
			a.Log.Error("input unreadable: policies last seen in it keep their last valid timeouts", findingAttrs(f)...)
		})
	}
	for _, p := range res.Policies {
		p := p
		say("policy "+p.Name, fmt.Sprintf("%s %d %s %s", p.Outcome, p.Keys, timeoutsText(p.Timeouts), Summary(p.Findings)), func() {
			switch p.Outcome {
			case Applied:
				a.Log.Info("policy timeouts in force", "policy", p.Name, "keys", p.Keys, "timeouts", timeoutsText(p.Timeouts))
				return
			case Kept:
				a.Log.Warn("policy refused; its last valid timeouts stay in force", "policy", p.Name, "keys", p.Keys, "timeouts", timeoutsText(p.Timeouts), "errors", len(p.Findings))
			case Refused:
				a.Log.Warn("policy refused; its flows keep the node's timeouts", "policy", p.Name, "errors", len(p.Findings))
			}
			for _, f := range p.Findings {
				a.Log.Warn("policy finding", append([]any{"outcome", string(p.Outcome)}, findingAttrs(f)...)...)
			}
		})
	}
	for _, w := range res.Warnings {
		w := w
		say("warning "+w.Policy+" "+w.Message, "said", func() { a.Log.Warn(w.Message, "policy", w.Policy) })
	}
	for key := range a.told {
		if !seen[key] {
			delete(a.told, key)
			if name, ok := strings.CutPrefix(key, "policy "); ok {
				a.Log.Info("policy gone or without a timeout text: its flows keep the node's timeouts", "policy", name)
			}
		}
	}
}

// findingAttrs are a finding's fields as log attributes.
func findingAttrs(f validate.Finding) []any {
	out := []any{"rule", f.Rule, "severity", f.Severity.String()}
	if f.Policy != "" {
		out = append(out, "policy", f.Policy)
	}
	if f.File != "" {
		out = append(out, "file", f.File, "line", f.Line, "column", f.Column)
	}
	if f.Key != "" {
		out = append(out, "key", f.Key)
	}
	out = append(out, "message", f.Message)
	if f.Suggestion != "" {
		out = append(out, "suggestion", f.Suggestion)
	}
	return out
}

// timeoutsText is "established=5m0s non-tcp=30s".
func timeoutsText(ts map[profiles.State]time.Duration) string {
	var parts []string
	for _, st := range profiles.States {
		if d, ok := ts[st]; ok {
			parts = append(parts, st.String()+"="+d.String())
		}
	}
	return strings.Join(parts, " ")
}

// sweep (re)opens the sweeper when needed, sweeps once, records a
// heartbeat in the pinned status, and reads port pressure when due.
func (a *Agent) sweep() {
	defer func() {
		if err := a.state.AgentHeartbeat(a.Clock.Now()); err != nil {
			a.Log.Warn("cannot record the agent's heartbeat", "err", err)
		}
	}()
	a.followNode()
	if err := a.reopenIfRecreated(); err != nil {
		a.Metrics.SweepFailed(err)
		a.Log.Error("cannot open Cilium's maps", "err", err)
		return
	}
	res, err := a.sw.Sweep()
	if err != nil {
		a.Metrics.SweepFailed(err)
		a.Log.Error("sweep failed", "err", err)
		return
	}
	// A new set that needs programs the kernel refuses moves auto on
	// to the next engine.
	if c := a.sw.Choice(); c.String() != a.choice {
		a.engineInUse(c)
	}
	a.Metrics.Swept(a.current.Names(), res, a.Clock.Now())
	var exp, del uint64
	for _, cs := range res.Counts {
		for _, c := range cs {
			exp += c.Expired
			del += c.DeletedCT
		}
	}
	a.Log.Debug("sweep", "entries", res.Entries, "expired", exp, "deleted", del, "took", res.Duration)
	a.ports()
}

// ports publishes the SNAT port use of the busiest destinations, at most
// every PortsEvery and ten times the last reading's cost.
func (a *Agent) ports() {
	now := a.Clock.Now()
	if a.PortsEvery < 0 || now.Before(a.portsAt) {
		return
	}
	start := time.Now()
	nats, err := a.Env.OpenMaps(profiles.RoleSNAT)
	if err != nil {
		a.portsAt = now.Add(a.PortsEvery)
		return // the sweep says what is missing
	}
	defer CloseMaps(nats)
	top, _, err := ctstats.PortPressure(nats, ctstats.DefaultTopN)
	cost := time.Since(start)
	a.portsAt = now.Add(max(a.PortsEvery, 10*cost))
	if err != nil {
		a.Log.Warn("cannot read SNAT port use", "err", err)
		return
	}
	a.Metrics.Ports(top, portCapacity(a.Env))
}

// followNode reads the node's settings again when NodeConfig changed,
// and judges with the node's new timeouts (the shorter of new and old
// while entries of the old may live: see judging), its new clock or,
// when Detect says Cilium's version changed with it, the new version's
// profile; the sweeper is loaded again with them.
func (a *Agent) followNode() {
	now := a.Clock.Now()
	if a.nodeTimeouts == nil {
		a.nodeTimeouts = a.Env.Timeouts
	}
	if len(a.gens) > 0 {
		judge, live := judging(a.nodeTimeouts, a.gens, now)
		a.gens = live
		if !equalTimeouts(judge, a.Env.Timeouts) {
			a.Log.Info("judging with the node's timeouts", "timeouts", timeoutsText(judge))
			a.useNode(a.Env, judge)
		}
	}
	if a.Reread == nil || a.NodeConfig == "" {
		return
	}
	st, ok := stamp(a.NodeConfig)
	if !ok {
		// A file gone is Cilium restarting: the settings read last stay.
		return
	}
	if a.version.Profile == nil {
		a.version = a.Env.Resolution
	}
	if a.Detect != nil {
		// The first reading is of the file the version detected at
		// start goes with; a file that cannot be read is asked about
		// once.
		restarted := st != a.node && a.node != (fileStamp{}) && st != a.asked
		if restarted {
			a.asked = st
		}
		if a.awaitingVersion(restarted, now) {
			// The settings read before stay until the answer says with
			// which profile to read the new ones.
			return
		}
	}
	if st == a.node && a.version == a.Env.Resolution {
		return
	}
	env, err := a.Reread(a.version)
	if err != nil {
		// Half written, perhaps: read again before the next sweep.
		a.Log.Warn("cannot read the node's settings again; judging with those read before", "file", a.NodeConfig, "err", err)
		return
	}
	a.node = st
	upgraded := env.Resolution != a.Env.Resolution
	settings := env.Clock != a.Env.Clock || !equalTimeouts(env.Timeouts, a.nodeTimeouts)
	if was, is := portCapacity(a.Env), portCapacity(env); was != is {
		// A node-port range changed in cilium-config, which Cilium read
		// again as it restarted: port use is measured against the new one.
		a.Log.Info("the node's SNAT port capacity changed", "old", was, "new", is)
		if !upgraded && !settings {
			e := *a.Env
			e.Config = env.Config
			a.Env = &e
			a.recordPortCapacity()
		}
	}
	if !upgraded && !settings {
		return
	}
	if upgraded {
		old := a.Env.Resolution
		a.Log.Info("Cilium's version changed", "old", old.Version.String(), "new", env.Resolution.Version.String(),
			"old_profile", old.Profile.Name, "profile", env.Resolution.Profile.Name)
	}
	switch {
	case env.Clock != a.Env.Clock:
		// Entries of another clock: Cilium's own GC collects them.
		a.gens = nil
	case !equalTimeouts(env.Timeouts, a.nodeTimeouts):
		a.gens = append(a.gens, retire(a.nodeTimeouts, now))
	}
	a.nodeTimeouts = env.Timeouts
	judge, live := judging(a.nodeTimeouts, a.gens, now)
	a.gens = live
	if settings {
		args := []any{"file", a.NodeConfig, "clock", env.Clock.String(), "timeouts", timeoutsText(env.Timeouts)}
		if !equalTimeouts(judge, env.Timeouts) {
			// Until the last entry of a shorter old timeout may be gone.
			var until time.Time
			for _, g := range live {
				if g.until.After(until) && shorter(g.timeouts, env.Timeouts) {
					until = g.until
				}
			}
			args = append(args, "judging", timeoutsText(judge), "until", until.UTC().Format(time.RFC3339))
		}
		a.Log.Info("the node's settings changed", args...)
	}
	a.useNode(env, judge)
}

// awaitingVersion asks for Cilium's version in the background when
// Cilium restarted or a retry is due, takes the answer in once it came,
// and says whether one is still awaited. One GET that the API server does
// not answer (it may be restarting with the rest of the cluster) holds up
// the switch to the new version, not the sweeps: the agent keeps sweeping
// with what it judged by before.
func (a *Agent) awaitingVersion(restarted bool, now time.Time) bool {
	if a.detected != nil {
		select {
		case d := <-a.detected:
			a.detected = nil
			var err error
			if a.version, a.detectAt, err = versionOf(a.version, d, now); err != nil {
				a.Log.Warn("cannot detect Cilium's version again; judging with the profile in use", "profile", a.version.Profile.Name, "err", err,
					"retry", a.detectAt.UTC().Format(time.RFC3339))
			}
		default:
			// An answer to a question asked before this restart may
			// name the version before it: ask once more after it.
			a.again = a.again || restarted
			return true
		}
	}
	if !versionDue(restarted || a.again, a.detectAt, now) {
		return false
	}
	a.again = false
	answer := make(chan detection, 1)
	a.detected = answer
	detect := a.Detect
	go func() {
		tag, err := detect()
		answer <- detection{tag, err}
	}()
	return true
}

// useNode makes the agent judge with env and timeouts from the next sweep.
func (a *Agent) useNode(env *Env, timeouts map[profiles.State]time.Duration) {
	e := *env
	e.Timeouts = timeouts
	a.Env = &e
	a.recordPortCapacity()
	if a.sw != nil {
		a.sw.Close()
		a.sw = nil
	}
	// The set holds the policies' timeouts in the clock's units, and
	// the findings weigh them against the node's.
	if a.resolver != nil {
		a.resolver.setEnv(a.Env)
		a.reload()
	}
}

// reopenIfRecreated (re)loads the sweeper when Cilium re-created a map
// behind its pin (a new inode), or the first time.
func (a *Agent) reopenIfRecreated() error {
	pins := map[string]uint64{}
	swept := a.Env.swept()
	for _, s := range a.Env.Resolution.Profile.Maps {
		if !swept[s.Family] || (s.Role != profiles.RoleCTTCP && s.Role != profiles.RoleCTAny && s.Role != profiles.RoleSNAT) {
			continue
		}
		if ino, ok := inode(ctmap.PinPath(a.Env.BPFFS, s)); ok {
			pins[s.Name] = ino
		}
	}
	if a.sw != nil && equalPins(pins, a.pins) {
		return nil
	}
	if a.sw != nil {
		a.sw.Close()
		a.sw = nil
		a.Log.Info("Cilium re-created its maps; re-opening them")
		a.Metrics.MapsReopened()
	}
	sw, err := sweep.New(a.Env.SweepConfig(a.Mode, a.Engine), a.state)
	if err != nil {
		return MapErr(err)
	}
	a.sw, a.pins = sw, pins
	a.engineInUse(sw.Choice())
	return nil
}

// engineInUse says which engine a new sweeper runs and why: in the log
// when it changes, in the metric and in the pinned status for egwct top.
func (a *Agent) engineInUse(c sweep.Choice) {
	a.Metrics.Engine(c.Engine.String())
	if s := c.String(); s != a.choice {
		a.choice = s
		a.Log.Info("sweep engine", "engine", c.Engine.String(), "why", c.Reason())
	}
	st, ok, err := a.state.AgentStatus()
	if err != nil || !ok || st.Engine == c.Engine.String() {
		return
	}
	st.Engine = c.Engine.String()
	if err := a.state.SetAgentStatus(st); err != nil {
		a.Log.Warn("cannot record the agent's status", "err", err)
	}
}

// portCapacity is how many SNAT source ports an egress IP has per
// destination on env's node.
func portCapacity(env *Env) int {
	n, _ := env.Config.PortCapacity(ctstats.PortCapacity)
	return n
}

// recordPortCapacity records the node's SNAT port capacity, as the
// agent's settings give it, in the pinned status for egwct top: a node's
// agent-runtime-config.json has no node-port range from Cilium 1.18 on,
// and the agent may have read it from cilium-config.
func (a *Agent) recordPortCapacity() {
	if a.state == nil {
		return // not running
	}
	st, ok, err := a.state.AgentStatus()
	if err != nil || !ok {
		return
	}
	c, _ := a.Env.Config.PortCapacity(0)
	if st.PortCapacity == c {
		return
	}
	st.PortCapacity = c
	if err := a.state.SetAgentStatus(st); err != nil {
		a.Log.Warn("cannot record the agent's status", "err", err)
	}
}

func equalPins(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

type nopMetrics struct{}

func (nopMetrics) Swept(map[uint32]string, *sweep.Result, time.Time) {}
func (nopMetrics) SweepFailed(error)                                 {}
func (nopMetrics) Resolved([]PolicyStatus)                           {}
func (nopMetrics) ReloadFailed()                                     {}
func (nopMetrics) MapsReopened()                                     {}
func (nopMetrics) Ports([]ctstats.PortUse, int)                      {}
func (nopMetrics) Engine(string)                                     {}
