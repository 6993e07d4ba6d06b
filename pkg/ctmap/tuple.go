package ctmap

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Tuple flags (TUPLE_F_*), the last byte of a CT or NAT key.
const (
	TupleOut     uint8 = 0
	TupleIn      uint8 = 1
	TupleRelated uint8 = 2
	TupleService uint8 = 4
)

// IP protocol numbers egwct names.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132
)

// ProtoName returns the protocol's name, or its number.
func ProtoName(p uint8) string {
	switch p {
	case ProtoICMP:
		return "ICMP"
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoICMPv6:
		return "ICMPv6"
	case ProtoSCTP:
		return "SCTP"
	}
	return fmt.Sprintf("proto-%d", p)
}

// Key sizes of struct ipv4_ct_tuple and ipv6_ct_tuple (packed).
const (
	TupleSize4 = 14
	TupleSize6 = 38
)

// Tuple is a CT or NAT map key (struct ipv4_ct_tuple / ipv6_ct_tuple), with
// fields named as in Cilium's C struct. Addresses and ports are stored in
// network order; the fields hold host values.
//
// In a CT key the names are misleading (cilium-datapath.md §2.1): for a
// connection from pod P:p to W:w, DAddr holds P, SAddr holds W, DPort holds
// w and SPort holds p. Use CT.Flow for the connection's orientation. A NAT
// key is in packet order: DAddr W, SAddr P, DPort w, SPort p.
type Tuple struct {
	DAddr, SAddr netip.Addr
	DPort, SPort uint16
	NextHdr      uint8
	Flags        uint8
}

// DecodeTuple decodes a 14-byte (IPv4) or 38-byte (IPv6) key.
func DecodeTuple(b []byte) (Tuple, error) {
	var t Tuple
	var n int
	switch len(b) {
	case TupleSize4:
		t.DAddr = netip.AddrFrom4([4]byte(b[0:4]))
		t.SAddr = netip.AddrFrom4([4]byte(b[4:8]))
		n = 8
	case TupleSize6:
		t.DAddr = netip.AddrFrom16([16]byte(b[0:16]))
		t.SAddr = netip.AddrFrom16([16]byte(b[16:32]))
		n = 32
	default:
		return Tuple{}, fmt.Errorf("CT tuple: %d bytes, want %d or %d", len(b), TupleSize4, TupleSize6)
	}
	t.DPort = binary.BigEndian.Uint16(b[n:])
	t.SPort = binary.BigEndian.Uint16(b[n+2:])
	t.NextHdr = b[n+4]
	t.Flags = b[n+5]
	return t, nil
}

// Family is 4 or 6.
func (t Tuple) Family() int {
	if t.DAddr.Is4() {
		return 4
	}
	return 6
}

// Size is the encoded size of the tuple.
func (t Tuple) Size() int {
	if t.Family() == 4 {
		return TupleSize4
	}
	return TupleSize6
}

// AppendTo appends the tuple's bytes to b. Both addresses must be of the
// same family.
func (t Tuple) AppendTo(b []byte) []byte {
	if t.Family() == 4 {
		d, s := t.DAddr.As4(), t.SAddr.As4()
		b = append(append(b, d[:]...), s[:]...)
	} else {
		d, s := t.DAddr.As16(), t.SAddr.As16()
		b = append(append(b, d[:]...), s[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, t.DPort)
	b = binary.BigEndian.AppendUint16(b, t.SPort)
	return append(b, t.NextHdr, t.Flags)
}

// Bytes encodes the tuple.
func (t Tuple) Bytes() []byte { return t.AppendTo(make([]byte, 0, TupleSize6)) }

// SwapAddrs returns the tuple with DAddr and SAddr exchanged: the NAT
// egress key of an outbound CT entry, and back (cilium-datapath.md §6.2).
func (t Tuple) SwapAddrs() Tuple {
	t.DAddr, t.SAddr = t.SAddr, t.DAddr
	return t
}

// SwapPorts returns the tuple with DPort and SPort exchanged.
func (t Tuple) SwapPorts() Tuple {
	t.DPort, t.SPort = t.SPort, t.DPort
	return t
}

// FlagsString names the tuple flags as Cilium's printer does: OUT, IN,
// with RELATED and SERVICE added.
func (t Tuple) FlagsString() string {
	s := "OUT"
	if t.Flags&TupleIn != 0 {
		s = "IN"
	}
	if t.Flags&TupleRelated != 0 {
		s += "|RELATED"
	}
	if t.Flags&TupleService != 0 {
		s += "|SERVICE"
	}
	return s
}
