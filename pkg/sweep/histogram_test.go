package sweep

import (
	"math"
	"net/netip"
	"testing"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// linearBucket is the histogram's definition: the number of bounds idle
// is above (a bound is in the bucket below it, as Prometheus' le says).
func linearBucket(bounds [7]uint32, idle int32) int {
	b := 0
	for _, bound := range bounds {
		if int64(idle) > int64(bound) {
			b++
		}
	}
	return b
}

// TestProgramIdleHistogram: every engine puts each entry in the bucket
// the bounds define (egwct_ct_idle_seconds' le: an idle time equal to a
// bound is in the bucket of that bound), for idle times one unit below,
// at and one unit above each bound, negative and the longest, on clocks
// whose bounds differ (a bound of 0 units at HZ=24).
func TestProgramIdleHistogram(t *testing.T) {
	for _, c := range []nodeconfig.Clock{{Mode: nodeconfig.Ktime}, {Mode: nodeconfig.Jiffies, HZ: 24}, {Mode: nodeconfig.Jiffies, HZ: 1000}} {
		for _, engine := range engines {
			t.Run(c.String()+"/"+engine.String(), func(t *testing.T) {
				n := newNode(t, "1.18.3", c)
				var bounds [7]uint32
				for i, d := range IdleBuckets {
					bounds[i] = units(c, d)
				}
				idles := []int32{-5, -1, 0, 1, math.MaxInt32}
				for _, b := range bounds {
					idles = append(idles, int32(b)-1, int32(b), int32(b)+1)
				}
				var want [8]uint64
				for i, idle := range idles {
					k := ctmap.Tuple{DAddr: n.addr(podB), SAddr: n.addr(netip.MustParseAddr("198.18.0.1")), DPort: 443,
						SPort: uint16(i + 1), NextHdr: ctmap.ProtoTCP, Flags: ctmap.TupleOut}
					var v ctmap.CTEntry
					v.SetLifetime(n.now + n.units[profiles.StateEstablished] - uint32(idle))
					v.SetFlags(ctmap.FlagSeenNonSyn)
					if err := n.ct.Put(k.Bytes(), v[:]); err != nil {
						t.Fatal(err)
					}
					want[linearBucket(bounds, idle)]++
				}
				// Reclaim mode, whose programs load on every kernel
				// the engine does (5.10's iterator too); without a
				// policy nothing expires.
				s, _ := n.sweeperWith(t, Reclaim, engine, nil)
				res, err := s.Sweep()
				if err != nil {
					t.Fatal(err)
				}
				if res.Counts[0] == nil || res.Counts[0][profiles.StateEstablished].Idle != want {
					var got [8]uint64
					if res.Counts[0] != nil {
						got = res.Counts[0][profiles.StateEstablished].Idle
					}
					t.Errorf("idle histogram %v, want %v (bounds %v)", got, want, bounds)
				}
				if after := dump(t, n.ct); len(after) != len(idles) {
					t.Errorf("%d entries left of %d", len(after), len(idles))
				}
			})
		}
	}
}
