package lab

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// TestDualStack: labs of the versions with IPv6 egress gateway are
// dual-stack, the others IPv4-only.
func TestDualStack(t *testing.T) {
	for _, tc := range []struct {
		version string
		dual    bool
	}{
		{"1.14", false}, {"1.15", false}, {"1.16", false}, {"1.17", false},
		{"1.18", true}, {"1.19", true}, {"main", true},
	} {
		res, err := profiles.Resolve(tc.version)
		if err != nil {
			t.Fatal(err)
		}
		if got := DualStack(res.Profile); got != tc.dual {
			t.Errorf("%s: DualStack %v, want %v", tc.version, got, tc.dual)
		}
	}
}

// TestWorldIPv4SameWhenDual: adding the IPv6 side changes nothing of a
// seed's IPv4 world.
func TestWorldIPv4SameWhenDual(t *testing.T) {
	for _, tc := range []struct {
		seed     uint64
		policies int
	}{{1, 8}, {7, 1}, {42, 20}, {3, 40}} {
		v4, dual := worldFor(tc.seed, tc.policies, false), worldFor(tc.seed, tc.policies, true)
		if v4.dual || !dual.dual || len(v4.localPods6) != 0 {
			t.Fatalf("seed %d: dual %v / %v", tc.seed, v4.dual, dual.dual)
		}
		if !slices.Equal(v4.localPods, dual.localPods) || !slices.Equal(v4.egressIPs, dual.egressIPs) {
			t.Errorf("seed %d: local pods or egress IPs differ", tc.seed)
		}
		for i, p := range dual.policies {
			q := v4.policies[i]
			if len(q.Pods6)+len(q.Dests6)+len(q.Excluded6) != 0 || q.EgressIP6.IsValid() || q.Hot6.IsValid() {
				t.Errorf("seed %d: IPv4-only policy %s has IPv6: %+v", tc.seed, q.Name, q)
			}
			p.Pods6, p.Dests6, p.Excluded6, p.EgressIP6, p.Hot6 = nil, nil, nil, netip.Addr{}, netip.AddrPort{}
			if !slices.Equal(p.Pods, q.Pods) || !slices.Equal(p.Dests, q.Dests) || !slices.Equal(p.Excluded, q.Excluded) ||
				p.Name != q.Name || p.EgressIP != q.EgressIP || p.Hot != q.Hot || p.Identity != q.Identity || p.Timeouts != q.Timeouts {
				t.Errorf("seed %d: policy %d differs:\n%+v\n%+v", tc.seed, i, p, q)
			}
		}
	}
}

// TestWorldIPv6 checks the address plan of a dual-stack world.
func TestWorldIPv6(t *testing.T) {
	w := worldFor(1, 20, true)
	seen := map[netip.Addr]bool{}
	egress6 := map[netip.Addr]netip.Addr{} // IPv4 egress IP → IPv6 one
	for _, p := range w.policies {
		if len(p.Pods6) != len(p.Pods) {
			t.Fatalf("%s: %d pods, %d IPv6 addresses", p.Name, len(p.Pods), len(p.Pods6))
		}
		for i, a := range p.Pods6 {
			if !podNet6.Contains(a) || seen[a] || a.As16()[15] != p.Pods[i].As4()[3] {
				t.Errorf("%s: pod %s has IPv6 address %s", p.Name, p.Pods[i], a)
			}
			seen[a] = true
		}
		if len(p.Dests6) == 0 || (len(p.Excluded) > 0) != (len(p.Excluded6) > 0) {
			t.Errorf("%s: IPv6 destinations %v, excluded %v (IPv4 excluded %v)", p.Name, p.Dests6, p.Excluded6, p.Excluded)
		}
		for _, d := range slices.Concat(p.Dests6, p.Excluded6) {
			if !d.Addr().Is6() || d != d.Masked() {
				t.Errorf("%s: CIDR %s", p.Name, d)
			}
		}
		if !p.Dests6[0].Contains(p.Hot6.Addr()) || slices.ContainsFunc(p.Excluded6, func(e netip.Prefix) bool { return e.Contains(p.Hot6.Addr()) }) {
			t.Errorf("%s: hot destination %s outside %v or in %v", p.Name, p.Hot6, p.Dests6[0], p.Excluded6)
		}
		if !egressNet6.Contains(p.EgressIP6) {
			t.Errorf("%s: egress IP %s", p.Name, p.EgressIP6)
		}
		if e, ok := egress6[p.EgressIP]; ok && e != p.EgressIP6 {
			t.Errorf("%s: egress IP %s is %s here and %s elsewhere", p.Name, p.EgressIP, p.EgressIP6, e)
		}
		egress6[p.EgressIP] = p.EgressIP6
	}
	if len(w.localPods6) != len(w.localPods) {
		t.Errorf("%d local pods, %d IPv6 addresses", len(w.localPods), len(w.localPods6))
	}
	// The same seed, the same world.
	again := worldFor(1, 20, true)
	for i := range w.policies {
		if w.policies[i].Hot6 != again.policies[i].Hot6 || !slices.Equal(w.policies[i].Dests6, again.policies[i].Dests6) {
			t.Fatalf("seed 1 gave two worlds: %+v, %+v", w.policies[i], again.policies[i])
		}
	}
}

func TestRandomIn(t *testing.T) {
	for _, tc := range []struct {
		prefix   string
		excluded []string
		within   string // where every pick must be
	}{
		{"198.18.4.0/24", nil, "198.18.4.0/24"},
		{"0.0.0.0/0", []string{"10.0.0.0/8", "192.168.0.0/16"}, "0.0.0.0/0"},
		{"2001:db8:1:7::/64", nil, "2001:db8:1:7::/64"},
		{"2001:db8:1:7::/61", nil, "2001:db8:1::/61"},
		{"::/0", []string{"fd00::/8", "2001:db8:ff00::/40"}, "2001:db8::/32"},
		{"2001:db8::/32", []string{"2001:db8::/33"}, "2001:db8:8000::/33"},
	} {
		rng := rand.New(rand.NewPCG(1, 2))
		p := netip.MustParsePrefix(tc.prefix)
		within := netip.MustParsePrefix(tc.within)
		var excluded []netip.Prefix
		for _, e := range tc.excluded {
			excluded = append(excluded, netip.MustParsePrefix(e))
		}
		distinct := map[netip.Addr]bool{}
		for i := 0; i < 200; i++ {
			a := randomIn(rng, p, excluded)
			if !within.Contains(a) || a == p.Masked().Addr() || slices.ContainsFunc(excluded, func(e netip.Prefix) bool { return e.Contains(a) }) {
				t.Fatalf("%s minus %v: picked %s", tc.prefix, tc.excluded, a)
			}
			distinct[a] = true
		}
		if len(distinct) < 100 { // a /24 has 254 hosts: about 140 expected
			t.Errorf("%s: only %d distinct addresses in 200 picks", tc.prefix, len(distinct))
		}
	}
}

// TestFlowsIPv6: about a fifth of a dual-stack lab's flows are IPv6, from
// the pods' IPv6 addresses to the policies' IPv6 destinations through
// their IPv6 egress IP; an IPv4-only lab has none.
func TestFlowsIPv6(t *testing.T) {
	res, _ := profiles.Resolve("1.18")
	for _, dual := range []bool{false, true} {
		w := worldFor(1, 8, dual)
		g := newGen(rand.New(rand.NewPCG(1, 2)), res.Profile, nodeconfig.Clock{Mode: nodeconfig.Ktime}, 1_000_000, w)
		pod6 := map[netip.Addr]*Policy{}
		for i := range w.policies {
			for _, a := range w.policies[i].Pods6 {
				pod6[a] = &w.policies[i]
			}
		}
		n, v6 := 0, 0
		for i := 0; i < 5000; i++ {
			f, ok := g.flow()
			if !ok {
				continue
			}
			n++
			k := f.ct.Key
			if k.Family() == 4 {
				if k.NextHdr == ctmap.ProtoICMPv6 || f.egress.Is6() {
					t.Fatalf("IPv4 flow %+v", f)
				}
				continue
			}
			v6++
			if !dual || k.NextHdr == ctmap.ProtoICMP || !k.SAddr.Is6() || k.Flags != ctmap.TupleOut || !f.egress.Is6() {
				t.Fatalf("IPv6 flow %+v (dual %v)", f, dual)
			}
			p := pod6[k.DAddr]
			switch {
			case p == nil && f.related:
				if !slices.Contains(w.localPods6, k.DAddr) || f.egress != NodeIP6 {
					t.Fatalf("local IPv6 flow %+v", f)
				}
			case p == nil:
				t.Fatalf("IPv6 flow of no pod: %+v", f)
			default:
				if f.egress != p.EgressIP6 || !slices.ContainsFunc(p.Dests6, func(d netip.Prefix) bool { return d.Contains(k.SAddr) }) ||
					slices.ContainsFunc(p.Excluded6, func(d netip.Prefix) bool { return d.Contains(k.SAddr) }) {
					t.Fatalf("IPv6 flow %+v of policy %s (destinations %v minus %v)", f, p.Name, p.Dests6, p.Excluded6)
				}
			}
		}
		if share := float64(v6) / float64(n); dual && (share < 0.15 || share > 0.25) {
			t.Errorf("dual-stack: %d of %d flows IPv6", v6, n)
		}
	}
}
