package sweep

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
)

// The contract between bpf/sweep.bpf.c and Go, read from the BTF of the
// embedded object: the generated types, the constants Go uses, the ring
// buffer's records, and Cilium's layouts against every profile.

func programSpec(t *testing.T) *ebpf.CollectionSpec {
	t.Helper()
	spec, err := loadSweeper()
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func btfStruct(t *testing.T, spec *ebpf.CollectionSpec, name string) *btf.Struct {
	t.Helper()
	var s *btf.Struct
	if err := spec.Types.TypeByName(name, &s); err != nil {
		t.Fatalf("struct %s: %v", name, err)
	}
	return s
}

func btfEnum(t *testing.T, spec *ebpf.CollectionSpec, name string) map[string]uint64 {
	t.Helper()
	var e *btf.Enum
	if err := spec.Types.TypeByName(name, &e); err != nil {
		t.Fatalf("enum %s: %v", name, err)
	}
	out := map[string]uint64{}
	for _, v := range e.Values {
		out[v.Name] = v.Value
	}
	return out
}

// member returns a struct member's offset and size in bytes.
func member(t *testing.T, s *btf.Struct, name string) (off, size int) {
	t.Helper()
	for _, m := range s.Members {
		if m.Name == name {
			n, err := btf.Sizeof(m.Type)
			if err != nil {
				t.Fatal(err)
			}
			return int(m.Offset.Bytes()), n
		}
	}
	t.Fatalf("struct %s has no member %s", s.Name, name)
	return 0, 0
}

// TestGeneratedTypes: each Go type generated from the program has the
// size of its C struct and each field the C member's name, offset and
// size, in order (the committed Go and object were built together).
func TestGeneratedTypes(t *testing.T) {
	spec := programSpec(t)
	for _, tc := range []struct {
		c      string
		goType any
	}{
		{"policy_set", sweeperPolicySet{}},
		{"pod4", sweeperPod4{}},
		{"pod6", sweeperPod6{}},
		{"rule4", sweeperRule4{}},
		{"rule6", sweeperRule6{}},
		{"sweep_stats", sweeperSweepStats{}},
	} {
		t.Run(tc.c, func(t *testing.T) {
			s := btfStruct(t, spec, tc.c)
			typ := reflect.TypeOf(tc.goType)
			if int(typ.Size()) != int(s.Size) {
				t.Fatalf("Go %s is %d bytes, C %d", typ, typ.Size(), s.Size)
			}
			var fields []reflect.StructField
			for i := 0; i < typ.NumField(); i++ {
				if f := typ.Field(i); f.Name != "_" {
					fields = append(fields, f)
				}
			}
			if len(fields) != len(s.Members) {
				t.Fatalf("Go %s has %d fields, C %d members", typ, len(fields), len(s.Members))
			}
			for i, m := range s.Members {
				f := fields[i]
				off, size := member(t, s, m.Name)
				if !strings.EqualFold(f.Name, strings.ReplaceAll(m.Name, "_", "")) ||
					int(f.Offset) != off || int(f.Type.Size()) != size {
					t.Errorf("Go %s.%s at %d (%d bytes), C %s at %d (%d bytes)", typ, f.Name, f.Offset, f.Type.Size(), m.Name, off, size)
				}
			}
		})
	}
}

// TestMapLayouts: the maps Go writes hold the generated types.
func TestMapLayouts(t *testing.T) {
	spec := programSpec(t)
	for _, tc := range []struct {
		name      string
		got, want uint32
	}{
		{"policy set value", spec.Maps["egwct_policies"].InnerMap.ValueSize, uint32(unsafe.Sizeof(sweeperPolicySet{}))},
		{"statistics value", spec.Maps["egwct_sweep"].ValueSize, uint32(unsafe.Sizeof(sweeperSweepStats{}))},
		{"statistics entries", spec.Maps["egwct_sweep"].MaxEntries, MaxPolicies * uint32(sweeperCtStateNSTATES)},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: the program's %d, Go's %d", tc.name, tc.got, tc.want)
		}
	}
}

// TestConstants: the program's constants are the ones Go names.
func TestConstants(t *testing.T) {
	spec := programSpec(t)
	type want struct {
		enum, name string
		value      uint64
	}
	var cases []want
	for _, st := range profiles.States {
		cases = append(cases, want{"ct_state", "STATE_" + map[profiles.State]string{
			profiles.StateSyn: "SYN", profiles.StateEstablished: "ESTABLISHED",
			profiles.StateClosing: "CLOSING", profiles.StateNonTCP: "NONTCP"}[st], uint64(st)})
	}
	cases = append(cases,
		want{"ct_state", "NSTATES", uint64(len(profiles.States))},
		want{"sweep_mode", "MODE_RECLAIM", uint64(Reclaim)},
		want{"sweep_mode", "MODE_MARK", uint64(Mark)},
		want{"set_limit", "MAX_POLICIES", MaxPolicies},
		want{"set_limit", "MAX_RULES", MaxRules},
		want{"set_limit", "RULES4", MaxKeys},
		want{"set_limit", "RULES6", MaxKeys6},
		want{"set_limit", "PODS4", 2 * MaxPods},
		want{"set_limit", "PODS6", 2 * MaxPods6},
		want{"set_limit", "MAX_PROBE", uint64(maxProbe)},
		want{"set_limit", "RULE_EXCLUDED", uint64(ruleExcluded)},
		want{"ct_const", "TUPLE_F_OUT", uint64(ctmap.TupleOut)},
		want{"ct_const", "IPPROTO_TCP", uint64(ctmap.ProtoTCP)},
		want{"ct_const", "CT_RX_CLOSING", uint64(ctmap.FlagRxClosing)},
		want{"ct_const", "CT_TX_CLOSING", uint64(ctmap.FlagTxClosing)},
		want{"ct_const", "CT_SEEN_NON_SYN", uint64(ctmap.FlagSeenNonSyn)},
	)
	for _, c := range cases {
		got, ok := btfEnum(t, spec, c.enum)[c.name]
		if !ok || got != c.value {
			t.Errorf("%s %s: the program's %d (defined: %v), Go's %d", c.enum, c.name, got, ok, c.value)
		}
	}
}

// TestCTKeys: the program's CT keys are Cilium's tuples as pkg/ctmap
// encodes them: each field where ctmap writes it.
func TestCTKeys(t *testing.T) {
	spec := programSpec(t)
	for _, tc := range []struct {
		name     string
		pod, dst string
		size     int
	}{
		{"ct_key4", "10.1.2.3", "198.18.4.5", ctmap.TupleSize4},
		{"ct_key6", "fd00::1:2:3", "2001:db8::4:5", ctmap.TupleSize6},
	} {
		tu := ctmap.Tuple{DAddr: netip.MustParseAddr(tc.pod), SAddr: netip.MustParseAddr(tc.dst),
			DPort: 0x1234, SPort: 0x5678, NextHdr: ctmap.ProtoTCP, Flags: ctmap.TupleIn}
		b := tu.Bytes()
		s := btfStruct(t, spec, tc.name)
		if int(s.Size) != tc.size || len(b) != tc.size {
			t.Fatalf("%s: the program's %d bytes, ctmap's %d (encodes %d)", tc.name, s.Size, tc.size, len(b))
		}
		be := binary.BigEndian
		for _, f := range []struct {
			member string
			want   []byte
		}{
			{"pod", tu.DAddr.AsSlice()},
			{"dest", tu.SAddr.AsSlice()},
			{"dport", be.AppendUint16(nil, tu.DPort)},
			{"sport", be.AppendUint16(nil, tu.SPort)},
			{"nexthdr", []byte{tu.NextHdr}},
			{"flags", []byte{tu.Flags}},
		} {
			off, size := member(t, s, f.member)
			if size != len(f.want) || string(b[off:off+size]) != string(f.want) {
				t.Errorf("%s.%s: %d bytes at %d hold %x, ctmap writes %x there", tc.name, f.member, size, off, b[off:off+size], f.want)
			}
		}
	}
}

// TestCTEntryMatchesProfiles: the ct_entry the program reads is the
// layout of every profile, and pkg/ctmap reads and writes lifetime and
// flags at the program's offsets.
func TestCTEntryMatchesProfiles(t *testing.T) {
	spec := programSpec(t)
	for _, p := range profiles.All() {
		if err := checkLayout(spec, p); err != nil {
			t.Errorf("profile %s: %v", p.Name, err)
		}
	}
	s := btfStruct(t, spec, "ct_entry")
	var e ctmap.CTEntry
	if len(e) != int(s.Size) {
		t.Fatalf("ctmap.CTEntry is %d bytes, the program's %d", len(e), s.Size)
	}
	e.SetLifetime(0xa1b2c3d4)
	e.SetFlags(0xe5f6)
	for _, f := range []struct {
		member string
		want   uint64
	}{{"lifetime", 0xa1b2c3d4}, {"flags", 0xe5f6}} {
		off, size := member(t, s, f.member)
		var got uint64
		for i := size - 1; i >= 0; i-- {
			got = got<<8 | uint64(e[off+i])
		}
		if got != f.want {
			t.Errorf("ct_entry.%s: ctmap wrote %#x at the program's offset %d, want %#x", f.member, got, off, f.want)
		}
	}
}

// alter is a copy of profile 1.18 changed by fn: the original stays.
func alter(fn func(p *profiles.Profile)) *profiles.Profile {
	r, err := profiles.Resolve("1.18.3")
	if err != nil {
		panic(err)
	}
	p := *r.Profile
	p.CTEntry.Fields = append([]profiles.Field(nil), p.CTEntry.Fields...)
	p.CTEntry.FlagBits = append([]profiles.Bit(nil), p.CTEntry.FlagBits...)
	p.Maps = append([]profiles.MapSpec(nil), p.Maps...)
	fn(&p)
	return &p
}

func setField(p *profiles.Profile, name string, fn func(f *profiles.Field)) {
	for i := range p.CTEntry.Fields {
		if p.CTEntry.Fields[i].Name == name {
			fn(&p.CTEntry.Fields[i])
		}
	}
}

// TestCheckLayoutRefuses: a profile that differs from the program in any
// way the program depends on is refused, naming the field and both values.
func TestCheckLayoutRefuses(t *testing.T) {
	spec := programSpec(t)
	for _, tc := range []struct {
		name string
		p    *profiles.Profile
		want LayoutError
	}{
		{"lifetime moved", alter(func(p *profiles.Profile) { setField(p, "lifetime", func(f *profiles.Field) { f.Offset = 36 }) }),
			LayoutError{Field: "ct_entry.lifetime", What: "offset", Program: 32, Found: 36}},
		{"flags wider", alter(func(p *profiles.Profile) { setField(p, "flags", func(f *profiles.Field) { f.Size = 4 }) }),
			LayoutError{Field: "ct_entry.flags", What: "size", Program: 2, Found: 4}},
		{"flags offset", alter(func(p *profiles.Profile) { p.CTEntry.FlagsOffset = 38 }),
			LayoutError{Field: "ct_entry.flags", What: "offset", Program: 36, Found: 38}},
		{"entry larger", alter(func(p *profiles.Profile) { p.CTEntry.Size = 64 }),
			LayoutError{Field: "ct_entry", What: "size", Program: 56, Found: 64}},
		{"lifetime missing", alter(func(p *profiles.Profile) { setField(p, "lifetime", func(f *profiles.Field) { f.Name = "expires" }) }),
			LayoutError{Field: "ct_entry.lifetime", What: "offset", Program: 32, Found: -1}},
		{"flag bit moved", alter(func(p *profiles.Profile) {
			for i := range p.CTEntry.FlagBits {
				if p.CTEntry.FlagBits[i].Name == "seen_non_syn" {
					p.CTEntry.FlagBits[i].Mask = 1 << 5
				}
			}
		}), LayoutError{Field: "ct_entry.flags:seen_non_syn", What: "mask", Program: 16, Found: 32}},
		{"key size", alter(func(p *profiles.Profile) {
			for i := range p.Maps {
				if p.Maps[i].Role == profiles.RoleCTTCP && p.Maps[i].Family == 6 {
					p.Maps[i].KeySize = 40
				}
			}
		}), LayoutError{Field: "cilium_ct6_global key", What: "size", Program: 38, Found: 40}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLayout(spec, tc.p)
			var le *LayoutError
			if !errors.As(err, &le) {
				t.Fatalf("got %v, want a *LayoutError", err)
			}
			tc.want.Profile = "1.18"
			if *le != tc.want {
				t.Errorf("got %+v, want %+v", *le, tc.want)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want.Field) {
				t.Errorf("message %q does not name %s", msg, tc.want.Field)
			}
		})
	}
}

// TestNewRefusesLayout: New refuses a profile whose lifetime offset
// differs before it opens or loads anything: in a bpffs without Cilium's
// maps the error is still the layout's, not a missing map.
func TestNewRefusesLayout(t *testing.T) {
	fs := testutil.PrivateBPFFS(t)
	st, err := OpenState(fs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p := alter(func(p *profiles.Profile) { setField(p, "lifetime", func(f *profiles.Field) { f.Offset = 24 }) })
	s, err := New(Config{BPFFS: fs, Profile: p, Mode: Reclaim}, st)
	if s != nil {
		s.Close()
	}
	var le *LayoutError
	if !errors.As(err, &le) || le.Field != "ct_entry.lifetime" || le.Program != 32 || le.Found != 24 {
		t.Fatalf("got %v, want a *LayoutError for ct_entry.lifetime (32, 24)", err)
	}
	want := "profile 1.18 does not match the sweeper: ct_entry.lifetime offset is 24 in the profile, the sweeper was built for 32"
	if err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}
