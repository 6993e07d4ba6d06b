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
	"math"
	"math/bits"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/egwct/egwct/internal/tui"
	"github.com/egwct/egwct/pkg/ctmap"
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
	// ProcLocks is /proc/locks (tests replace it).
	ProcLocks string
	// Warnings are shown with every snapshot (e.g. an unverified version).
	Warnings []string
	// SNATEvery is the least time between two readings of the SNAT maps;
	// 0 adapts it to 5 times the last reading's cost (a small node's are
	// read at every snapshot), negative reads them every time.
	SNATEvery time.Duration

	// readSet reads the policy set in force (default (*sweep.State).Set);
	// tests add what the pinned state cannot hold yet (IPv6 keys).
	readSet func(*sweep.State) ([]sweep.Policy, error)

	snat *snatAgg
}

// entry aggregates one policy row.
type entry struct {
	row  tui.Policy
	idle histogram
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
	snap := &tui.Snapshot{Taken: now(), Node: tui.Node{Profile: "profile " + s.Profile.Name, Clock: s.Clock.String()}}
	if s.Describe != "" {
		snap.Node.Profile = s.Describe
	}
	for st, d := range s.Timeouts {
		snap.Node.Timeouts[st] = d
	}
	snap.Node.Warnings = append(snap.Node.Warnings, s.Warnings...)

	// egwct's state: missing means no policies applied.
	var set []sweep.Policy
	var matcher *sweep.Matcher
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
			snap.Node.Sweeper = fmt.Sprintf("%d policies, %d keys in force; ", len(set), keys) + s.sweeper(snap) + lastSweep(state, snap.Taken)
		}
	}
	matcher = sweep.NewMatcher(set)

	rows := make([]entry, len(set)+1)
	rows[0].row.Name = tui.NoPolicy
	slotOf := map[string]uint32{"": 0}
	for i, p := range set {
		name := p.Name
		if name == "" {
			name = fmt.Sprintf("slot %d", i+1)
		}
		rows[i+1].row.Name = name
		slotOf[name] = uint32(i + 1)
		for st, u := range p.Timeouts {
			if u != 0 {
				rows[i+1].row.Timeouts[st] = s.Clock.Duration(uint64(u))
			}
		}
		if state != nil {
			for _, st := range profiles.States {
				if t, err := state.Totals(uint32(i+1), st); err == nil {
					rows[i+1].row.Reclaimed += t.DeletedCT
				}
			}
		}
	}
	if state != nil {
		for _, st := range profiles.States {
			if t, err := state.Totals(0, st); err == nil {
				rows[0].row.Reclaimed += t.DeletedCT
			}
		}
	}
	flowSlot, wantFlows := slotOf[q.FlowsOf]
	wantFlows = wantFlows && q.Flows
	if q.Flows {
		snap.FlowsOf = q.FlowsOf
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
	times := ctmap.NewTimes(s.Clock, u, s.Timeouts)

	// SNAT egress entries: port use per (egress IP, destination), and the
	// egress address of the flows to list. On a big node the SNAT map is
	// read less often than the CT maps (see SNATEvery).
	key := snatKey{set: fingerprint(set), maps: mapIDs(nats), flows: wantFlows, slot: flowSlot}
	agg := s.snat
	switch {
	case q.Quick && len(nats) > 0 && (agg == nil || agg.key != key):
		// A quick first frame: the ports come with the next snapshot.
		agg = &snatAgg{}
		snap.Node.PortsPending = true
	case agg == nil || agg.key != key || s.SNATEvery < 0 || time.Since(agg.at) >= max(s.SNATEvery, 5*agg.cost):
		names := make([]string, len(rows))
		for i := range rows {
			names[i] = rows[i].row.Name
		}
		agg = readSNAT(nats, matcher, times, names, key)
		s.snat = agg
	default:
		snap.Node.PortsAge = max(time.Since(agg.at), time.Nanosecond)
	}
	snap.Banner = join(snap.Banner, agg.banner)
	egressOf := agg.egressOf

	// CT entries of both families: the matcher keys pods by address, so
	// an IPv6 flow counts toward the policy whose IPv6 keys hold it.
	v6Unmatched := 0
	var c ctmap.CT
	var fills []tui.MapFill
	for _, m := range cts {
		n := 0
		err := m.Walk(func(k, v []byte) error {
			n++
			var err error
			if c.Key, err = ctmap.DecodeTuple(k); err != nil {
				return err
			}
			copy(c.Value[:], v)
			slot, over := matcher.Judge(&c, times)
			if slot == 0 && c.Key.Family() == 6 {
				v6Unmatched++
			}
			st := c.State()
			lifetime := c.Value.Lifetime()
			idle, remaining := times.Idle(st, lifetime), times.Remaining(lifetime)
			e := &rows[slot]
			e.row.Total++
			e.row.Flows[st]++
			e.idle.add(idle)
			if over {
				e.row.Over++
			}
			if remaining < 0 {
				e.row.Expired++
			}
			eff := remaining
			pt := e.row.Timeouts[st]
			var polRem time.Duration
			if slot != 0 && pt != 0 {
				polRem = pt - idle
				eff = min(eff, polRem)
			}
			if eff >= 0 && eff < q.Window {
				e.row.Expiring++
			}
			if wantFlows && slot == flowSlot {
				src, dst := c.Flow()
				f := tui.Flow{Src: src, Dst: dst, Proto: c.Key.NextHdr, State: st, Idle: idle, Remaining: remaining,
					PolicyRemaining: polRem, HasPolicy: slot != 0 && pt != 0}
				if c.Key.Flags == ctmap.TupleOut {
					f.Egress = egressOf[c.Key]
				}
				snap.Flows = append(snap.Flows, f)
			}
			return nil
		})
		if err != nil {
			snap.Banner = join(snap.Banner, fmt.Sprintf("%s: %v", m.Path, err))
		}
		fills = append(fills, tui.MapFill{Name: m.Spec.Name, Entries: n, Max: int(m.MaxEntries)})
	}
	snap.Node.Maps = append(fills, agg.fills...)
	if v6Unmatched > 0 && !hasIPv6Keys(set) {
		snap.Node.Warnings = append(snap.Node.Warnings, fmt.Sprintf("%d IPv6 CT entries are shown under %s: the policies in force have no IPv6 keys", v6Unmatched, tui.NoPolicy))
	}

	snap.Ports = agg.ports // shared between snapshots: never changed
	for slot, w := range agg.worst {
		rows[slot].row.WorstPorts, rows[slot].row.WorstDest = w.used, w.dest
	}

	for i := range rows {
		rows[i].row.IdleP50 = rows[i].idle.quantile(0.50)
		rows[i].row.IdleP99 = rows[i].idle.quantile(0.99)
		snap.Policies = append(snap.Policies, rows[i].row)
	}
	snap.Cost = time.Since(start)
	return snap, nil
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

// fingerprint identifies a policy set.
func fingerprint(set []sweep.Policy) uint64 {
	h := fnv.New64a()
	for _, p := range set {
		h.Write([]byte(p.Name))
		for _, t := range p.Timeouts {
			binary.Write(h, binary.LittleEndian, t)
		}
		for _, k := range p.Keys {
			h.Write(k.Pod.AsSlice())
			h.Write(k.Dest.Addr().AsSlice())
			h.Write([]byte{byte(k.Dest.Bits()), map[bool]byte{true: 1}[k.Excluded]})
		}
		h.Write([]byte{0})
	}
	return h.Sum64()
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
func readSNAT(nats []*ctmap.Map, matcher *sweep.Matcher, times ctmap.Times, names []string, key snatKey) *snatAgg {
	nslots := len(names)
	start := time.Now()
	agg := &snatAgg{key: key, at: start, worst: make([]worstDest, nslots), egressOf: map[ctmap.Tuple]netip.AddrPort{}}
	// A key without pointers hashes much faster than one of netip.Addrs.
	type portKey struct {
		egress, dst [16]byte
		port        uint16
		proto       uint8
		v4          bool
	}
	type portUse struct {
		used  int
		slots []int32 // flows per policy slot
	}
	ports := map[portKey]*portUse{}
	var probe ctmap.CT
	for _, m := range nats {
		n := 0
		err := m.Walk(func(k, v []byte) error {
			n++
			var e ctmap.NAT
			var err error
			if e.Key, err = ctmap.DecodeTuple(k); err != nil {
				return err
			}
			if !e.Egress() {
				return nil
			}
			if e.Value, err = ctmap.DecodeNATEntry(v); err != nil {
				return err
			}
			probe.Key = e.Key.SwapAddrs()
			probe.Key.Flags = ctmap.TupleOut
			slot, _ := matcher.Judge(&probe, times)
			pk := portKey{e.Value.Addr().As16(), e.Key.DAddr.As16(), e.Key.DPort, e.Key.NextHdr, e.Key.DAddr.Is4()}
			pu := ports[pk]
			if pu == nil {
				pu = &portUse{slots: make([]int32, nslots)}
				ports[pk] = pu
			}
			pu.used++
			pu.slots[slot]++
			if key.flows && slot == key.slot {
				agg.egressOf[probe.Key] = netip.AddrPortFrom(e.Value.Addr(), e.Value.Port())
			}
			return nil
		})
		if err != nil {
			agg.banner = join(agg.banner, fmt.Sprintf("%s: %v", m.Path, err))
		}
		agg.fills = append(agg.fills, tui.MapFill{Name: m.Spec.Name, Entries: n, Max: int(m.MaxEntries)})
	}
	out := make([]tui.Port, 0, len(ports))
	for pk, pu := range ports {
		egress, dst := netip.AddrFrom16(pk.egress), netip.AddrFrom16(pk.dst)
		if pk.v4 {
			egress, dst = egress.Unmap(), dst.Unmap()
		}
		r := tui.Port{Egress: egress, Dst: dst, DstPort: pk.port, Proto: pk.proto, Used: pu.used}
		for slot, n := range pu.slots {
			if n == 0 {
				continue
			}
			r.Policies = append(r.Policies, names[slot])
			if w := &agg.worst[slot]; pu.used > w.used {
				w.used, w.dest = pu.used, fmt.Sprintf("%s→%s", egress, netip.AddrPortFrom(dst, pk.port))
			}
		}
		slices.Sort(r.Policies)
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b tui.Port) int {
		if a.Used != b.Used {
			return b.Used - a.Used
		}
		if c := a.Egress.Compare(b.Egress); c != 0 {
			return c
		}
		if c := a.Dst.Compare(b.Dst); c != 0 {
			return c
		}
		return int(a.DstPort) - int(b.DstPort)
	})
	agg.ports = out
	agg.cost = time.Since(start)
	return agg
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

// sweeper describes who sweeps: an agent holding egwct's lock (its mode
// and interval from its command line), or nobody.
func (s *Source) sweeper(snap *tui.Snapshot) string {
	locks := s.ProcLocks
	if locks == "" {
		locks = "/proc/locks"
	}
	h, ok := lockHolder(locks, sweep.Dir(s.BPFFS))
	if !ok {
		return "no egwct agent running: nothing sweeps until the next apply"
	}
	info := parseArgs(h.Args)
	if !info.Agent {
		return fmt.Sprintf("egwct (pid %d) is changing the state", h.PID)
	}
	if info.Mode == "mark" {
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
	return fmt.Sprintf("egwct agent running (pid %d, mode %s, a sweep every %s)", h.PID, info.Mode, info.Interval)
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

// histogram counts idle times in seconds in buckets about 6 % wide: exact
// below 16 s, then 16 buckets per power of two.
type histogram struct {
	n      int
	counts []int
}

func bucketOf(sec uint64) int {
	if sec < 16 {
		return int(sec)
	}
	e := bits.Len64(sec) - 5
	return 16 + e*16 + int(sec>>e-16)
}

// lowerBound is the smallest value of a bucket.
func lowerBound(b int) uint64 {
	if b < 16 {
		return uint64(b)
	}
	e := (b - 16) / 16
	return uint64(16+(b-16)%16) << e
}

func (h *histogram) add(d time.Duration) {
	sec := uint64(0)
	if d > 0 {
		sec = uint64(d / time.Second)
	}
	b := bucketOf(sec)
	if b >= len(h.counts) {
		h.counts = append(h.counts, make([]int, b+1-len(h.counts))...)
	}
	h.counts[b]++
	h.n++
}

// quantile returns the lower bound of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := max(1, int(math.Ceil(q*float64(h.n)))) // nearest rank
	seen := 0
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(lowerBound(b)) * time.Second
		}
	}
	return 0
}
