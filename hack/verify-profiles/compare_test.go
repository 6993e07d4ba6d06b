package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/egwct/egwct/hack/verify-profiles/facts"
	"github.com/egwct/egwct/pkg/profiles"
)

// testdata/default-1.20.2.json is what the extractor built against Cilium
// 1.20.2 reported (default options) on a 6.18 kernel.
func load(t *testing.T) facts.Run {
	t.Helper()
	b, err := os.ReadFile("testdata/default-1.20.2.json")
	if err != nil {
		t.Fatal(err)
	}
	var r facts.Run
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func profile(t *testing.T, name string) *profiles.Profile {
	t.Helper()
	for _, p := range profiles.All() {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no profile %s", name)
	return nil
}

func TestCompareMatches(t *testing.T) {
	if d := Compare(profile(t, "1.20"), []facts.Run{load(t)}); len(d) != 0 {
		t.Fatalf("differences: %v", d)
	}
}

// Each mutation of Cilium's facts must produce differences that name the
// fact, Cilium's value and egwct's.
func TestCompareFindsDifferences(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(r *facts.Run)
		want   []string
	}{
		{"value size", func(r *facts.Run) { r.Maps[0].ValueSize = 64 },
			[]string{"map cilium_ct4_global: value size", "64", "56"}},
		{"flags", func(r *facts.Run) { r.Maps[0].Flags = 0x4 },
			[]string{"map cilium_ct4_global: flags with default options", "0x4"}},
		{"max entries", func(r *facts.Run) { r.Maps[1].MaxEntries = 1 },
			[]string{"cilium_ct6_global: default max entries", "1", "524288"}},
		{"missing map", func(r *facts.Run) { r.Maps = r.Maps[1:] },
			[]string{"map cilium_ct4_global", "does not create it"}},
		{"new map", func(r *facts.Run) {
			r.Maps = append(r.Maps, facts.Map{Name: "cilium_ct4_global_v2", Type: 9, KeySize: 14, ValueSize: 56})
		}, []string{"map cilium_ct4_global_v2", "not in the profile"}},
		{"field moved", func(r *facts.Run) { setField(r, "ctmap.CtEntry", "lifetime", 40) },
			[]string{"struct ct_entry (Go ctmap.CtEntry): name of the field at 40: Cilium says lifetime, egwct's profile says nat_port",
				"field lifetime at 32: Cilium says no such field"}},
		{"field renamed", func(r *facts.Run) { renameField(r, "nat.NatEntry4", "to_sport", "to_port") },
			[]string{"name of the field at 36", "to_port", "to_sport"}},
		{"timeout", func(r *facts.Run) { r.FlagDefaults["bpf-ct-timeout-regular-tcp"] = "6h0m0s" },
			[]string{"default of --bpf-ct-timeout-regular-tcp", "6h0m0s", "2h13m20s"}},
		{"gc bound", func(r *facts.Run) { r.Constants["defaults.ConntrackGCMaxLRUInterval"] = "24h0m0s" },
			[]string{"defaults.ConntrackGCMaxLRUInterval", "24h0m0s", "12h0m0s"}},
		{"flag bit", func(r *facts.Run) { r.Constants["ctmap.SeenNonSyn"] = "32" },
			[]string{"flag bit seen_non_syn", "32", "16"}},
		{"gc keeps a reverse entry", func(r *facts.Run) {
			c := &r.GC[0]
			// Put back one SNAT key the GC deleted.
			for _, e := range c.NAT {
				if !containsKey(c.NATAfter, e.Key) {
					c.NATAfter = append(c.NATAfter, e.Key)
					return
				}
			}
		}, []string{"IPv4 GC: SNAT key", "kept", "deleted"}},
		{"gc count", func(r *facts.Run) { r.GC[1].Deleted++ },
			[]string{"IPv6 GC: CT entries deleted", "5", "4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := load(t)
			tt.mutate(&r)
			d := Compare(profile(t, "1.20"), []facts.Run{r})
			if len(d) == 0 {
				t.Fatal("no difference found")
			}
			all := ""
			for _, x := range d {
				all += x.String() + "\n"
			}
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("differences do not mention %q:\n%s", w, all)
				}
			}
		})
	}
}

// The 1.20 facts against the 1.19 profile: 1.19 has no v4_v2 map and
// other egress-policy flags.
func TestCompareOtherProfile(t *testing.T) {
	d := Compare(profile(t, "1.19"), []facts.Run{load(t)})
	s := ""
	for _, x := range d {
		s += x.String() + "\n"
	}
	for _, w := range []string{"map cilium_egress_gw_policy_v4_v2: Cilium says the agent creates it", "map cilium_egress_gw_policy_v4: flags with default options: Cilium says 0x81"} {
		if !strings.Contains(s, w) {
			t.Errorf("differences do not mention %q:\n%s", w, s)
		}
	}
}

func setField(r *facts.Run, typ, c string, off int) {
	t := r.Types[typ]
	for i := range t.Fields {
		if t.Fields[i].C == c {
			t.Fields[i].Offset = off
		}
	}
}

func renameField(r *facts.Run, typ, c, to string) {
	t := r.Types[typ]
	for i := range t.Fields {
		if t.Fields[i].C == c {
			t.Fields[i].C = to
		}
	}
}

func containsKey(ks []string, k string) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

func TestSelectVersions(t *testing.T) {
	vs, err := selectVersions("1.20.2, 1.19.7", false, "")
	if err != nil || len(vs) != 2 || vs[0].String() != "1.20.2" {
		t.Fatalf("selectVersions = %v, %v", vs, err)
	}
	for _, bad := range []string{"1.20", "1.21.0-dev", "x"} {
		if _, err := selectVersions(bad, false, ""); err == nil {
			t.Errorf("selectVersions(%q): no error", bad)
		}
	}
	vs, err = selectVersions("", true, "1.20")
	if err != nil || len(vs) != 1 || vs[0].Minor != 20 {
		t.Fatalf("newest of 1.20 = %v, %v", vs, err)
	}
}

func TestForTag(t *testing.T) {
	for _, tt := range []struct {
		src  string
		tag  string
		want bool
	}{
		{"package main\n", "cilium120", true},
		{"//go:build cilium119 || cilium120\n\npackage main\n", "cilium120", true},
		{"//go:build cilium119 || cilium120\n\npackage main\n", "cilium118", false},
		{"// comment\n//go:build cilium114\n\npackage main\n", "cilium114", true},
	} {
		got, err := forTag([]byte(tt.src), tt.tag)
		if err != nil || got != tt.want {
			t.Errorf("forTag(%q, %s) = %v, %v; want %v", tt.src, tt.tag, got, err, tt.want)
		}
	}
}
