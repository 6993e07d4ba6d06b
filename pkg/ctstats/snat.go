package ctstats

import (
	"bytes"
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

	// The destinations listed, in order (see Port), and their slots:
	// those of order[i] are arena[from[i]:from[i+1]].
	ds    dests
	order []int32
	arena []uint32
	from  []int32
	judge bool
}

// Len is the number of destinations listed (SNATQuery.Top at most).
func (s *SNAT) Len() int { return len(s.order) }

// Port returns the i-th destination listed: most ports in use first, then
// by egress IP, destination IP, port and protocol. Its Slots are shared
// with the SNAT and must not be changed.
func (s *SNAT) Port(i int) PortUse {
	var slots []uint32
	if s.judge {
		slots = s.arena[s.from[i]:s.from[i+1]:s.from[i+1]]
	}
	return s.ds.use(s.order[i], slots)
}

// Ports returns every destination listed, as Port does.
func (s *SNAT) Ports() []PortUse {
	out := make([]PortUse, s.Len())
	for i := range out {
		out[i] = s.Port(i)
	}
	return out
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
// inline while they are few, the rest in the walk's overflow set. Its key
// is only in the walk's index until the walk ends: a small dest keeps
// the growing slice of them small.
type dest struct {
	used  int32
	n     uint8
	slots [3]uint32
}

// dests are the destinations of a walk and, once it ended, their keys.
type dests struct {
	d    []dest
	keys []portKey
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
	var ds dests
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
				i = int32(len(ds.d))
				index[pk] = i
				ds.d = append(ds.d, dest{})
			}
			d := &ds.d[i]
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

	ds.keys = make([]portKey, len(ds.d))
	for k, i := range index {
		ds.keys[i] = k
	}

	// The worst destination of every slot, over all destinations.
	if j != nil {
		worst := make([]int32, j.Slots()) // index+1 into dests; 0: none
		for i := range ds.d {
			eachSlot(&ds.d[i], int32(i), overflow, func(slot uint32) {
				if int(slot) < len(worst) && (worst[slot] == 0 || ds.compare(int32(i), worst[slot]-1) < 0) {
					worst[slot] = int32(i) + 1
				}
			})
		}
		out.Worst = make([]PortUse, len(worst))
		for slot, w := range worst {
			if w != 0 {
				out.Worst[slot] = ds.use(w-1, nil)
			}
		}
	}

	out.ds, out.order, out.judge = ds, ds.top(q.Top), j != nil
	if j != nil {
		total := 0
		for _, i := range out.order {
			total += int(ds.d[i].n) + len(overflow[i])
		}
		out.arena, out.from = make([]uint32, 0, total), make([]int32, 1, len(out.order)+1)
		for _, i := range out.order {
			from := len(out.arena)
			eachSlot(&ds.d[i], i, overflow, func(slot uint32) { out.arena = append(out.arena, slot) })
			slices.Sort(out.arena[from:])
			out.from = append(out.from, int32(len(out.arena)))
		}
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
	return s.Ports(), s.Fills, nil
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

// use is destination i as a PortUse.
func (ds *dests) use(i int32, slots []uint32) PortUse {
	k := &ds.keys[i]
	egress, dst := netip.AddrFrom16(k.egress), netip.AddrFrom16(k.dst)
	if k.v4 {
		egress, dst = egress.Unmap(), dst.Unmap()
	}
	return PortUse{Egress: egress, Dst: dst, DstPort: k.port, Proto: k.proto, Used: int(ds.d[i].used), Slots: slots}
}

// compare orders destinations as SNAT.Port lists them: most ports in use
// first, then by egress IP, destination IP, port and protocol.
func (ds *dests) compare(i, j int32) int {
	a, b := &ds.keys[i], &ds.keys[j]
	if ui, uj := ds.d[i].used, ds.d[j].used; ui != uj {
		return int(uj - ui)
	}
	if a.v4 != b.v4 { // as netip.Addr.Compare: IPv4 first
		if a.v4 {
			return -1
		}
		return 1
	}
	if c := bytes.Compare(a.egress[:], b.egress[:]); c != 0 {
		return c
	}
	if c := bytes.Compare(a.dst[:], b.dst[:]); c != 0 {
		return c
	}
	if a.port != b.port {
		return int(a.port) - int(b.port)
	}
	return int(a.proto) - int(b.proto)
}

// top returns the indexes of the top n destinations in order (n <= 0:
// all), selecting with a heap of n so that a node with many destinations
// is not sorted whole.
func (ds *dests) top(n int) []int32 {
	if n <= 0 || n >= len(ds.d) {
		all := make([]int32, len(ds.d))
		for i := range all {
			all[i] = int32(i)
		}
		slices.SortFunc(all, ds.compare)
		return all
	}
	// h is a heap whose root is the last of the n best seen so far.
	h := make([]int32, 0, n)
	worse := func(x, y int32) bool { return ds.compare(x, y) > 0 }
	for i := range ds.d {
		x := int32(i)
		if len(h) < n {
			h = append(h, x)
			for c := len(h) - 1; c > 0; {
				p := (c - 1) / 2
				if !worse(h[c], h[p]) {
					break
				}
				h[c], h[p] = h[p], h[c]
				c = p
			}
			continue
		}
		if !worse(h[0], x) {
			continue
		}
		h[0] = x
		for p := 0; ; {
			l := 2*p + 1
			if l >= len(h) {
				break
			}
			if r := l + 1; r < len(h) && worse(h[r], h[l]) {
				l = r
			}
			if !worse(h[l], h[p]) {
				break
			}
			h[p], h[l] = h[l], h[p]
			p = l
		}
	}
	slices.SortFunc(h, ds.compare)
	return h
}
