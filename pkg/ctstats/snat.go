package ctstats

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/egwct/egwct/pkg/ctmap"
)

// PortUse is the SNAT port use of one (egress IP, destination IP,
// destination port, protocol).
type PortUse struct {
	Egress  netip.Addr
	Dst     netip.Addr
	DstPort uint16
	Proto   uint8
	// Used counts the egress SNAT entries, one port each, of PortCapacity.
	Used int
	// Slots are the policy slots with flows to it, ascending (nil when
	// walked without a judge).
	Slots []uint32
}

// SNATQuery says what a SNAT walk gathers.
type SNATQuery struct {
	// Top keeps only the Top destinations with the most ports in use
	// (0: all of them).
	Top int
	// Egress asks for the egress address of the flows of slot EgressOf.
	Egress   bool
	EgressOf uint32
}

// SNAT is the result of one walk of SNAT maps.
type SNAT struct {
	// Ports are sorted: most ports in use first, then by egress IP,
	// destination IP, port and protocol.
	Ports []PortUse
	// Worst is, per policy slot, the destination with the most ports in
	// use among those the slot has flows to (Used 0: none), over all
	// destinations even with SNATQuery.Top. Nil without a judge.
	Worst []PortUse
	// Egress maps the CT key of each outbound flow of SNATQuery.EgressOf
	// to its SNAT address and port.
	Egress map[ctmap.Tuple]netip.AddrPort
	// Fills are the walked maps' fill levels, in order.
	Fills []Fill
	// Errors are the walks that failed, one per map ("path: error").
	Errors []error
}

// portKey is a destination of egress SNAT entries; a key without pointers
// hashes much faster than one of netip.Addrs.
type portKey struct {
	egress, dst [16]byte
	port        uint16
	proto       uint8
	v4          bool
}

// dest is the aggregate of one destination: the slots with flows to it
// inline while they are few, the rest in the walk's overflow set.
type dest struct {
	key   portKey
	used  int32
	n     uint8
	slots [3]uint32
}

// inlineSlots is how many slots a dest holds before it overflows.
const inlineSlots = 3

// WalkSNAT reads the SNAT maps once: port use per destination of the egress
// entries and, with a judge, the policy slots holding them (each entry is
// judged as the outbound CT entry it belongs to). Memory grows with the
// number of destinations, not of entries.
func WalkSNAT(j *Judge, maps []*ctmap.Map, q SNATQuery) *SNAT {
	out := &SNAT{}
	if q.Egress {
		out.Egress = map[ctmap.Tuple]netip.AddrPort{}
	}
	index := map[portKey]int32{}
	var dests []dest
	overflow := map[int32][]uint32{} // a dest's slots beyond its inline ones
	var probe ctmap.CT
	var e ctmap.NAT
	for _, m := range maps {
		n := 0
		err := m.Walk(func(k, v []byte) error {
			n++
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
			pk := portKey{e.Value.Addr().As16(), e.Key.DAddr.As16(), e.Key.DPort, e.Key.NextHdr, e.Key.DAddr.Is4()}
			i, ok := index[pk]
			if !ok {
				i = int32(len(dests))
				index[pk] = i
				dests = append(dests, dest{key: pk})
			}
			d := &dests[i]
			d.used++
			if j == nil {
				return nil
			}
			probe.Key = e.Key.SwapAddrs()
			probe.Key.Flags = ctmap.TupleOut
			slot, _ := j.Judge(&probe)
			addSlot(d, i, slot, overflow)
			if q.Egress && slot == q.EgressOf {
				out.Egress[probe.Key] = netip.AddrPortFrom(e.Value.Addr(), e.Value.Port())
			}
			return nil
		})
		if err != nil {
			out.Errors = append(out.Errors, fmt.Errorf("%s: %w", m.Path, err))
		}
		out.Fills = append(out.Fills, Fill{Name: m.Spec.Name, Entries: n, Max: int(m.MaxEntries)})
	}

	// The worst destination of every slot, over all destinations.
	if j != nil {
		worst := make([]int32, j.Slots()) // index+1 into dests; 0: none
		for i := range dests {
			d := &dests[i]
			eachSlot(d, int32(i), overflow, func(slot uint32) {
				if int(slot) < len(worst) && (worst[slot] == 0 || before(d, &dests[worst[slot]-1])) {
					worst[slot] = int32(i) + 1
				}
			})
		}
		out.Worst = make([]PortUse, len(worst))
		for slot, w := range worst {
			if w != 0 {
				out.Worst[slot] = dests[w-1].use(nil)
			}
		}
	}

	order := topDests(dests, q.Top)
	out.Ports = make([]PortUse, len(order))
	for n, i := range order {
		d := &dests[i]
		var slots []uint32
		if j != nil {
			eachSlot(d, i, overflow, func(slot uint32) { slots = append(slots, slot) })
			slices.Sort(slots)
		}
		out.Ports[n] = d.use(slots)
	}
	return out
}

// PortPressure reads the SNAT maps for the top n destinations by ports in
// use (n <= 0: DefaultTopN), without judging entries against a policy
// set: what the agent publishes as a metric. A map that cannot be read is
// an error.
func PortPressure(maps []*ctmap.Map, n int) ([]PortUse, []Fill, error) {
	if n <= 0 {
		n = DefaultTopN
	}
	s := WalkSNAT(nil, maps, SNATQuery{Top: n})
	if len(s.Errors) > 0 {
		return nil, nil, s.Errors[0]
	}
	return s.Ports, s.Fills, nil
}

// addSlot records that destination i (d) has a flow of slot.
func addSlot(d *dest, i int32, slot uint32, overflow map[int32][]uint32) {
	if slices.Contains(d.slots[:d.n], slot) {
		return
	}
	if d.n < inlineSlots {
		d.slots[d.n] = slot
		d.n++
		return
	}
	if more := overflow[i]; !slices.Contains(more, slot) {
		overflow[i] = append(more, slot)
	}
}

// eachSlot calls fn for every slot of destination i (d), in no order.
func eachSlot(d *dest, i int32, overflow map[int32][]uint32, fn func(uint32)) {
	for _, s := range d.slots[:d.n] {
		fn(s)
	}
	if d.n == inlineSlots {
		for _, s := range overflow[i] {
			fn(s)
		}
	}
}

func (d *dest) use(slots []uint32) PortUse {
	egress, dst := netip.AddrFrom16(d.key.egress), netip.AddrFrom16(d.key.dst)
	if d.key.v4 {
		egress, dst = egress.Unmap(), dst.Unmap()
	}
	return PortUse{Egress: egress, Dst: dst, DstPort: d.key.port, Proto: d.key.proto, Used: int(d.used), Slots: slots}
}

// before orders destinations as SNAT.Ports lists them.
func before(a, b *dest) bool { return compareDest(a, b) < 0 }

func compareDest(a, b *dest) int {
	if a.used != b.used {
		return int(b.used - a.used)
	}
	if a.key.v4 != b.key.v4 { // as netip.Addr.Compare: IPv4 first
		if a.key.v4 {
			return -1
		}
		return 1
	}
	for _, x := range [][2][16]byte{{a.key.egress, b.key.egress}, {a.key.dst, b.key.dst}} {
		if c := slices.Compare(x[0][:], x[1][:]); c != 0 {
			return c
		}
	}
	if a.key.port != b.key.port {
		return int(a.key.port) - int(b.key.port)
	}
	return int(a.key.proto) - int(b.key.proto)
}

// topDests returns the indexes of the top n destinations in order (n <= 0:
// all), selecting with a heap of n so that a node with many destinations
// is not sorted whole.
func topDests(dests []dest, n int) []int32 {
	if n <= 0 || n > len(dests) {
		n = len(dests)
	}
	// h is a heap whose root is the last of the n best seen so far.
	h := make([]int32, 0, n)
	worse := func(x, y int32) bool { return before(&dests[y], &dests[x]) }
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= len(h) {
				return
			}
			if r := l + 1; r < len(h) && worse(h[r], h[l]) {
				l = r
			}
			if !worse(h[l], h[i]) {
				return
			}
			h[i], h[l] = h[l], h[i]
			i = l
		}
	}
	for i := range dests {
		x := int32(i)
		switch {
		case len(h) < n:
			h = append(h, x)
			for c := len(h) - 1; c > 0; {
				p := (c - 1) / 2
				if !worse(h[c], h[p]) {
					break
				}
				h[c], h[p] = h[p], h[c]
				c = p
			}
		case n > 0 && before(&dests[x], &dests[h[0]]):
			h[0] = x
			down(0)
		}
	}
	slices.SortFunc(h, func(a, b int32) int { return compareDest(&dests[a], &dests[b]) })
	return h
}
