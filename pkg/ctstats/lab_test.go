package ctstats

import (
	"errors"
	"maps"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/egwct/egwct/internal/lab"
	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

// node is a lab node opened for reading.
type node struct {
	profile   *profiles.Profile
	cts, nats []*ctmap.Map
	set       []sweep.Policy
	times     ctmap.Times
}

// labNode builds a lab of the version and a policy set from its egress
// policy maps: one policy per egress IP with the timeouts of timeouts[i%4]
// (seconds; the lab's clock is ktime).
func labNode(t *testing.T, version string, flows int) *node {
	t.Helper()
	fs := testutil.PrivateBPFFS(t)
	res, err := profiles.Resolve(version)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	if _, err := lab.Up(lab.Config{BPFFS: fs, StateDir: state, Version: res, Flows: flows, Policies: 8, Seed: 3, Clock: nodeconfig.Clock{Mode: nodeconfig.Ktime}}); err != nil {
		t.Fatal(err)
	}
	return openNode(t, fs, res)
}

// openNode opens the maps of a ktime lab and builds its policy set.
func openNode(t testing.TB, fs string, res profiles.Resolution) *node {
	t.Helper()
	clock := nodeconfig.Clock{Mode: nodeconfig.Ktime}
	n := &node{profile: res.Profile}
	byEgress := map[netip.Addr]int{}
	for _, spec := range res.Profile.Maps {
		m, err := ctmap.Open(fs, spec, false)
		if errors.Is(err, ctmap.ErrMapMissing) && spec.Optional {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		switch spec.Role {
		case profiles.RoleCTTCP, profiles.RoleCTAny:
			n.cts = append(n.cts, m)
		case profiles.RoleSNAT:
			n.nats = append(n.nats, m)
		case profiles.RoleEgressPolicy:
			err := m.Walk(func(k, v []byte) error {
				e, err := ctmap.DecodeEgressPolicy(k, v)
				if err != nil {
					return err
				}
				i, ok := byEgress[e.EgressIP]
				if !ok {
					i = len(n.set)
					byEgress[e.EgressIP] = i
					timeouts := [][4]uint32{{0, 300, 0, 30}, {0, 0, 0, 0}, {20, 120, 5, 20}, {0, 7200, 0, 0}}[i%4]
					n.set = append(n.set, sweep.Policy{Name: e.EgressIP.String(), Timeouts: timeouts})
				}
				n.set[i].Keys = append(n.set[i].Keys, policy.Key{Pod: e.Source, Dest: e.Dest, Excluded: e.Excluded()})
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(n.set) == 0 || len(n.cts) == 0 || len(n.nats) == 0 {
		t.Fatalf("lab: %d policies, %d CT and %d SNAT maps", len(n.set), len(n.cts), len(n.nats))
	}
	timeouts := map[profiles.State]time.Duration{}
	for _, prm := range res.Profile.Parameters {
		timeouts[prm.State] = prm.Default
	}
	now, err := ctmap.Now(clock)
	if err != nil {
		t.Fatal(err)
	}
	n.times = ctmap.NewTimes(clock, now, timeouts)
	return n
}

// directJudge is an independent statement of the sweeper's judgement:
// the policy of the longest prefix among the keys of the entry's pod
// holding its destination (none if that key is excluded), and whether
// the entry has been idle for its policy's timeout of its state.
func directJudge(set []sweep.Policy, times ctmap.Times, c *ctmap.CT) (slot int, expired bool) {
	if c.Key.Flags != ctmap.TupleOut {
		return 0, false
	}
	best, bits, excluded := -1, -1, false
	for i, p := range set {
		for _, k := range p.Keys {
			if k.Pod == c.Key.DAddr && k.Dest.Contains(c.Key.SAddr) && k.Dest.Bits() > bits {
				best, bits, excluded = i, k.Dest.Bits(), k.Excluded
			}
		}
	}
	if best < 0 || excluded {
		return 0, false
	}
	st := c.State()
	limit := set[best].Timeouts[st]
	idle := int32(times.Now - (c.Value.Lifetime() - times.Node[st]))
	return best + 1, limit != 0 && idle >= int32(limit)
}

// TestImpactLab: what a sweep now would expire and the SNAT ports it
// would free equal a direct count over the lab's maps, the ports joined
// from a key-by-key walk of the SNAT maps rather than looked up.
func TestImpactLab(t *testing.T) {
	for _, version := range []string{"1.18.3", "1.16.15"} {
		t.Run(version, func(t *testing.T) {
			n := labNode(t, version, 3000)
			families := sweep.Families(n.profile)
			im, err := ImpactNow(NewJudge(n.set, n.times), n.cts, n.nats, families)
			if err != nil {
				t.Fatal(err)
			}

			want := make([][4]int, len(n.set)+1)
			freedKeys := map[ctmap.Tuple]bool{}
			var c ctmap.CT
			for _, m := range n.cts {
				if !slices.Contains(families, m.Spec.Family) {
					continue
				}
				err := m.WalkIterate(func(k, v []byte) error {
					c.Key, _ = ctmap.DecodeTuple(k)
					copy(c.Value[:], v)
					if slot, exp := directJudge(n.set, n.times, &c); exp {
						want[slot][c.State()]++
						freedKeys[c.Key.SwapAddrs()] = true
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			wantFreed := map[netip.Addr]int{}
			for _, m := range n.nats {
				if !slices.Contains(families, m.Spec.Family) {
					continue
				}
				err := m.WalkIterate(func(k, v []byte) error {
					key, _ := ctmap.DecodeTuple(k)
					if key.Flags == ctmap.TupleOut && freedKeys[key] {
						e, _ := ctmap.DecodeNATEntry(v)
						wantFreed[e.Addr()]++
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}

			total := 0
			for slot := range want {
				total += want[slot][0] + want[slot][1] + want[slot][2] + want[slot][3]
			}
			if total == 0 || len(wantFreed) == 0 {
				t.Fatalf("the lab has nothing to expire: %v %v", want, wantFreed)
			}
			if !slices.Equal(im.Expired, want) {
				t.Errorf("expired\n got %v\nwant %v", im.Expired, want)
			}
			if !maps.Equal(im.Freed, wantFreed) {
				t.Errorf("freed\n got %v\nwant %v", im.Freed, wantFreed)
			}
			// And what internal/cli's impact() computed before it used
			// this package: its loop, restated.
			todayExpired, todayPorts := todayImpact(t, n, families)
			if !slices.Equal(im.Expired, todayExpired) || len(todayPorts) != len(im.Freed) {
				t.Errorf("against apply's impact(): expired %v, want %v; freed %v, want %v", im.Expired, todayExpired, im.Freed, todayPorts)
			}
			for ip, ports := range im.Freed {
				if todayPorts[ip.String()] != ports {
					t.Errorf("against apply's impact(): %s frees %d, want %d", ip, ports, todayPorts[ip.String()])
				}
			}
			if len(families) == 2 && !slices.ContainsFunc(slices.Collect(maps.Keys(im.Freed)), netip.Addr.Is6) {
				t.Errorf("no IPv6 port freed on a dual-stack lab: %v", im.Freed)
			}
		})
	}
}

// TestWalkLab: the per-slot counts of a CT walk and the port use of a
// SNAT walk equal direct counts; a bounded SNAT walk keeps the head of
// the full one, and the worst destination of every slot is the first of
// its destinations in the full list.
func TestWalkLab(t *testing.T) {
	n := labNode(t, "1.18.3", 3000)
	j := NewJudge(n.set, n.times)
	ct := WalkCT(j, n.cts, CTQuery{})
	if len(ct.Errors) > 0 {
		t.Fatal(ct.Errors)
	}
	wantFlows := make([][4]int, j.Slots())
	wantOver := make([][4]int, j.Slots())
	v6 := 0
	var c ctmap.CT
	for _, m := range n.cts {
		m.WalkIterate(func(k, v []byte) error {
			c.Key, _ = ctmap.DecodeTuple(k)
			copy(c.Value[:], v)
			slot, exp := directJudge(n.set, n.times, &c)
			wantFlows[slot][c.State()]++
			if exp {
				wantOver[slot][c.State()]++
			}
			if slot == 0 && c.Key.Family() == 6 {
				v6++
			}
			return nil
		})
	}
	for slot := range wantFlows {
		s := ct.Slots[slot]
		if s.Flows != wantFlows[slot] || s.Over != wantOver[slot] || s.Total != s.Flows[0]+s.Flows[1]+s.Flows[2]+s.Flows[3] || s.Idle.Count() != s.Total {
			t.Errorf("slot %d: %+v, want flows %v over %v", slot, s, wantFlows[slot], wantOver[slot])
		}
	}
	if ct.IPv6Unmatched != v6 {
		t.Errorf("IPv6 unmatched %d, want %d", ct.IPv6Unmatched, v6)
	}

	full := WalkSNAT(j, n.nats, SNATQuery{})
	all := struct {
		Ports []PortUse
		Worst []PortUse
	}{full.Ports(), full.Worst}
	type dst struct {
		egress, dst netip.Addr
		port        uint16
		proto       uint8
	}
	wantUsed := map[dst]int{}
	wantSlots := map[dst]map[uint32]bool{}
	for _, m := range n.nats {
		m.WalkIterate(func(k, v []byte) error {
			key, _ := ctmap.DecodeTuple(k)
			if key.Flags&ctmap.TupleIn != 0 {
				return nil
			}
			e, _ := ctmap.DecodeNATEntry(v)
			d := dst{e.Addr(), key.DAddr, key.DPort, key.NextHdr}
			wantUsed[d]++
			c := ctmap.CT{Key: key.SwapAddrs()}
			slot, _ := directJudge(n.set, n.times, &c)
			if wantSlots[d] == nil {
				wantSlots[d] = map[uint32]bool{}
			}
			wantSlots[d][uint32(slot)] = true
			return nil
		})
	}
	if len(all.Ports) != len(wantUsed) {
		t.Fatalf("%d destinations, want %d", len(all.Ports), len(wantUsed))
	}
	for i, p := range all.Ports {
		d := dst{p.Egress, p.Dst, p.DstPort, p.Proto}
		if p.Used != wantUsed[d] || len(p.Slots) != len(wantSlots[d]) || !slices.IsSorted(p.Slots) {
			t.Errorf("%+v: want used %d slots %v", p, wantUsed[d], wantSlots[d])
		}
		for _, s := range p.Slots {
			if !wantSlots[d][s] {
				t.Errorf("%+v: slot %d holds no flow to it", p, s)
			}
		}
		if i > 0 && all.Ports[i-1].Used < p.Used {
			t.Errorf("ports out of order at %d", i)
		}
	}
	if all.Ports[0].Used < 10 {
		t.Errorf("the lab's hot destination has %d ports", all.Ports[0].Used)
	}
	for slot, w := range all.Worst {
		first := slices.IndexFunc(all.Ports, func(p PortUse) bool { return slices.Contains(p.Slots, uint32(slot)) })
		switch {
		case first < 0 && w.Used != 0:
			t.Errorf("slot %d has no destination but worst %+v", slot, w)
		case first >= 0 && (w.Used != all.Ports[first].Used || w.Dst != all.Ports[first].Dst || w.Egress != all.Ports[first].Egress || w.DstPort != all.Ports[first].DstPort):
			t.Errorf("slot %d: worst %+v, want %+v", slot, w, all.Ports[first])
		}
	}

	for _, top := range []int{1, 5, DefaultTopN, len(all.Ports) + 10} {
		got := WalkSNAT(j, n.nats, SNATQuery{Top: top})
		if want := all.Ports[:min(top, len(all.Ports))]; !reflect.DeepEqual(got.Ports(), want) || !reflect.DeepEqual(got.Worst, all.Worst) {
			t.Errorf("top %d:\n got %+v\nwant %+v", top, got.Ports(), want)
		}
	}
	pressure, fills, err := PortPressure(n.nats, 0)
	if err != nil || len(pressure) != min(DefaultTopN, len(all.Ports)) || len(fills) != len(n.nats) {
		t.Fatalf("PortPressure: %d ports, %v, %v", len(pressure), fills, err)
	}
	for i, p := range pressure {
		want := all.Ports[i]
		want.Slots = nil
		if !reflect.DeepEqual(p, want) {
			t.Errorf("pressure %d: %+v, want %+v", i, p, want)
		}
	}
}

// todayImpact is internal/cli's (*applyOptions).impact as it was before
// it used this package: the reference the dry run must keep.
func todayImpact(t *testing.T, n *node, families []int) ([][4]int, map[string]int) {
	m := sweep.NewMatcher(n.set)
	expired := make([][4]int, len(n.set)+1)
	ports := map[string]int{}
	natMaps := map[int]*ctmap.Map{}
	for _, nm := range n.nats {
		natMaps[nm.Spec.Family] = nm
	}
	var c ctmap.CT
	val := make([]byte, ctmap.NATEntrySize6)
	for _, ctm := range n.cts {
		if !slices.Contains(families, ctm.Spec.Family) {
			continue
		}
		natMap := natMaps[ctm.Spec.Family]
		err := ctm.Walk(func(k, v []byte) error {
			c.Key, _ = ctmap.DecodeTuple(k)
			copy(c.Value[:], v)
			slot, exp := m.Judge(&c, n.times)
			if !exp {
				return nil
			}
			expired[slot][c.State()]++
			if natMap != nil {
				eg, _ := ctmap.NATKeysForCT(c.Key)
				buf := val[:natMap.Spec.ValueSize]
				if natMap.Lookup(eg.Bytes(), buf) == nil {
					e, _ := ctmap.DecodeNATEntry(buf)
					ports[e.Addr().String()]++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return expired, ports
}
