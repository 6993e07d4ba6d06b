package ctstats

import (
	"net/netip"
	"os"
	"testing"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

// BenchmarkLab reads a ktime lab of Cilium 1.18 given by
// EGWCT_CTSTATS_BENCH_FS (`egwct lab up --flows 1000000`): the dry run's
// impact (SNAT ports freed looked up per expired entry) against the same
// count joined from a walk of the SNAT maps, and the agent's bounded
// port-pressure reading.
func BenchmarkLab(b *testing.B) {
	fs := os.Getenv("EGWCT_CTSTATS_BENCH_FS")
	if fs == "" {
		b.Skip("EGWCT_CTSTATS_BENCH_FS not set")
	}
	res, err := profiles.Resolve("1.18.3")
	if err != nil {
		b.Fatal(err)
	}
	n := openNode(b, fs, res)
	j := NewJudge(n.set, n.times)
	families := sweep.Families(n.profile)
	b.Run("impact-lookup", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			im, err := ImpactNow(j, n.cts, n.nats, families)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(sumFreed(im.Freed)), "freed")
		}
	})
	b.Run("impact-join", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			// The alternative: the egress keys of the expired entries,
			// then one walk of the SNAT maps.
			keys := map[ctmap.Tuple]struct{}{}
			var c ctmap.CT
			for _, m := range n.cts {
				m.Walk(func(k, v []byte) error {
					c.Key, _ = ctmap.DecodeTuple(k)
					copy(c.Value[:], v)
					if _, over := j.Judge(&c); over {
						keys[c.Key.SwapAddrs()] = struct{}{}
					}
					return nil
				})
			}
			freed := map[netip.Addr]int{}
			for _, m := range n.nats {
				m.Walk(func(k, v []byte) error {
					key, _ := ctmap.DecodeTuple(k)
					if _, ok := keys[key]; ok {
						e, _ := ctmap.DecodeNATEntry(v)
						freed[e.Addr()]++
					}
					return nil
				})
			}
			b.ReportMetric(float64(sumFreed(freed)), "freed")
		}
	})
	b.Run("port-pressure", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, _, err := PortPressure(n.nats, DefaultTopN); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func sumFreed(m map[netip.Addr]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
