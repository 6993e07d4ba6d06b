package ctmap

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Sizes of struct ipv4_nat_entry and ipv6_nat_entry.
const (
	NATEntrySize4 = 40
	NATEntrySize6 = 56
)

// NATEntry is a SNAT map value. It keeps the raw bytes (40 for IPv4, 56
// for IPv6): created @0, needs_ct @8, two pads, then the translated address
// and port (to_saddr/to_sport for egress entries, to_daddr/to_dport for
// reverse entries).
type NATEntry struct {
	raw [NATEntrySize6]byte
	n   uint8
}

// DecodeNATEntry copies a 40- or 56-byte value.
func DecodeNATEntry(b []byte) (NATEntry, error) {
	var e NATEntry
	if len(b) != NATEntrySize4 && len(b) != NATEntrySize6 {
		return e, fmt.Errorf("nat entry: %d bytes, want %d or %d", len(b), NATEntrySize4, NATEntrySize6)
	}
	e.n = uint8(copy(e.raw[:], b))
	return e, nil
}

// NewNATEntry builds a value for a translation to addr:port.
func NewNATEntry(created uint64, needsCT bool, addr netip.Addr, port uint16) NATEntry {
	var e NATEntry
	e.n = NATEntrySize4
	if addr.Is6() {
		e.n = NATEntrySize6
	}
	binary.LittleEndian.PutUint64(e.raw[0:], created)
	if needsCT {
		e.raw[8] = 1
	}
	a := addr.AsSlice()
	copy(e.raw[32:], a)
	binary.BigEndian.PutUint16(e.raw[32+len(a):], port)
	return e
}

// Bytes returns the raw value.
func (e *NATEntry) Bytes() []byte { return e.raw[:e.n] }

// Created is bpf_mono_now() at creation, in CT clock units.
func (e *NATEntry) Created() uint64 { return binary.LittleEndian.Uint64(e.raw[0:]) }

// NeedsCT reports whether a CT entry must back this NAT entry.
func (e *NATEntry) NeedsCT() bool { return e.raw[8]&1 != 0 }

// Addr is the translated address (to_saddr or to_daddr).
func (e *NATEntry) Addr() netip.Addr {
	if e.n == NATEntrySize6 {
		return netip.AddrFrom16([16]byte(e.raw[32:48]))
	}
	return netip.AddrFrom4([4]byte(e.raw[32:36]))
}

// Port is the translated port (to_sport or to_dport).
func (e *NATEntry) Port() uint16 {
	if e.n == NATEntrySize6 {
		return binary.BigEndian.Uint16(e.raw[48:])
	}
	return binary.BigEndian.Uint16(e.raw[36:])
}

// NAT is one element of a SNAT map.
type NAT struct {
	Key   Tuple
	Value NATEntry
}

// Egress reports whether this is an egress ("SRC xlate") entry.
func (n *NAT) Egress() bool { return n.Key.Flags&TupleIn == 0 }

// NATKeysForCT returns the SNAT entries Cilium's GC deletes with an
// outbound CT entry (cilium-datapath.md §6.2, §7.2): the egress key is the
// CT key with its addresses swapped; the reverse key is built from the
// egress entry's value. ok is false for entries that are not outbound.
func NATKeysForCT(ct Tuple) (egress Tuple, ok bool) {
	if ct.Flags != TupleOut {
		return Tuple{}, false
	}
	return ct.SwapAddrs(), true
}

// ReverseKey returns the reverse (DST xlate) key of an egress SNAT entry:
// {daddr = to_saddr, saddr = egress daddr, dport = to_sport, sport =
// egress dport, flags IN}.
func ReverseKey(egress Tuple, v *NATEntry) Tuple {
	return Tuple{
		DAddr: v.Addr(), SAddr: egress.DAddr,
		DPort: v.Port(), SPort: egress.DPort,
		NextHdr: egress.NextHdr, Flags: TupleIn,
	}
}
