package lab

import (
	"fmt"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
)

// batches collects elements per map and writes them with one system call
// per few thousand elements.
type batches struct {
	// The maps of each family, [0] IPv4 and [1] IPv6; nil if missing.
	ct, ctAny, nat [2]*ctmap.Map
	pending        map[*ctmap.Map]*pending
}

type pending struct {
	keys, vals [][]byte
}

func newBatches(p *profiles.Profile, maps map[string]*ctmap.Map) *batches {
	get := func(role profiles.MapRole) (ms [2]*ctmap.Map) {
		for i, family := range []int{4, 6} {
			if s, ok := p.Map(role, family); ok {
				ms[i] = maps[s.Name]
			}
		}
		return ms
	}
	return &batches{ct: get(profiles.RoleCTTCP), ctAny: get(profiles.RoleCTAny), nat: get(profiles.RoleSNAT),
		pending: map[*ctmap.Map]*pending{}}
}

// familyIndex is the index of a key's family in the map pairs of batches.
func familyIndex(t ctmap.Tuple) int {
	if t.Family() == 4 {
		return 0
	}
	return 1
}

// ctMap returns the CT map a key belongs in: by family, TCP or any other
// protocol.
func (b *batches) ctMap(t ctmap.Tuple) (*ctmap.Map, error) {
	m := b.ct[familyIndex(t)]
	if t.NextHdr != ctmap.ProtoTCP {
		m = b.ctAny[familyIndex(t)]
	}
	if m == nil {
		return nil, fmt.Errorf("the lab has no IPv%d CT maps", t.Family())
	}
	return m, nil
}

func (b *batches) put(m *ctmap.Map, k, v []byte) error {
	p := b.pending[m]
	if p == nil {
		p = &pending{}
		b.pending[m] = p
	}
	p.keys, p.vals = append(p.keys, k), append(p.vals, v)
	if len(p.keys) >= 8192 {
		return b.flushMap(m, p)
	}
	return nil
}

func (b *batches) flush() error {
	for m, p := range b.pending {
		if err := b.flushMap(m, p); err != nil {
			return err
		}
	}
	return nil
}

func (b *batches) flushMap(m *ctmap.Map, p *pending) error {
	if len(p.keys) == 0 {
		return nil
	}
	ks := make([]byte, 0, len(p.keys)*int(m.Spec.KeySize))
	vs := make([]byte, 0, len(p.vals)*int(m.Spec.ValueSize))
	for i := range p.keys {
		ks, vs = append(ks, p.keys[i]...), append(vs, p.vals[i]...)
	}
	if err := putAll(m, ks, vs, len(p.keys)); err != nil {
		return fmt.Errorf("%s: %w", m.Spec.Name, err)
	}
	p.keys, p.vals = p.keys[:0], p.vals[:0]
	return nil
}

// addFlow writes a flow's CT entry (and RELATED companion) and its two
// SNAT entries, as the datapath would have created them, in the maps of
// the flow's family.
func (b *batches) addFlow(g *gen, f flow) error {
	m, err := b.ctMap(f.ct.Key)
	if err != nil {
		return err
	}
	if err := b.put(m, f.ct.Key.Bytes(), append([]byte(nil), f.ct.Value[:]...)); err != nil {
		return err
	}
	if f.related {
		rel := f.ct.Key
		rel.NextHdr, rel.DPort, rel.SPort, rel.Flags = ctmap.ProtoICMP, 0, 0, ctmap.TupleOut|ctmap.TupleRelated
		if rel.Family() == 6 {
			rel.NextHdr = ctmap.ProtoICMPv6
		}
		var e ctmap.CTEntry
		g.setEntry(&e, profiles.StateNonTCP, 0, 0, 0, f.identity, min(f.idle, g.units[profiles.StateNonTCP]))
		anyMap, err := b.ctMap(rel)
		if err != nil {
			return err
		}
		if err := b.put(anyMap, rel.Bytes(), append([]byte(nil), e[:]...)); err != nil {
			return err
		}
	}
	nat := b.nat[familyIndex(f.ct.Key)]
	if nat == nil || f.snatPort == 0 {
		return nil
	}
	egressKey, _ := ctmap.NATKeysForCT(f.ct.Key)
	created := uint64(g.now - f.idle - uint32(g.rng.IntN(60)))
	ev := ctmap.NewNATEntry(created, !f.related, f.egress, f.snatPort)
	rk := ctmap.ReverseKey(egressKey, &ev)
	rv := ctmap.NewNATEntry(created, !f.related, f.ct.Key.DAddr, f.ct.Key.SPort)
	if err := b.put(nat, rk.Bytes(), append([]byte(nil), rv.Bytes()...)); err != nil {
		return err
	}
	return b.put(nat, egressKey.Bytes(), append([]byte(nil), ev.Bytes()...))
}

// writeEgress writes the policy map entries: for every selected pod and
// destination CIDR one entry, excluded CIDRs with gateway 0.0.0.1; on main
// both the v4 and v4_v2 maps, as the agent does; on a dual-stack lab the
// pods' IPv6 addresses and the IPv6 CIDRs in the v6 map (whose gateway IP
// is the node's IPv4 address, cilium-datapath.md §8.1).
func writeEgress(p *profiles.Profile, w *world, maps map[string]*ctmap.Map) (int, error) {
	n := 0
	for _, s := range p.Maps {
		if s.Role != profiles.RoleEgressPolicy || (s.Family != 4 && s.Family != 6) {
			continue
		}
		m := maps[s.Name]
		for _, pol := range w.policies {
			pods, dests, excluded, egressIP := pol.Pods, pol.Dests, pol.Excluded, pol.EgressIP
			if s.Family == 6 {
				pods, dests, excluded, egressIP = pol.Pods6, pol.Dests6, pol.Excluded6, pol.EgressIP6
			}
			for _, pod := range pods {
				put := func(e ctmap.EgressPolicy) error {
					k, v, err := ctmap.EncodeEgressPolicy(e, int(s.ValueSize))
					if err != nil {
						return err
					}
					n++
					return m.Put(k, v)
				}
				for _, d := range dests {
					if err := put(ctmap.EgressPolicy{Source: pod, Dest: d, EgressIP: egressIP, GatewayIP: NodeIP, IfIndex: 2}); err != nil {
						return n, fmt.Errorf("%s: %w", s.Name, err)
					}
				}
				for _, d := range excluded {
					if err := put(ctmap.EgressPolicy{Source: pod, Dest: d, GatewayIP: ctmap.GatewayExcluded}); err != nil {
						return n, fmt.Errorf("%s: %w", s.Name, err)
					}
				}
			}
		}
	}
	return n, nil
}
