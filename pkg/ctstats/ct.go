package ctstats

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
)

// Fill is a map's fill level.
type Fill struct {
	Name    string
	Entries int
	Max     int
}

// Slot are the statistics of the CT entries of one policy slot.
type Slot struct {
	// Total counts the slot's entries, Flows by state.
	Total int
	Flows [4]int
	// Over counts, by state, the entries idle longer than the policy
	// allows: a sweep now expires them.
	Over [4]int
	// Expired counts entries whose lifetime has passed (waiting for
	// Cilium's GC).
	Expired int
	// Expiring counts entries whose effective remaining lifetime (the
	// smaller of the node's and the policy's) ends within CTQuery.Window.
	Expiring int
	// Idle is the distribution of idle times.
	Idle Histogram
}

// OverTotal is the number of entries a sweep now expires, all states.
func (s *Slot) OverTotal() int { return s.Over[0] + s.Over[1] + s.Over[2] + s.Over[3] }

// Flow is one CT entry listed by a walk (CTQuery.Flows).
type Flow struct {
	// Key is the CT key; an outbound one (Flags ctmap.TupleOut) has a SNAT
	// egress entry under Key.SwapAddrs() (see SNAT.Egress).
	Key      ctmap.Tuple
	Src, Dst netip.AddrPort
	State    profiles.State
	Idle     time.Duration
	// Remaining is under the node's timeout (negative: expired, waiting
	// for Cilium's GC); PolicyRemaining under the policy's, when HasPolicy.
	Remaining       time.Duration
	PolicyRemaining time.Duration
	HasPolicy       bool
}

// CTQuery says what a CT walk gathers besides the per-slot statistics.
type CTQuery struct {
	// Window: entries whose remaining lifetime ends within it count as
	// expiring.
	Window time.Duration
	// Flows asks for the entries of slot FlowsOf.
	Flows   bool
	FlowsOf uint32
	// FreedIn are SNAT maps (at most one per family): for each entry a
	// sweep now expires, its SNAT egress entry is looked up there and its
	// egress IP counted in CT.Freed.
	FreedIn []*ctmap.Map
}

// CT is the result of one walk of CT maps.
type CT struct {
	// Slots are indexed by policy slot (0: no policy).
	Slots []Slot
	// Fills are the walked maps' fill levels, in order.
	Fills []Fill
	// IPv6Unmatched counts IPv6 entries of no policy.
	IPv6Unmatched int
	// Flows are the entries of CTQuery.FlowsOf, in walk order.
	Flows []Flow
	// Freed counts, per egress IP, the SNAT ports that deleting the
	// entries a sweep now expires frees (with CTQuery.FreedIn).
	Freed map[netip.Addr]int
	// Errors are the walks that failed, one per map ("path: error"); the
	// numbers hold what was read before.
	Errors []error
}

// WalkCT reads the CT maps once and judges every entry with j (a nil j
// is an error in CT.Errors).
//
// For SNAT ports freed, each expired entry's egress SNAT entry is looked
// up (one system call per expired entry, no memory), rather than joined
// against a walk of the SNAT maps: the SNAT maps hold about twice as many
// entries as the CT maps, and with a sweeper running few entries are
// expired at any time.
func WalkCT(j *Judge, maps []*ctmap.Map, q CTQuery) *CT {
	if j == nil {
		return &CT{Slots: make([]Slot, 1), Errors: []error{errNoJudge}}
	}
	out := &CT{Slots: make([]Slot, j.Slots())}
	var nats [2]*ctmap.Map // by family index
	if len(q.FreedIn) > 0 {
		out.Freed = map[netip.Addr]int{}
		for _, m := range q.FreedIn {
			nats[famIndex(m.Spec.Family)] = m
		}
	}
	key, val := make([]byte, 0, ctmap.TupleSize6), make([]byte, ctmap.NATEntrySize6)
	times := j.times
	var c ctmap.CT
	for _, m := range maps {
		n := 0
		nat := nats[famIndex(m.Spec.Family)]
		err := m.Walk(func(k, v []byte) error {
			n++
			var err error
			if c.Key, err = ctmap.DecodeTuple(k); err != nil {
				return err
			}
			copy(c.Value[:], v)
			slot, over := j.Judge(&c)
			if slot == 0 && c.Key.Family() == 6 {
				out.IPv6Unmatched++
			}
			st := c.State()
			lifetime := c.Value.Lifetime()
			idle, remaining := times.Idle(st, lifetime), times.Remaining(lifetime)
			e := &out.Slots[slot]
			e.Total++
			e.Flows[st]++
			e.Idle.Add(idle)
			if remaining < 0 {
				e.Expired++
			}
			eff := remaining
			pt := j.timeouts[slot][st]
			var polRem time.Duration
			if slot != 0 && pt != 0 {
				polRem = pt - idle
				eff = min(eff, polRem)
			}
			if eff >= 0 && eff < q.Window {
				e.Expiring++
			}
			if over {
				e.Over[st]++
				if nat != nil {
					eg, _ := ctmap.NATKeysForCT(c.Key)
					key = eg.AppendTo(key[:0])
					buf := val[:nat.Spec.ValueSize]
					if nat.Lookup(key, buf) == nil {
						if ne, err := ctmap.DecodeNATEntry(buf); err == nil {
							out.Freed[ne.Addr()]++
						}
					}
				}
			}
			if q.Flows && slot == q.FlowsOf {
				src, dst := c.Flow()
				out.Flows = append(out.Flows, Flow{Key: c.Key, Src: src, Dst: dst, State: st, Idle: idle, Remaining: remaining,
					PolicyRemaining: polRem, HasPolicy: slot != 0 && pt != 0})
			}
			return nil
		})
		if err != nil {
			out.Errors = append(out.Errors, fmt.Errorf("%s: %w", m.Path, err))
		}
		out.Fills = append(out.Fills, Fill{Name: m.Spec.Name, Entries: n, Max: int(m.MaxEntries)})
	}
	return out
}

// Impact is what a sweep now would do: the dry run of apply.
type Impact struct {
	// Expired[slot][state] counts the CT entries it would expire.
	Expired [][4]int
	// Freed counts, per egress IP, the SNAT ports their deletion (reclaim
	// mode) would free: the egress SNAT entries of the expired entries.
	Freed map[netip.Addr]int
}

// ImpactNow judges every CT entry of the families a sweep covers
// (sweep.Families of the profile) as a sweep now would. cts and nats are
// the node's CT and SNAT maps; those of other families are skipped. A map
// that cannot be read is an error.
func ImpactNow(j *Judge, cts, nats []*ctmap.Map, families []int) (*Impact, error) {
	swept := func(m *ctmap.Map) bool {
		for _, f := range families {
			if m.Spec.Family == f {
				return true
			}
		}
		return false
	}
	var q CTQuery
	var maps []*ctmap.Map
	for _, m := range nats {
		if swept(m) {
			q.FreedIn = append(q.FreedIn, m)
		}
	}
	for _, m := range cts {
		if swept(m) {
			maps = append(maps, m)
		}
	}
	ct := WalkCT(j, maps, q)
	if len(ct.Errors) > 0 {
		return nil, ct.Errors[0]
	}
	im := &Impact{Expired: make([][4]int, len(ct.Slots)), Freed: ct.Freed}
	if im.Freed == nil {
		im.Freed = map[netip.Addr]int{}
	}
	for i := range ct.Slots {
		im.Expired[i] = ct.Slots[i].Over
	}
	return im, nil
}

var errNoJudge = errors.New("ctstats: a CT walk needs a judge (NewJudge)")

// famIndex is the index of an address family in per-family arrays.
func famIndex(family int) int {
	if family == 6 {
		return 1
	}
	return 0
}
