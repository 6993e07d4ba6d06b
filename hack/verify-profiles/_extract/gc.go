package main

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/cilium/cilium/pkg/maps/ctmap"
	"github.com/cilium/cilium/pkg/maps/nat"
	"github.com/cilium/cilium/pkg/tuple"
	"github.com/cilium/cilium/pkg/types"
	"github.com/cilium/cilium/pkg/u8proto"

	"github.com/egwct/egwct/hack/verify-profiles/facts"
)

// The GC fixture: egress-gateway flows of pod P through egress IP E to W,
// written with Cilium's own key and value types in CT order (CT keys) and
// packet order (SNAT keys), as the datapath writes them.
type flow struct {
	proto   u8proto.U8proto
	sport   uint16 // the pod's port
	dport   uint16 // the destination's port
	natPort uint16 // the port allocated on E; 0: no SNAT entries
	expired bool
	flags   uint8 // CT tuple flags
}

var fixture = []flow{
	{proto: u8proto.TCP, sport: 40001, dport: 443, natPort: 50001, expired: true},
	{proto: u8proto.TCP, sport: 40002, dport: 443, natPort: 50002},
	{proto: u8proto.UDP, sport: 40003, dport: 53, natPort: 50003, expired: true},
	{proto: u8proto.UDP, sport: 40004, dport: 53, natPort: 50004},
	{proto: u8proto.TCP, sport: 40005, dport: 8080, expired: true},
	{proto: u8proto.TCP, sport: 40006, dport: 443, natPort: 50006, expired: true, flags: tuple.TUPLE_F_IN},
}

type addrs struct{ pod, world, egress netip.Addr }

var familyAddrs = map[int]addrs{
	4: {netip.MustParseAddr("10.0.1.5"), netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("192.0.2.1")},
	6: {netip.MustParseAddr("fd00:10::5"), netip.MustParseAddr("2001:db8:cafe::10"), netip.MustParseAddr("2001:db8:e::1")},
}

// bpffsRoot is where createMaps pinned the maps.
var bpffsRoot string

func pinName(family int, tcp bool) string {
	switch {
	case family == 4 && tcp:
		return ctmap.MapNameTCP4Global
	case family == 4:
		return ctmap.MapNameAny4Global
	case tcp:
		return ctmap.MapNameTCP6Global
	}
	return ctmap.MapNameAny6Global
}

func natName(family int) string {
	if family == 4 {
		return nat.MapNameSnat4Global
	}
	return nat.MapNameSnat6Global
}

// tupleBytes is the wire form of a tuple key in Cilium's Go type: ports to
// network order with the type's own ToNetwork.
func ctKey(family int, daddr, saddr netip.Addr, dport, sport uint16, proto u8proto.U8proto, flags uint8) ctmap.CtKey {
	if family == 4 {
		k := ctmap.CtKey4Global{}
		k.DestAddr = types.IPv4(daddr.As4())
		k.SourceAddr = types.IPv4(saddr.As4())
		k.DestPort, k.SourcePort, k.NextHeader, k.Flags = dport, sport, proto, flags
		return k.ToNetwork()
	}
	k := ctmap.CtKey6Global{}
	k.DestAddr = types.IPv6(daddr.As16())
	k.SourceAddr = types.IPv6(saddr.As16())
	k.DestPort, k.SourcePort, k.NextHeader, k.Flags = dport, sport, proto, flags
	return k.ToNetwork()
}

func gcCase(family int) (facts.GCCase, error) {
	c := facts.GCCase{Family: family}
	now, err := ctNow()
	if err != nil {
		return c, err
	}
	c.Now = now
	a := familyAddrs[family]
	ct := map[bool]string{true: pinName(family, true), false: pinName(family, false)}
	for _, f := range fixture {
		// CT order: daddr = pod, saddr = world, dport = world's port, sport = pod's port.
		key := ctKey(family, a.pod, a.world, f.dport, f.sport, f.proto, f.flags)
		entry := ctmap.CtEntry{Lifetime: now + 1_000_000}
		if f.expired {
			entry.Lifetime = now - 1000
		}
		if f.proto == u8proto.TCP {
			entry.Flags = ctmap.SeenNonSyn
		}
		if err := update(ct[f.proto == u8proto.TCP], key, &entry); err != nil {
			return c, err
		}
		if f.natPort == 0 {
			continue
		}
		// Packet order: the egress key {W, P, w, p, OUT} -> E:p', and its
		// reverse {E, W, p', w, IN} -> P:p.
		egress := ctKey(family, a.world, a.pod, f.dport, f.sport, f.proto, tuple.TUPLE_F_OUT)
		reverse := ctKey(family, a.egress, a.world, f.natPort, f.dport, f.proto, tuple.TUPLE_F_IN)
		if err := updateNAT(family, egress, a.egress, f.natPort, uint64(now)); err != nil {
			return c, err
		}
		if err := updateNAT(family, reverse, a.pod, f.sport, uint64(now)); err != nil {
			return c, err
		}
	}
	if c.CT, err = dump(ct[true], ct[false]); err != nil {
		return c, err
	}
	if c.NAT, err = dump(natName(family)); err != nil {
		return c, err
	}
	deleted, purged, err := runGC(family, func() error {
		after, err := dump(natName(family))
		c.NATAfter = keys(after)
		return err
	})
	if err != nil {
		return c, err
	}
	c.Deleted, c.OrphansPurged = deleted, purged
	ctAfter, err := dump(ct[true], ct[false])
	if err != nil {
		return c, err
	}
	c.CTAfter = keys(ctAfter)
	natAfter, err := dump(natName(family))
	c.NATAfterPurge = keys(natAfter)
	return c, err
}

func keys(es []facts.Elem) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Key)
	}
	sort.Strings(out)
	return out
}

// update writes one element through the pinned map, with the bytes of
// Cilium's Go types (their binary form is what Cilium's bpf.Map writes).
func update(name string, k, v any) error {
	m, err := ebpf.LoadPinnedMap(filepath.Join(bpffsRoot, "tc", "globals", name), nil)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Update(k, v, ebpf.UpdateNoExist); err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	return nil
}

func updateNAT(family int, key ctmap.CtKey, to netip.Addr, port uint16, created uint64) error {
	p := port>>8 | port<<8 // network order
	if family == 4 {
		v := nat.NatEntry4{Created: created, NeedsCT: 1, Addr: types.IPv4(to.As4()), Port: p}
		return update(natName(4), key, &v)
	}
	v := nat.NatEntry6{Created: created, NeedsCT: 1, Addr: types.IPv6(to.As16()), Port: p}
	return update(natName(6), key, &v)
}

// dump reads every element of the named maps as hex.
func dump(names ...string) ([]facts.Elem, error) {
	var out []facts.Elem
	for _, name := range names {
		m, err := ebpf.LoadPinnedMap(filepath.Join(bpffsRoot, "tc", "globals", name), nil)
		if err != nil {
			return nil, err
		}
		var k, v []byte
		it := m.Iterate()
		for it.Next(&k, &v) {
			out = append(out, facts.Elem{Map: name, Key: hex.EncodeToString(k), Value: hex.EncodeToString(v)})
		}
		err = it.Err()
		m.Close()
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Map+out[i].Key < out[j].Map+out[j].Key })
	return out, nil
}
