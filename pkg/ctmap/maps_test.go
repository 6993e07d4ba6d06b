package ctmap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/profiles"
)

func spec(t testing.TB, version string, name string) profiles.MapSpec {
	t.Helper()
	r, err := profiles.Resolve(version)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Profile.Maps {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("profile %s has no map %s", version, name)
	return profiles.MapSpec{}
}

// TestCreateOpenEveryProfile creates each profile's maps with Cilium's
// exact layout in a private bpffs and opens them again.
func TestCreateOpenEveryProfile(t *testing.T) {
	for _, p := range profiles.All() {
		t.Run(p.Name, func(t *testing.T) {
			fs := testutil.PrivateBPFFS(t)
			for _, s := range p.Maps {
				m, err := Create(fs, s, 1024)
				if err != nil {
					t.Fatal(err)
				}
				m.Close()
				o, err := Open(fs, s, false)
				if err != nil {
					t.Fatalf("open %s: %v", s.Name, err)
				}
				if o.MaxEntries != 1024 {
					t.Errorf("%s max entries %d", s.Name, o.MaxEntries)
				}
				o.Close()
			}
		})
	}
}

func TestOpenRefusesMismatch(t *testing.T) {
	fs := testutil.PrivateBPFFS(t)
	ct := spec(t, "1.18", "cilium_ct4_global")
	for _, tt := range []struct {
		name  string
		shape ebpf.MapSpec
		field string
	}{
		{"type", ebpf.MapSpec{Name: "cilium_ct4_glob", Type: ebpf.Hash, KeySize: 14, ValueSize: 56, MaxEntries: 8}, "type"},
		{"key", ebpf.MapSpec{Name: "cilium_ct4_glob", Type: ebpf.LRUHash, KeySize: 16, ValueSize: 56, MaxEntries: 8}, "key size"},
		{"value", ebpf.MapSpec{Name: "cilium_ct4_glob", Type: ebpf.LRUHash, KeySize: 14, ValueSize: 64, MaxEntries: 8}, "value size"},
		{"name", ebpf.MapSpec{Name: "something_else", Type: ebpf.LRUHash, KeySize: 14, ValueSize: 56, MaxEntries: 8}, "name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ebpf.NewMap(&tt.shape)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			path := PinPath(fs, ct)
			os.MkdirAll(fs+"/"+GlobalsDir, 0o700)
			os.Remove(path)
			if err := m.Pin(path); err != nil {
				t.Fatal(err)
			}
			_, err = Open(fs, ct, false)
			var mm *MismatchError
			if !errors.As(err, &mm) || mm.Field != tt.field {
				t.Fatalf("Open = %v, want a %s mismatch", err, tt.field)
			}
			t.Log(err)
		})
	}
	if _, err := Open(t.TempDir(), ct, false); !errors.Is(err, ErrMapMissing) {
		t.Errorf("missing map: %v", err)
	}
}

// fill writes n distinct CT entries and returns them by key.
func fill(t testing.TB, m *Map, n int) map[string][]byte {
	t.Helper()
	want := map[string][]byte{}
	keys := make([][14]byte, 0, n)
	vals := make([][56]byte, 0, n)
	for i := 0; i < n; i++ {
		var k [14]byte
		binary.BigEndian.PutUint32(k[0:], 0x0a000000|uint32(i))
		binary.BigEndian.PutUint32(k[4:], 0x5db8d822)
		binary.BigEndian.PutUint16(k[8:], 443)
		binary.BigEndian.PutUint16(k[10:], uint16(32768+i%20000))
		k[12] = ProtoTCP
		var v [56]byte
		for j := range v {
			v[j] = byte(i*7 + j)
		}
		keys, vals = append(keys, k), append(vals, v)
		want[string(k[:])] = v[:]
	}
	for i := 0; i < n; i += 65536 {
		end := min(n, i+65536)
		if _, err := m.BatchUpdate(keys[i:end], vals[i:end], nil); err != nil {
			t.Fatal(err)
		}
	}
	return want
}

func TestWalk(t *testing.T) {
	fs := testutil.PrivateBPFFS(t)
	for _, n := range []int{0, 1, BatchSize - 1, BatchSize, 3*BatchSize + 17} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			m, err := Create(fs, spec(t, "1.18", "cilium_ct4_global"), 1<<16)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { m.Unpin(); m.Close() }()
			want := fill(t, m, n)
			for name, walk := range map[string]func(func(k, v []byte) error) error{"batch": m.Walk, "iterate": m.WalkIterate} {
				got := map[string][]byte{}
				if err := walk(func(k, v []byte) error {
					got[string(k)] = bytes.Clone(v)
					return nil
				}); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if len(got) != len(want) {
					t.Fatalf("%s: %d elements, want %d", name, len(got), len(want))
				}
				for k, v := range want {
					if !bytes.Equal(got[k], v) {
						t.Fatalf("%s: element %x differs", name, k)
					}
				}
			}
		})
	}
}

// TestRoundTrip writes decoded-and-re-encoded elements back and reads the
// same bytes.
func TestRoundTrip(t *testing.T) {
	fs := testutil.PrivateBPFFS(t)
	m, err := Create(fs, spec(t, "main", "cilium_ct4_global"), 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := fill(t, m, 100)
	var keys []string
	err = m.Walk(func(k, v []byte) error {
		tu, err := DecodeTuple(k)
		if err != nil {
			return err
		}
		e, err := DecodeCTEntry(v)
		if err != nil {
			return err
		}
		if !bytes.Equal(tu.Bytes(), k) || !bytes.Equal(e[:], v) {
			return fmt.Errorf("%x does not round-trip", k)
		}
		keys = append(keys, string(k))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	if len(keys) != len(want) {
		t.Fatalf("%d keys", len(keys))
	}
}

func TestWalkLPM(t *testing.T) {
	fs := testutil.PrivateBPFFS(t)
	m, err := Create(fs, spec(t, "1.18", "cilium_egress_gw_policy_v4"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p := EgressPolicy{Source: pod, Dest: mustPrefix("93.184.216.0/24"), EgressIP: egIP, GatewayIP: mustAddr("10.0.0.7")}
	k, v, _ := EncodeEgressPolicy(p, 8)
	if err := m.Put(k, v); err != nil {
		t.Fatal(err)
	}
	var got []EgressPolicy
	if err := m.Walk(func(k, v []byte) error {
		e, err := DecodeEgressPolicy(k, v)
		got = append(got, e)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != p {
		t.Fatalf("got %+v", got)
	}
}
