package ctstats

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

func (ds *dests) add(used int32, egress, dst string, port uint16) {
	e, d := netip.MustParseAddr(egress), netip.MustParseAddr(dst)
	ds.keys = append(ds.keys, portKey{e.As16(), d.As16(), port, ctmap.ProtoTCP, e.Is4()})
	ds.d = append(ds.d, dest{used: used})
}

// TestTopDests: the heap selection returns the head of the full order,
// ties broken by egress IP, destination and port, IPv4 before IPv6.
func TestTopDests(t *testing.T) {
	var ds dests
	ds.add(5, "192.168.0.2", "198.18.0.1", 443)
	ds.add(9, "192.168.0.1", "198.18.0.1", 443)
	ds.add(5, "192.168.0.1", "198.18.0.2", 443)
	ds.add(5, "192.168.0.1", "198.18.0.1", 80)
	ds.add(5, "2001:db8:ff00::1", "2001:db8:1::1", 443)
	ds.add(1, "192.168.0.1", "198.18.0.9", 443)
	ds.add(5, "192.168.0.1", "198.18.0.1", 443)
	full := []int32{1, 3, 6, 2, 0, 4, 5}
	tests := []struct {
		n    int
		want []int32
	}{
		{0, full}, {-1, full}, {1, full[:1]}, {3, full[:3]}, {6, full[:6]}, {7, full}, {100, full},
	}
	for _, tc := range tests {
		if got := ds.top(tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("top(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
	if got := (&dests{}).top(30); len(got) != 0 {
		t.Errorf("no destinations: %v", got)
	}
}

// TestSlots: a destination held by more policies than it holds inline
// lists every one of them, once.
func TestSlots(t *testing.T) {
	var d dest
	overflow := map[int32][]uint32{}
	for _, s := range []uint32{4, 0, 4, 7, 9, 2, 9, 0, 11} {
		addSlot(&d, 3, s, overflow)
	}
	var got []uint32
	eachSlot(&d, 3, overflow, func(s uint32) { got = append(got, s) })
	slices.Sort(got)
	if want := []uint32{0, 2, 4, 7, 9, 11}; !slices.Equal(got, want) {
		t.Errorf("slots %v, want %v", got, want)
	}
}

// TestJudgeTimeout: policy timeouts in the node's clock units become
// durations; no policy, out-of-range slots and states read as the node's.
func TestJudgeTimeout(t *testing.T) {
	set := []sweep.Policy{{Name: "a", Timeouts: [4]uint32{0, 300, 0, 30}}, {Name: "b", Timeouts: [4]uint32{2, 0, 0, 0}}}
	jiffies := nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: 256}
	tests := []struct {
		clock nodeconfig.Clock
		slot  uint32
		st    profiles.State
		want  time.Duration
	}{
		{nodeconfig.Clock{Mode: nodeconfig.Ktime}, 1, profiles.StateEstablished, 300 * time.Second},
		{nodeconfig.Clock{Mode: nodeconfig.Ktime}, 1, profiles.StateSyn, 0},
		{nodeconfig.Clock{Mode: nodeconfig.Ktime}, 0, profiles.StateEstablished, 0},
		{nodeconfig.Clock{Mode: nodeconfig.Ktime}, 3, profiles.StateEstablished, 0},
		{nodeconfig.Clock{Mode: nodeconfig.Ktime}, 1, profiles.State(9), 0},
		{jiffies, 2, profiles.StateSyn, jiffies.Duration(2)},
	}
	for _, tc := range tests {
		j := NewJudge(set, ctmap.Times{Clock: tc.clock})
		if got := j.Timeout(tc.slot, tc.st); got != tc.want || j.Slots() != 3 {
			t.Errorf("%v: Timeout(%d, %v) = %v, want %v", tc.clock, tc.slot, tc.st, got, tc.want)
		}
	}
}

// TestSNATAllocations: the allocations of a SNAT walk grow with the
// destinations, not with the entries.
func TestSNATAllocations(t *testing.T) {
	fs := testutil.PrivateBPFFS(t)
	r, _ := profiles.Resolve("1.18.3")
	spec, _ := r.Profile.Map(profiles.RoleSNAT, 4)
	m, err := ctmap.Create(fs, spec, 8192)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	egress, pod := netip.MustParseAddr("192.168.100.10"), netip.MustParseAddr("10.1.0.5")
	dst := netip.MustParseAddr("198.18.0.7")
	j := NewJudge(nil, ctmap.Times{})
	allocs := func(entries int) float64 {
		for i := 0; i < entries; i++ {
			k := ctmap.Tuple{DAddr: dst, SAddr: pod, DPort: 443, SPort: uint16(10000 + i), NextHdr: ctmap.ProtoTCP}
			v := ctmap.NewNATEntry(1, true, egress, uint16(32768+i))
			if err := m.Put(k.Bytes(), v.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
		return testing.AllocsPerRun(5, func() { WalkSNAT(j, []*ctmap.Map{m}, SNATQuery{}) })
	}
	small := allocs(100)
	large := allocs(6000)
	if large > small+8 {
		t.Errorf("%v allocations for 100 entries, %v for 6000", small, large)
	}
}

// TestNoJudge: a CT walk without a judge is an error, not a panic; a SNAT
// walk without one counts ports only.
func TestNoJudge(t *testing.T) {
	if ct := WalkCT(nil, nil, CTQuery{}); len(ct.Errors) != 1 || len(ct.Slots) != 1 {
		t.Errorf("WalkCT(nil): %+v", ct)
	}
	if _, err := ImpactNow(nil, nil, nil, []int{4}); err == nil {
		t.Error("ImpactNow(nil) succeeded")
	}
	if s := WalkSNAT(nil, nil, SNATQuery{}); s.Worst != nil || s.Len() != 0 || len(s.Ports()) != 0 {
		t.Errorf("WalkSNAT(nil): %+v", s)
	}
}
