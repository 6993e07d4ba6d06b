package ctmap

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	pod  = netip.MustParseAddr("10.0.1.5")
	web  = netip.MustParseAddr("93.184.216.34")
	egIP = netip.MustParseAddr("192.168.1.100")
)

// The worked examples of cilium-datapath.md §2.1 and §6.2: pod
// 10.0.1.5:43210 → 93.184.216.34:443 over TCP, SNATed to 192.168.1.100:43210.
func TestFactSheetVectors(t *testing.T) {
	ctKey := unhex(t, "0a000105 5db8d822 01bb a8ca 06 00")
	natEgress := unhex(t, "5db8d822 0a000105 01bb a8ca 06 00")
	natReverse := unhex(t, "c0a80164 5db8d822 a8ca 01bb 06 01")

	k, err := DecodeTuple(ctKey)
	if err != nil {
		t.Fatal(err)
	}
	c := CT{Key: k}
	src, dst := c.Flow()
	if src.String() != "10.0.1.5:43210" || dst.String() != "93.184.216.34:443" || k.NextHdr != ProtoTCP || k.FlagsString() != "OUT" {
		t.Fatalf("flow = %s → %s %s %s", src, dst, ProtoName(k.NextHdr), k.FlagsString())
	}
	if !bytes.Equal(k.Bytes(), ctKey) {
		t.Errorf("round trip = %x", k.Bytes())
	}
	eg, ok := NATKeysForCT(k)
	if !ok || !bytes.Equal(eg.Bytes(), natEgress) {
		t.Fatalf("NAT egress key = %x, want %x", eg.Bytes(), natEgress)
	}
	v := NewNATEntry(100, true, egIP, 43210)
	if rev := ReverseKey(eg, &v); !bytes.Equal(rev.Bytes(), natReverse) {
		t.Fatalf("NAT reverse key = %x, want %x", rev.Bytes(), natReverse)
	}
	if _, ok := NATKeysForCT(Tuple{DAddr: pod, SAddr: web, Flags: TupleIn}); ok {
		t.Error("an IN entry has no NAT keys to delete")
	}
}

func TestTuple6RoundTrip(t *testing.T) {
	b := unhex(t, "fd000000000000000000000000000005 20010db8000000000000000000000022 01bb a8ca 11 02")
	k, err := DecodeTuple(b)
	if err != nil {
		t.Fatal(err)
	}
	if k.Family() != 6 || k.DAddr.String() != "fd00::5" || k.SPort != 43210 || k.NextHdr != ProtoUDP || k.FlagsString() != "OUT|RELATED" {
		t.Fatalf("tuple = %+v", k)
	}
	if !bytes.Equal(k.Bytes(), b) {
		t.Errorf("round trip = %x", k.Bytes())
	}
	if _, err := DecodeTuple(b[:20]); err == nil {
		t.Error("a 20-byte key must be refused")
	}
}

func TestNATEntry(t *testing.T) {
	raw := unhex(t, "0a00000000000000 0100000000000000 0000000000000000 0000000000000000 c0a80164 a8ca 0000")
	e, err := DecodeNATEntry(raw)
	if err != nil {
		t.Fatal(err)
	}
	if e.Created() != 10 || !e.NeedsCT() || e.Addr() != egIP || e.Port() != 43210 || !bytes.Equal(e.Bytes(), raw) {
		t.Fatalf("entry = %d %v %s %d", e.Created(), e.NeedsCT(), e.Addr(), e.Port())
	}
	n := NewNATEntry(10, true, egIP, 43210)
	if !bytes.Equal(n.Bytes(), raw) {
		t.Errorf("NewNATEntry = %x", n.Bytes())
	}
	six := NewNATEntry(1, false, netip.MustParseAddr("fd00::1"), 80)
	if len(six.Bytes()) != NATEntrySize6 || six.Port() != 80 || six.Addr().String() != "fd00::1" {
		t.Errorf("v6 entry = %x", six.Bytes())
	}
}

// TestCTEntryLayouts decodes a value whose every byte is distinct with each
// profile's layout: each field reads exactly its bytes, and setters change
// exactly theirs.
func TestCTEntryLayouts(t *testing.T) {
	var raw [CTEntrySize]byte
	for i := range raw {
		raw[i] = byte(i + 1)
	}
	for _, p := range profiles.All() {
		t.Run(p.Name, func(t *testing.T) {
			e, err := DecodeCTEntry(raw[:])
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range p.CTEntry.Fields {
				var want uint64
				for i := f.Size - 1; i >= 0; i-- {
					want = want<<8 | uint64(raw[f.Offset+i])
				}
				if got := e.Field(f); got != want {
					t.Errorf("%s = %#x, want %#x", f.Name, got, want)
				}
			}
			lt, _ := p.CTEntry.Field("lifetime")
			if e.Lifetime() != uint32(e.Field(lt)) {
				t.Error("Lifetime disagrees with the layout")
			}
			fl, _ := p.CTEntry.Field("flags")
			if e.Flags() != uint16(e.Field(fl)) {
				t.Error("Flags disagrees with the layout")
			}
			for name, mask := range map[string]uint16{"rx_closing": FlagRxClosing, "tx_closing": FlagTxClosing, "seen_non_syn": FlagSeenNonSyn} {
				if m, _ := p.CTEntry.Bit(name); m != mask {
					t.Errorf("bit %s = %#x, package uses %#x", name, m, mask)
				}
			}
			before := e
			e.SetLifetime(0xdeadbeef)
			for i := range e {
				if (i < 32 || i >= 36) && e[i] != before[i] {
					t.Fatalf("SetLifetime changed byte %d", i)
				}
			}
			if e.Lifetime() != 0xdeadbeef {
				t.Error("SetLifetime lost")
			}
		})
	}
}

func TestState(t *testing.T) {
	tests := []struct {
		proto uint8
		flags uint16
		want  profiles.State
	}{
		{ProtoTCP, 0, profiles.StateSyn},
		{ProtoTCP, FlagSeenNonSyn, profiles.StateEstablished},
		{ProtoTCP, FlagSeenNonSyn | FlagTxClosing, profiles.StateEstablished},
		{ProtoTCP, FlagSeenNonSyn | FlagTxClosing | FlagRxClosing, profiles.StateClosing},
		{ProtoTCP, FlagTxClosing | FlagRxClosing, profiles.StateClosing},
		{ProtoUDP, FlagSeenNonSyn, profiles.StateNonTCP},
		{ProtoICMP, 0, profiles.StateNonTCP},
	}
	for _, tt := range tests {
		c := CT{Key: Tuple{NextHdr: tt.proto}}
		c.Value.SetFlags(tt.flags)
		if got := c.State(); got != tt.want {
			t.Errorf("%s flags %#x: %s, want %s", ProtoName(tt.proto), tt.flags, got, tt.want)
		}
	}
}

func TestEgressPolicyCodec(t *testing.T) {
	tests := []struct {
		p    EgressPolicy
		size int
		key  string
		val  string
	}{
		{EgressPolicy{Source: pod, Dest: netip.MustParsePrefix("93.184.216.0/24"), EgressIP: egIP, GatewayIP: netip.MustParseAddr("10.0.0.7")}, 8,
			"38000000 0a000105 5db8d800", "c0a80164 0a000007"},
		{EgressPolicy{Source: pod, Dest: netip.MustParsePrefix("10.0.0.0/8"), GatewayIP: GatewayExcluded, IfIndex: 7}, 28,
			"28000000 0a000105 0a000000", "00000000 00000001 000000000000000000000000 07000000 00000000"},
		{EgressPolicy{Source: netip.MustParseAddr("fd00::5"), Dest: netip.MustParsePrefix("2001:db8::/32"), EgressIP: netip.MustParseAddr("fd00::100"), GatewayIP: netip.MustParseAddr("10.0.0.7"), IfIndex: 3}, 40,
			"a0000000 fd000000000000000000000000000005 20010db8000000000000000000000000",
			"fd000000000000000000000000000100 0a000007 000000000000000000000000 03000000 00000000"},
	}
	for _, tt := range tests {
		k, v, err := EncodeEgressPolicy(tt.p, tt.size)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k, unhex(t, tt.key)) || !bytes.Equal(v, unhex(t, tt.val)) {
			t.Errorf("%+v: key %x value %x", tt.p, k, v)
		}
		back, err := DecodeEgressPolicy(k, v)
		if err != nil {
			t.Fatal(err)
		}
		if tt.p.EgressIP == (netip.Addr{}) {
			tt.p.EgressIP = netip.IPv4Unspecified()
		}
		if back != tt.p {
			t.Errorf("round trip %+v != %+v", back, tt.p)
		}
	}
	if _, err := DecodeEgressPolicy(unhex(t, "ff000000 0a000105 0a000000"), make([]byte, 8)); err == nil {
		t.Error("prefix length 255 must be refused")
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

func TestTimes(t *testing.T) {
	node := map[profiles.State]time.Duration{profiles.StateEstablished: 8000 * time.Second, profiles.StateNonTCP: 60 * time.Second}
	kt := NewTimes(nodeconfig.Clock{Mode: nodeconfig.Ktime}, 1000, node)
	if r := kt.Remaining(1100); r != 100*time.Second {
		t.Errorf("remaining = %v", r)
	}
	if r := kt.Remaining(900); r != -100*time.Second {
		t.Errorf("expired remaining = %v", r)
	}
	// Refreshed 7900 s ago? No: lifetime = now + 8000 − idle → idle 7900 s.
	if i := kt.Idle(profiles.StateEstablished, 1100); i != 7900*time.Second {
		t.Errorf("idle = %v", i)
	}
	// Around the u32 wrap.
	wrap := NewTimes(nodeconfig.Clock{Mode: nodeconfig.Ktime}, 5, node)
	if r := wrap.Remaining(0xfffffffb); r != -10*time.Second {
		t.Errorf("wrapped remaining = %v", r)
	}
	// Jiffies at HZ=250: one unit is 1.024 s; 60 s → 58 units.
	jt := NewTimes(nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: 250}, 1000, node)
	if jt.Node[profiles.StateNonTCP] != 58 {
		t.Errorf("node units = %d", jt.Node[profiles.StateNonTCP])
	}
	if r := jt.Remaining(1010); r != 10240*time.Millisecond {
		t.Errorf("jiffies remaining = %v", r)
	}
	if i := jt.Idle(profiles.StateNonTCP, 1058); i != 0 {
		t.Errorf("just refreshed: idle = %v", i)
	}
}
