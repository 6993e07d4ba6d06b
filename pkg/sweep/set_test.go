package sweep

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// randomSet is a set of policies over IPv4 and IPv6 pods with nested and
// excluded destination prefixes.
func randomSet(rng *rand.Rand, policies, pods4, pods6 int) []Policy {
	set := make([]Policy, policies)
	for i := range set {
		set[i].Name = "ns/p" + itoa(i%100)
		for st := range set[i].Timeouts {
			if rng.IntN(2) == 0 {
				set[i].Timeouts[st] = uint32(1 + rng.IntN(1000))
			}
		}
	}
	prefix := func(v6 bool) netip.Prefix {
		if v6 {
			b := netip.MustParseAddr("2001:db8::").As16()
			b[12], b[13] = byte(rng.IntN(4)), byte(rng.IntN(256))
			return netip.PrefixFrom(netip.AddrFrom16(b), []int{0, 96, 104, 112, 120, 128}[rng.IntN(6)]).Masked()
		}
		a := netip.AddrFrom4([4]byte{198, 18 + byte(rng.IntN(2)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		return netip.PrefixFrom(a, []int{0, 8, 15, 16, 24, 32}[rng.IntN(6)]).Masked()
	}
	add := func(pod netip.Addr) {
		seen := map[netip.Prefix]bool{}
		for j := 0; j < 1+rng.IntN(6); j++ {
			d := prefix(pod.Is6())
			if seen[d] {
				continue // one rule per (pod, prefix), as Cilium's map
			}
			seen[d] = true
			p := &set[rng.IntN(len(set))]
			p.Keys = append(p.Keys, Key{Pod: pod, Dest: d, Excluded: d.Bits() > 0 && rng.IntN(5) == 0})
		}
	}
	for i := 0; i < pods4; i++ {
		add(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	for i := 0; i < pods6; i++ {
		b := netip.MustParseAddr("fd00:10:1::").As16()
		b[14], b[15] = byte(i>>8), byte(i)
		add(netip.AddrFrom16(b))
	}
	return set
}

// TestSetRoundTrip: what encodeSet writes, decodeSet reads back: every
// key with its slot, timeouts and flags. A small set puts the rules of
// every pod of at most maxLens prefix lengths in a table; the largest
// does where they fit, and lists the rest.
func TestSetRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ policies, pods4, pods6 int }{{0, 0, 0}, {1, 1, 0}, {1, 0, 1}, {7, 100, 50}, {300, 20000, 9000}} {
		set := randomSet(rng, tc.policies, tc.pods4, tc.pods6)
		// A key whose pod and destination differ in family never matches.
		if len(set) > 0 {
			set[0].Keys = append(set[0].Keys, Key{Pod: netip.MustParseAddr("10.9.9.9"), Dest: netip.MustParsePrefix("2001:db8::/32")})
		}
		b, err := encodeSet(set)
		if err != nil {
			t.Fatal(err)
		}
		tables, lists := 0, 0
		for _, p := range b.Pods4 {
			switch {
			case p.N != 0 && p.Bits != 0:
				tables++
			case p.N != 0:
				lists++
			}
		}
		// Pods of more than maxLens prefix lengths always get a list.
		lens := map[netip.Addr]map[int]bool{}
		for _, p := range set {
			for _, k := range p.Keys {
				if k.Pod.Is4() && k.Dest.Addr().Is4() {
					if lens[k.Pod] == nil {
						lens[k.Pod] = map[int]bool{}
					}
					lens[k.Pod][k.Dest.Bits()] = true
				}
			}
		}
		many := 0
		for _, l := range lens {
			if len(l) > int(maxLens) {
				many++
			}
		}
		if tc.pods4 == 100 && (tables != 100-many || lists != many) || tc.pods4 == 20000 && (tables == 0 || lists <= many) {
			t.Errorf("%+v: %d pods with a table, %d with a list (%d of more than %d prefix lengths)", tc, tables, lists, many, maxLens)
		}
		got := decodeSet(b)
		want := map[Key]policyVal{}
		for i, p := range set {
			for _, k := range p.Keys {
				if k.Pod.Is4() != k.Dest.Addr().Is4() {
					continue
				}
				v := policyVal{ID: uint32(i + 1), Timeout: p.Timeouts}
				if k.Excluded {
					v.Flags = ruleExcluded
				}
				want[k] = v
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%+v: decoded %d keys, want %d", tc, len(got), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%+v: key %v decoded as %+v, want %+v", tc, k, got[k], v)
			}
		}
	}
}

// TestSetLimits: a set beyond the program's limits is refused with an
// error that says which.
func TestSetLimits(t *testing.T) {
	many := func(n int, v6 bool) []Policy {
		p := Policy{Name: "big"}
		for i := 0; i < n; i++ {
			pod := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			dest := netip.MustParsePrefix("0.0.0.0/0")
			if v6 {
				b := netip.MustParseAddr("fd00::").As16()
				b[13], b[14], b[15] = byte(i>>16), byte(i>>8), byte(i)
				pod, dest = netip.AddrFrom16(b), netip.MustParsePrefix("::/0")
			}
			p.Keys = append(p.Keys, Key{Pod: pod, Dest: dest})
		}
		return []Policy{p}
	}
	for _, tc := range []struct {
		name string
		set  []Policy
		want string // "" accepted
	}{
		{"IPv4 pods at the limit", many(MaxPods, false), ""},
		{"IPv4 pods over", many(MaxPods+1, false), "IPv4 pods; egwct holds at most 32768"},
		{"IPv6 pods at the limit", many(MaxPods6, true), ""},
		{"IPv6 pods over", many(MaxPods6+1, true), "IPv6 pods; egwct holds at most 16384"},
		{"policies over", make([]Policy, MaxPolicies), "at most 4095"},
	} {
		_, err := encodeSet(tc.set)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	var keys Policy
	for i := 0; i <= MaxKeys; i++ {
		keys.Keys = append(keys.Keys, Key{Pod: netip.AddrFrom4([4]byte{10, 0, byte(i / MaxRules >> 8), byte(i / MaxRules)}),
			Dest: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i % MaxRules), 0}), 24)})
	}
	if _, err := encodeSet([]Policy{keys}); err == nil || !strings.Contains(err.Error(), "IPv4 (pod, CIDR) keys; egwct holds at most 65536") {
		t.Errorf("too many keys: %v", err)
	}
}

// TestProgramMatchesModel: on thousands of IPv4 and IPv6 flows of
// thousands of pods, with nested and excluded prefixes and destinations
// no rule holds, the program attributes every entry to the policy the
// model does and expires the same ones, with every engine and with the
// pods' rules in tables and in lists. This exercises the probing of the
// pod tables and of the pods' rule tables.
func TestProgramMatchesModel(t *testing.T) {
	clock := nodeconfig.Clock{Mode: nodeconfig.Ktime}
	rng := rand.New(rand.NewPCG(3, 4))
	set := randomSet(rng, 40, 3000, 1500)
	matcher := NewMatcher(set)
	for _, layout := range []struct {
		name string
		bits uint
	}{{"tables", maxTableBits}, {"lists", 0}} {
		for _, engine := range engines {
			t.Run(layout.name+"/"+engine.String(), func(t *testing.T) {
				defer func(b uint) { maxTableBits = b }(maxTableBits)
				maxTableBits = layout.bits
				programMatchesModel(t, clock, set, matcher, engine)
			})
		}
	}
}

// programMatchesModel is TestProgramMatchesModel with one engine and the
// set's layout of the moment.
func programMatchesModel(t *testing.T, clock nodeconfig.Clock, set []Policy, matcher *Matcher, engine Engine) {
	n4 := newNodeFamily(t, "1.18.3", clock, 6, 1<<16)
	now := n4.now
	times := ctmap.NewTimes(clock, now, n4.timeout)
	want := map[uint32]*[4]Counts{}
	r := rand.New(rand.NewPCG(5, 6))
	for _, p := range set {
		for _, k := range p.Keys {
			for j := 0; j < 4; j++ {
				dest := k.Dest.Addr().AsSlice()
				from := k.Dest.Bits() / 8
				if j == 3 {
					from = 0 // anywhere: mostly no rule of the pod holds it
				}
				for i := from; i < len(dest); i++ {
					dest[i] = byte(r.IntN(256))
				}
				d, _ := netip.AddrFromSlice(dest)
				proto := []uint8{ctmap.ProtoTCP, ctmap.ProtoUDP}[r.IntN(2)]
				c := ctmap.CT{Key: ctmap.Tuple{DAddr: k.Pod, SAddr: d, DPort: 443, SPort: uint16(r.IntN(65536)), NextHdr: proto, Flags: ctmap.TupleOut}}
				if r.IntN(10) == 0 {
					c.Key.Flags = ctmap.TupleIn
				}
				st := profiles.StateNonTCP
				if proto == ctmap.ProtoTCP {
					st = profiles.StateEstablished
					c.Value.SetFlags(ctmap.FlagSeenNonSyn)
				}
				// Idle 0–1100 s: some over their policy's timeout.
				c.Value.SetLifetime(now + times.Node[st] - uint32(clock.Units(time.Duration(r.IntN(1100))*time.Second)))
				m, _ := n4.ctMaps(k.Pod.Is4(), proto == ctmap.ProtoTCP)
				if err := m.Put(c.Key.Bytes(), c.Value[:]); err != nil {
					t.Fatal(err)
				}
				slot, exp := matcher.Judge(&c, times)
				if want[slot] == nil {
					want[slot] = new([4]Counts)
				}
				want[slot][st].Seen++
				// Mark mode leaves entries already past their
				// lifetime to Cilium's GC.
				if exp && int32(c.Value.Lifetime()-now) >= 0 {
					want[slot][st].Expired++
				}
			}
		}
	}
	s, _ := n4.sweeperWith(t, Mark, engine, set)
	res, err := s.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	for slot, cs := range want {
		for st, c := range cs {
			got := Counts{}
			if res.Counts[slot] != nil {
				got = res.Counts[slot][st]
			}
			if got.Seen != c.Seen || got.Expired != c.Expired {
				t.Errorf("slot %d %s: program saw %d, expired %d; model %d, %d", slot, profiles.State(st), got.Seen, got.Expired, c.Seen, c.Expired)
			}
		}
	}
	if len(res.Counts) != len(want) {
		t.Errorf("program counted %d slots, model %d", len(res.Counts), len(want))
	}
}
