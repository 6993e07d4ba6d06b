package ctmap

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/egwct/egwct/pkg/profiles"
)

// The encoders of this package hard-code offsets; every profile's layouts
// (which hack/verify-profiles checks against Cilium's own Go types) must
// put each field where the encoders do. A marker value is written through
// the encoder and looked for at the profile's offset of the field.
func TestEncodersFollowProfileLayouts(t *testing.T) {
	field := func(t *testing.T, l profiles.Layout, name string) profiles.Field {
		t.Helper()
		for _, f := range l.Fields {
			if f.Name == name {
				return f
			}
		}
		t.Fatalf("layout %s has no field %s", l.Name, name)
		return profiles.Field{}
	}
	at := func(t *testing.T, b []byte, l profiles.Layout, name string, want []byte) {
		t.Helper()
		f := field(t, l, name)
		if len(b) != l.Size {
			t.Fatalf("%s: encoded %d bytes, layout says %d", l.Name, len(b), l.Size)
		}
		if f.Size != len(want) || !bytes.Equal(b[f.Offset:f.Offset+f.Size], want) {
			t.Errorf("%s.%s (offset %d, %d bytes) = %x, want %x", l.Name, name, f.Offset, f.Size, b[f.Offset:f.Offset+f.Size], want)
		}
	}
	be16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	for _, p := range profiles.All() {
		t.Run(p.Name, func(t *testing.T) {
			for _, fam := range []struct {
				tuple, nat, key, value string
				d, s, e                netip.Addr
				valueSize              int
			}{
				{"ipv4_ct_tuple", "ipv4_nat_entry", "egress_gw_policy_key", "egress_gw_policy_entry",
					netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("192.0.2.1"), 8},
				{"ipv6_ct_tuple", "ipv6_nat_entry", "egress_gw_policy_key6", "egress_gw_policy_entry6",
					netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), netip.MustParseAddr("2001:db8::1"), 40},
			} {
				if l, ok := p.Layout(fam.tuple); ok {
					b := Tuple{DAddr: fam.d, SAddr: fam.s, DPort: 443, SPort: 40000, NextHdr: ProtoTCP, Flags: TupleIn}.Bytes()
					at(t, b, l, "daddr", fam.d.AsSlice())
					at(t, b, l, "saddr", fam.s.AsSlice())
					at(t, b, l, "dport", be16(443))
					at(t, b, l, "sport", be16(40000))
					at(t, b, l, "nexthdr", []byte{ProtoTCP})
					at(t, b, l, "flags", []byte{TupleIn})
				} else {
					t.Errorf("no layout %s", fam.tuple)
				}
				if l, ok := p.Layout(fam.nat); ok {
					e := NewNATEntry(0x0102030405060708, true, fam.e, 50001)
					b := e.Bytes()
					at(t, b, l, "created", binary.LittleEndian.AppendUint64(nil, 0x0102030405060708))
					at(t, b, l, "needs_ct", []byte{1, 0, 0, 0, 0, 0, 0, 0})
					at(t, b, l, "to_saddr", fam.e.AsSlice())
					at(t, b, l, "to_sport", be16(50001))
				} else {
					t.Errorf("no layout %s", fam.nat)
				}
				lk, okk := p.Layout(fam.key)
				lv, okv := p.Layout(fam.value)
				if !okk || !okv {
					continue // no IPv6 egress policies before 1.18
				}
				pol := EgressPolicy{Source: fam.d, Dest: netip.PrefixFrom(fam.s, fam.s.BitLen()-8), EgressIP: fam.e, GatewayIP: netip.MustParseAddr("10.9.9.9"), IfIndex: 7}
				k, v, err := EncodeEgressPolicy(pol, fam.valueSize)
				if err != nil {
					t.Fatal(err)
				}
				at(t, k, lk, "lpm_key", binary.LittleEndian.AppendUint32(nil, uint32(2*fam.d.BitLen()-8)))
				at(t, k, lk, "saddr", fam.d.AsSlice())
				at(t, k, lk, "daddr", pol.Dest.Masked().Addr().AsSlice())
				at(t, v, lv, "egress_ip", fam.e.AsSlice())
				at(t, v, lv, "gateway_ip", []byte{10, 9, 9, 9})
				if fam.valueSize == 40 {
					at(t, v, lv, "egress_ifindex", binary.LittleEndian.AppendUint32(nil, 7))
				}
			}
			if l, ok := p.Layout("egress_gw_policy_entry_v2"); ok {
				pol := EgressPolicy{Source: netip.MustParseAddr("10.0.0.1"), Dest: netip.MustParsePrefix("10.1.0.0/16"),
					EgressIP: netip.MustParseAddr("192.0.2.1"), GatewayIP: netip.MustParseAddr("10.9.9.9"), IfIndex: 7}
				_, v, err := EncodeEgressPolicy(pol, l.Size)
				if err != nil {
					t.Fatal(err)
				}
				at(t, v, l, "egress_ip", []byte{192, 0, 2, 1})
				at(t, v, l, "gateway_ip", []byte{10, 9, 9, 9})
				at(t, v, l, "egress_ifindex", binary.LittleEndian.AppendUint32(nil, 7))
			}
		})
	}
}
