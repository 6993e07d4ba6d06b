// Package mapsource builds egwct top's snapshots from a node's pinned maps:
// Cilium's CT and SNAT maps under <bpffs>/tc/globals and egwct's state
// under <bpffs>/egwct/<schema version>, opened read-only and without egwct's lock. Maps
// are opened anew for every snapshot, so a map Cilium re-created is picked
// up at the next refresh, and missing maps become a banner, not an exit.
package mapsource

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/egwct/egwct/internal/tui"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/ctstats"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

// Source reads snapshots of one node. It implements tui.Source.
type Source struct {
	BPFFS   string
	Profile *profiles.Profile
	// Describe is how the profile and clock were chosen, for the header.
	Describe string
	Clock    nodeconfig.Clock
	// Timeouts are the node's CT timeouts per state.
	Timeouts map[profiles.State]time.Duration
	// Now is the wall clock (default time.Now); ClockNow reads the
	// datapath's clock (default ctmap.Now).
	Now      func() time.Time
	ClockNow func(nodeconfig.Clock) (uint32, error)
	// GCInterval is the longest time between two passes of Cilium's CT
	// GC on this node (conntrack-gc-interval, else
	// conntrack-gc-max-interval; 0: unknown, up to 12 h).
	GCInterval time.Duration
	// Warnings are shown with every snapshot (e.g. an unverified version).
	Warnings []string
	// PortCapacity is how many SNAT source ports an egress IP has per
	// destination on the node (tui.Node.PortCapacity); 0: what a running
	// agent recorded, else Cilium's default.
	PortCapacity int
	// SNATEvery is the least time between two readings of the SNAT maps;
	// 0 adapts it to 5 times the last reading's cost (a small node's are
	// read at every snapshot), negative reads them every time.
	SNATEvery time.Duration

	// readSet reads the policy set in force (default (*sweep.State).Set);
	// tests add what the pinned state cannot hold yet (IPv6 keys).
	readSet func(*sweep.State) ([]sweep.Policy, error)

	snat *snatAgg
}

// Snapshot reads the maps once.
func (s *Source) Snapshot(q tui.Query) (*tui.Snapshot, error) {
	now, clockNow := s.Now, s.ClockNow
	if now == nil {
		now = time.Now
	}
	if clockNow == nil {
		clockNow = ctmap.Now
	}
	start := time.Now()
	snap := &tui.Snapshot{Taken: now(), Node: tui.Node{Profile: "profile " + s.Profile.Name, Clock: s.Clock.String(), PortCapacity: s.PortCapacity}}
	if s.Describe != "" {
		snap.Node.Profile = s.Describe
	}
	for st, d := range s.Timeouts {
		snap.Node.Timeouts[st] = d
	}
	snap.Node.Warnings = append(snap.Node.Warnings, s.Warnings...)

	// egwct's state: missing means no policies applied.
	var set []sweep.Policy
	state, err := sweep.OpenStateReadOnly(s.BPFFS)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		snap.Node.Sweeper = "no egwct state under " + sweep.Dir(s.BPFFS) + ": no policies applied"
		if other := sweep.OtherVersions(s.BPFFS); len(other) > 0 {
			snap.Node.Sweeper = fmt.Sprintf("egwct state of another version (%s) under %s: an older or newer egwct applied it; this top reads %s",
				strings.Join(other, ", "), filepath.Dir(sweep.Dir(s.BPFFS)), sweep.SchemaVersion)
		}
	case err != nil:
		snap.Node.Sweeper = "egwct state unreadable: " + err.Error()
	default:
		defer state.Close()
		readSet := s.readSet
		if readSet == nil {
			readSet = (*sweep.State).Set
		}
		if set, err = readSet(state); err != nil {
			snap.Node.Sweeper = "egwct state unreadable: " + err.Error()
			set = nil
		} else {
			keys := 0
			for _, p := range set {
				keys += len(p.Keys)
			}
			snap.Node.Sweeper = fmt.Sprintf("%d policies, %d keys in force; ", len(set), keys) + s.sweeper(snap, state) + lastSweep(state, snap.Taken)
		}
		snap.Node.Warnings = append(snap.Node.Warnings, outcomes(state)...)
	}
	cts, nats, banner := s.open()
	defer func() {
		for _, m := range append(cts, nats...) {
			m.Close()
		}
	}()
	snap.Banner = banner
	u, err := clockNow(s.Clock)
	if err != nil {
		return nil, fmt.Errorf("read the datapath clock: %w", err)
	}
	judge := ctstats.NewJudge(set, ctmap.NewTimes(s.Clock, u, s.Timeouts))

	rows := make([]tui.Policy, len(set)+1)
	rows[0].Name = tui.NoPolicy
	slotOf := map[string]uint32{"": 0}
	for i, p := range set {
		name := p.Name
		if name == "" {
			name = fmt.Sprintf("slot %d", i+1)
		}
		rows[i+1].Name = name
		slotOf[name] = uint32(i + 1)
		for _, st := range profiles.States {
			rows[i+1].Timeouts[st] = judge.Timeout(uint32(i+1), st)
		}
	}
	if state != nil {
		for slot := range rows {
			for _, st := range profiles.States {
				if t, err := state.Totals(uint32(slot), st); err == nil {
					rows[slot].Reclaimed += t.DeletedCT
				}
			}
		}
	}
	flowSlot, wantFlows := slotOf[q.FlowsOf]
	wantFlows = wantFlows && q.Flows
	if q.Flows {
		snap.FlowsOf = q.FlowsOf
	}

	// SNAT egress entries: port use per (egress IP, destination), and the
	// egress address of the flows to list. On a big node the SNAT map is
	// read less often than the CT maps (see SNATEvery).
	key := snatKey{set: sweep.Fingerprint(set), maps: mapIDs(nats), flows: wantFlows, slot: flowSlot}
	agg := s.snat
	switch {
	case q.Quick && len(nats) > 0 && (agg == nil || agg.key != key):
		// A quick first frame: the ports come with the next snapshot.
		agg = &snatAgg{}
		snap.Node.PortsPending = true
	case agg == nil || agg.key != key || s.SNATEvery < 0 || time.Since(agg.at) >= max(s.SNATEvery, 5*agg.cost):
		names := make([]string, len(rows))
		for i := range rows {
			names[i] = rows[i].Name
		}
		agg = readSNAT(nats, judge, names, key)
		s.snat = agg
	default:
		snap.Node.PortsAge = max(time.Since(agg.at), time.Nanosecond)
	}
	snap.Banner = join(snap.Banner, agg.banner)

	// CT entries of both families: the matcher keys pods by address, so
	// an IPv6 flow counts toward the policy whose IPv6 keys hold it.
	ct := ctstats.WalkCT(judge, cts, ctstats.CTQuery{Window: q.Window, Flows: wantFlows, FlowsOf: flowSlot})
	for _, err := range ct.Errors {
		snap.Banner = join(snap.Banner, err.Error())
	}
	for _, f := range ct.Flows {
		tf := tui.Flow{Src: f.Src, Dst: f.Dst, Proto: f.Key.NextHdr, State: f.State, Idle: f.Idle, Remaining: f.Remaining,
			PolicyRemaining: f.PolicyRemaining, HasPolicy: f.HasPolicy}
		if f.Key.Flags == ctmap.TupleOut {
			tf.Egress = agg.egressOf[f.Key]
		}
		snap.Flows = append(snap.Flows, tf)
	}
	snap.Node.Maps = append(fills(ct.Fills), agg.fills...)
	if ct.IPv6Unmatched > 0 && !hasIPv6Keys(set) {
		snap.Node.Warnings = append(snap.Node.Warnings, fmt.Sprintf("%d IPv6 CT entries are shown under %s: the policies in force have no IPv6 keys", ct.IPv6Unmatched, tui.NoPolicy))
	}

	snap.Ports = agg.ports // shared between snapshots: never changed
	for slot, w := range agg.worst {
		rows[slot].WorstPorts, rows[slot].WorstDest = w.used, w.dest
	}
	for i := range rows {
		c := &ct.Slots[i]
		r := &rows[i]
		r.Total, r.Flows, r.Over, r.Expired, r.Expiring = c.Total, c.Flows, c.OverTotal(), c.Expired, c.Expiring
		r.IdleP50, r.IdleP99 = c.Idle.Quantile(0.50), c.Idle.Quantile(0.99)
	}
	snap.Policies = rows
	snap.Cost = time.Since(start)
	return snap, nil
}

// fills are map fill levels as top shows them.
func fills(fs []ctstats.Fill) []tui.MapFill {
	out := make([]tui.MapFill, len(fs))
	for i, f := range fs {
		out[i] = tui.MapFill{Name: f.Name, Entries: f.Entries, Max: f.Max}
	}
	return out
}

// hasIPv6Keys reports whether any policy of the set has an IPv6 key.
func hasIPv6Keys(set []sweep.Policy) bool {
	for _, p := range set {
		for _, k := range p.Keys {
			if k.Pod.Is6() {
				return true
			}
		}
	}
	return false
}

// snatKey says what a SNAT reading was made for: the policy set, and the
// policy whose flows' egress addresses it kept.
type snatKey struct {
	set   uint64
	maps  uint64 // the SNAT maps read: a map Cilium re-created is read at once
	flows bool
	slot  uint32
}

// snatAgg is one reading of the SNAT maps.
type snatAgg struct {
	key  snatKey
	at   time.Time
	cost time.Duration
	// ports are sorted, top consumers first; worst is per policy slot.
	ports    []tui.Port
	worst    []worstDest
	egressOf map[ctmap.Tuple]netip.AddrPort
	fills    []tui.MapFill
	banner   string
}

type worstDest struct {
	used int
	dest string
}

// mapIDs identifies a list of maps by their kernel IDs.
func mapIDs(ms []*ctmap.Map) uint64 {
	h := fnv.New64a()
	for _, m := range ms {
		if info, err := m.Info(); err == nil {
			if id, ok := info.ID(); ok {
				binary.Write(h, binary.LittleEndian, uint32(id))
				continue
			}
		}
		h.Write([]byte(m.Path)) // no ID: by path
	}
	return h.Sum64()
}

// readSNAT walks the SNAT egress entries: port use per (egress IP,
// destination IP, destination port, protocol) and the policies holding
// them, and, for the flows view, the egress address of one policy's flows.
func readSNAT(nats []*ctmap.Map, judge *ctstats.Judge, names []string, key snatKey) *snatAgg {
	start := time.Now()
	r := ctstats.WalkSNAT(judge, nats, ctstats.SNATQuery{Egress: key.flows, EgressOf: key.slot})
	agg := &snatAgg{key: key, at: start, egressOf: r.Egress, fills: fills(r.Fills), worst: make([]worstDest, len(r.Worst))}
	for _, err := range r.Errors {
		agg.banner = join(agg.banner, err.Error())
	}
	agg.ports = make([]tui.Port, r.Len())
	for i := range agg.ports {
		p := r.Port(i)
		tp := tui.Port{Egress: p.Egress, Dst: p.Dst, DstPort: p.DstPort, Proto: p.Proto, Used: p.Used}
		for _, slot := range p.Slots {
			tp.Policies = append(tp.Policies, names[slot])
		}
		slices.Sort(tp.Policies)
		agg.ports[i] = tp
	}
	for slot, w := range r.Worst {
		if w.Used > 0 {
			agg.worst[slot] = worstDest{used: w.Used, dest: fmt.Sprintf("%s→%s", w.Egress, netip.AddrPortFrom(w.Dst, w.DstPort))}
		}
	}
	agg.cost = time.Since(start)
	return agg
}

// outcomes are warnings for the policies the agent did not apply as
// written.
func outcomes(state *sweep.State) []string {
	list, err := state.Outcomes()
	if err != nil {
		return []string{"refused policies unreadable: " + err.Error()}
	}
	var out []string
	for _, o := range list {
		switch o.Outcome {
		case "kept":
			out = append(out, fmt.Sprintf("policy %s refused, its last valid timeouts stay in force: %s", tui.Clean(o.Name), tui.Clean(o.Reason)))
		case "refused":
			out = append(out, fmt.Sprintf("policy %s refused, its flows keep the node's timeouts: %s", tui.Clean(o.Name), tui.Clean(o.Reason)))
		default:
			out = append(out, tui.Clean(o.Reason))
		}
	}
	return out
}

// lastSweep says when the last sweep ran, how long it took and how many
// entries it judged.
func lastSweep(state *sweep.State, now time.Time) string {
	l, ok, err := state.LastSweep()
	switch {
	case err != nil:
		return "; last sweep unreadable"
	case !ok:
		return "; no sweep yet"
	}
	ago := now.Sub(l.Time).Round(time.Second)
	if ago < 0 {
		ago = 0
	}
	return fmt.Sprintf("; last sweep %s ago: %d entries in %s (%s)", ago, l.Entries, l.Duration.Round(time.Millisecond), l.Mode)
}

// open opens the CT and SNAT maps of the profile, both families. A missing
// or mismatching map becomes a banner.
func (s *Source) open() (cts, nats []*ctmap.Map, banner string) {
	for _, spec := range s.Profile.Maps {
		var dst *[]*ctmap.Map
		switch spec.Role {
		case profiles.RoleCTTCP, profiles.RoleCTAny:
			dst = &cts
		case profiles.RoleSNAT:
			dst = &nats
		default:
			continue
		}
		m, err := ctmap.Open(s.BPFFS, spec, false)
		switch {
		case errors.Is(err, ctmap.ErrMapMissing) && spec.Optional:
		case errors.Is(err, ctmap.ErrMapMissing):
			banner = join(banner, fmt.Sprintf("%s is missing (is Cilium running, or restarting?)", ctmap.PinPath(s.BPFFS, spec)))
		case err != nil:
			banner = join(banner, err.Error())
		default:
			*dst = append(*dst, m)
		}
	}
	return cts, nats, banner
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
