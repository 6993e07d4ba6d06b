package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// naiveKeys is Keys as a plain scan: every endpoint against every
// selector.
func naiveKeys(s *Spec, eps []*Endpoint) []Key {
	var out []Key
	for _, e := range eps {
		if !s.selects(e) {
			continue
		}
		for _, ip := range e.IPs {
			for _, d := range s.DestinationCIDRs {
				if d.Addr().Is4() == ip.Is4() {
					out = append(out, Key{Pod: ip, Dest: d})
				}
			}
			for _, d := range s.ExcludedCIDRs {
				if d.Addr().Is4() == ip.Is4() {
					out = append(out, Key{Pod: ip, Dest: d, Excluded: true})
				}
			}
		}
	}
	return out
}

// TestKeysInEqualsScan: the label index selects exactly what a scan of
// every endpoint does, for random labels and selectors of every kind.
func TestKeysInEqualsScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	label := func() (string, string) { return fmt.Sprintf("k%d", r.IntN(4)), fmt.Sprintf("v%d", r.IntN(3)) }
	var eps []*Endpoint
	for i := range 400 {
		e := &Endpoint{Name: fmt.Sprint(i), Labels: map[string]string{}}
		for range r.IntN(4) {
			k, v := label()
			e.Labels[k] = v
		}
		e.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})}
		if r.IntN(3) == 0 {
			e.IPs = append(e.IPs, netip.AddrFrom16([16]byte{0xfd, 15: byte(i)}))
		}
		eps = append(eps, e)
	}
	ix := IndexEndpoints(eps)
	ops := []string{"In", "NotIn", "Exists", "DoesNotExist"}
	for n := range 300 {
		s := &Spec{DestinationCIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
			ExcludedCIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")}}
		for range 1 + r.IntN(3) {
			sel := Selector{MatchLabels: map[string]string{}}
			for range r.IntN(3) {
				k, v := label()
				sel.MatchLabels[k] = v
			}
			for range r.IntN(2) {
				k, v := label()
				sel.MatchExpressions = append(sel.MatchExpressions, Requirement{Key: k, Operator: ops[r.IntN(len(ops))], Values: []string{v}})
			}
			s.Selectors = append(s.Selectors, sel)
		}
		got := s.KeysIn(ix, 4, 6)
		want := naiveKeys(s, eps)
		slices.SortFunc(want, func(a, b Key) int {
			if c := a.Pod.Compare(b.Pod); c != 0 {
				return c
			}
			if c := a.Dest.Addr().Compare(b.Dest.Addr()); c != 0 {
				return c
			}
			return a.Dest.Bits() - b.Dest.Bits()
		})
		if !slices.Equal(got, want) {
			t.Fatalf("spec %d %+v: %d keys, want %d", n, s.Selectors, len(got), len(want))
		}
	}
}

// BenchmarkKeys resolves 50 policies (one app of 500 each, two CIDRs)
// against 50,000 endpoints, with the label index and, as the baseline of
// the same run, with a scan of every endpoint:
//
//	go test ./pkg/policy -run '^$' -bench Keys -benchtime 5x
func BenchmarkKeys(b *testing.B) {
	var eps []*Endpoint
	for i := range 50000 {
		eps = append(eps, NewEndpoint(fmt.Sprintf("ep-%d", i), "ns", []string{fmt.Sprintf("k8s:app=app-%d", i%500), "k8s:tier=web"},
			[]string{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()}, Position{}))
	}
	var specs []*Spec
	for j := range 50 {
		specs = append(specs, &Spec{Selectors: []Selector{{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", j), PodNamespaceLabel: "ns"}}},
			DestinationCIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24")}})
	}
	b.Run("index", func(b *testing.B) {
		for range b.N {
			ix := IndexEndpoints(eps)
			for _, s := range specs {
				if len(s.KeysIn(ix, 4)) != 200 {
					b.Fatal("keys")
				}
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		for range b.N {
			for _, s := range specs {
				if len(naiveKeys(s, eps)) != 200 {
					b.Fatal("keys")
				}
			}
		}
	})
}
