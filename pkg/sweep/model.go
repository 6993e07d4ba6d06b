package sweep

import (
	"net/netip"
	"sort"

	"github.com/egwct/egwct/pkg/ctmap"
)

// Matcher is the userspace model of the BPF program's judgement: the same
// policy lookup (pod exact, destination by longest prefix, excluded CIDRs
// excluded) and the same expiry test. Dry runs preview with it, tests
// check the program against it, and the benchmark uses it as baseline.
type Matcher struct {
	byPod map[netip.Addr][]rule
}

type rule struct {
	dest     netip.Prefix
	slot     uint32
	excluded bool
	timeouts [4]uint32
}

// NewMatcher indexes a policy set (slots 1..len(set), as Replace assigns).
func NewMatcher(set []Policy) *Matcher {
	m := &Matcher{byPod: map[netip.Addr][]rule{}}
	for i, p := range set {
		for _, k := range p.Keys {
			m.byPod[k.Pod] = append(m.byPod[k.Pod], rule{k.Dest.Masked(), uint32(i + 1), k.Excluded, p.Timeouts})
		}
	}
	for _, rs := range m.byPod {
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].dest.Bits() > rs[j].dest.Bits() })
	}
	return m
}

// Judge returns the entry's policy slot (0: none) and whether it has
// expired under that policy, with the clock and node timeouts of t.
func (m *Matcher) Judge(c *ctmap.CT, t ctmap.Times) (slot uint32, expired bool) {
	if c.Key.Flags != ctmap.TupleOut {
		return 0, false
	}
	for _, r := range m.byPod[c.Key.DAddr] {
		if !r.dest.Contains(c.Key.SAddr) {
			continue
		}
		if r.excluded {
			return 0, false
		}
		st := c.State()
		limit := r.timeouts[st]
		lifetime := c.Value.Lifetime()
		idle := int32(t.Now - (lifetime - t.Node[st]))
		return r.slot, limit != 0 && idle >= int32(limit)
	}
	return 0, false
}
