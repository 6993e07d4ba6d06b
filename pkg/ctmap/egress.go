package ctmap

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Special gateway IPs of egress policy entries (cilium-datapath.md §8.1).
var (
	// GatewayNone: no gateway node matched; the source node drops.
	GatewayNone = netip.AddrFrom4([4]byte{0, 0, 0, 0})
	// GatewayExcluded: the entry is an excludedCIDR.
	GatewayExcluded = netip.AddrFrom4([4]byte{0, 0, 0, 1})
)

// EgressPolicy is one element of an egress-gateway policy map: a pod
// (source address) and a destination CIDR, with the gateway and egress IP.
type EgressPolicy struct {
	Source    netip.Addr
	Dest      netip.Prefix
	EgressIP  netip.Addr
	GatewayIP netip.Addr
	// IfIndex is egress_ifindex (v4_v2 and v6 values only).
	IfIndex uint32
}

// Excluded reports whether the entry is an excludedCIDR.
func (p EgressPolicy) Excluded() bool { return p.GatewayIP == GatewayExcluded }

// DecodeEgressPolicy decodes a key (12 or 36 bytes) and value (8, 28 or 40
// bytes) of cilium_egress_gw_policy_v4, _v4_v2 or _v6.
func DecodeEgressPolicy(k, v []byte) (EgressPolicy, error) {
	var p EgressPolicy
	var alen int
	switch len(k) {
	case 12:
		alen = 4
		p.Source = netip.AddrFrom4([4]byte(k[4:8]))
		p.Dest = netip.PrefixFrom(netip.AddrFrom4([4]byte(k[8:12])), 0)
	case 36:
		alen = 16
		p.Source = netip.AddrFrom16([16]byte(k[4:20]))
		p.Dest = netip.PrefixFrom(netip.AddrFrom16([16]byte(k[20:36])), 0)
	default:
		return p, fmt.Errorf("egress policy key: %d bytes, want 12 or 36", len(k))
	}
	plen := int(binary.LittleEndian.Uint32(k[0:4])) - alen*8
	if plen < 0 || plen > alen*8 {
		return p, fmt.Errorf("egress policy key: prefix length %d out of range", plen+alen*8)
	}
	p.Dest = netip.PrefixFrom(p.Dest.Addr(), plen)
	switch {
	case len(k) == 12 && (len(v) == 8 || len(v) == 28):
		p.EgressIP = netip.AddrFrom4([4]byte(v[0:4]))
		p.GatewayIP = netip.AddrFrom4([4]byte(v[4:8]))
		if len(v) == 28 {
			p.IfIndex = binary.LittleEndian.Uint32(v[20:24])
		}
	case len(k) == 36 && len(v) == 40:
		p.EgressIP = netip.AddrFrom16([16]byte(v[0:16]))
		p.GatewayIP = netip.AddrFrom4([4]byte(v[16:20]))
		p.IfIndex = binary.LittleEndian.Uint32(v[32:36])
	default:
		return p, fmt.Errorf("egress policy value: %d bytes for a %d-byte key", len(v), len(k))
	}
	return p, nil
}

// EncodeEgressPolicy encodes the key and a value of valueSize bytes (8 or
// 28 for IPv4, 40 for IPv6).
func EncodeEgressPolicy(p EgressPolicy, valueSize int) (k, v []byte, err error) {
	if p.Source.Is4() != p.Dest.Addr().Is4() {
		return nil, nil, fmt.Errorf("egress policy: source %s and destination %s differ in family", p.Source, p.Dest)
	}
	src, dst := p.Source.AsSlice(), p.Dest.Masked().Addr().AsSlice()
	k = binary.LittleEndian.AppendUint32(nil, uint32(len(src)*8+p.Dest.Bits()))
	k = append(append(k, src...), dst...)
	v = make([]byte, valueSize)
	switch {
	case p.Source.Is4() && (valueSize == 8 || valueSize == 28):
		copy(v[0:4], p.EgressIP.AsSlice())
		copy(v[4:8], p.GatewayIP.AsSlice())
		if valueSize == 28 {
			binary.LittleEndian.PutUint32(v[20:], p.IfIndex)
		}
	case p.Source.Is6() && valueSize == 40:
		copy(v[0:16], p.EgressIP.AsSlice())
		copy(v[16:20], p.GatewayIP.AsSlice())
		binary.LittleEndian.PutUint32(v[32:], p.IfIndex)
	default:
		return nil, nil, fmt.Errorf("egress policy: no %d-byte value for IPv%d", valueSize, map[bool]int{true: 4, false: 6}[p.Source.Is4()])
	}
	return k, v, nil
}
