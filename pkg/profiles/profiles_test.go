package profiles

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		in         string
		profile    string
		unverified bool
		newerPatch bool
		wantErr    string
	}{
		{in: "1.18.3", profile: "1.18"},
		{in: "v1.17.0-rc.1", profile: "1.17", unverified: true},
		{in: "1.17", profile: "1.17"},
		{in: "1.14.16", profile: "1.14"},
		{in: "1.14.17", profile: "1.14"},
		{in: "1.14.20", profile: "1.14", newerPatch: true},
		{in: "v1.15.2+abc", profile: "1.15"},
		{in: "1.19.0", profile: "1.19"},
		{in: "1.18.11", profile: "1.18"},
		{in: "1.18.12", profile: "1.18", newerPatch: true},
		{in: "1.19.99", profile: "1.19", newerPatch: true},
		{in: "1.20.2", profile: "1.20"},
		{in: "1.20.0-dev", profile: "1.20", unverified: true},
		{in: "1.21.0-dev", profile: "main", unverified: true},
		{in: "1.21.0-pre.1", profile: "main", unverified: true},
		{in: "1.21.0", profile: "main", unverified: true},
		{in: "main", profile: "main", unverified: true},
		{in: "MAIN", profile: "main", unverified: true},
		{in: "1.16", profile: "1.16"},
		{in: "1.13.4", wantErr: "known: 1.14, 1.15, 1.16, 1.17, 1.18, 1.19, 1.20, main (1.21-dev)"},
		{in: "1.22.0", wantErr: "no profile for Cilium version"},
		{in: "2.0.0", wantErr: "no profile"},
		{in: "latest", wantErr: "invalid Cilium version"},
		{in: "1.18.x", wantErr: "not a version number"},
		{in: "1.018.1", wantErr: "not a version number"},
		{in: "1.20-dev", wantErr: "needs a patch number"},
		{in: "", wantErr: "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := Resolve(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Resolve(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.in, err)
			}
			if r.Profile.Name != tt.profile || r.Unverified != tt.unverified || r.NewerPatch != tt.newerPatch {
				t.Errorf("Resolve(%q) = %s unverified=%v newerPatch=%v, want %s unverified=%v newerPatch=%v",
					tt.in, r.Profile.Name, r.Unverified, r.NewerPatch, tt.profile, tt.unverified, tt.newerPatch)
			}
			if r.Reason() == "" {
				t.Error("empty reason")
			}
		})
	}
}

func TestUnknownVersionErrorType(t *testing.T) {
	_, err := Resolve("1.99.0")
	var uv *UnknownVersionError
	if !errors.As(err, &uv) {
		t.Fatalf("err = %T, want *UnknownVersionError", err)
	}
}

func TestVersionCompare(t *testing.T) {
	order := []string{"1.14.0", "1.14.16", "1.15.0-rc.1", "1.15.0", "1.15.2", "1.20.0-dev", "1.20.0"}
	for i := range order {
		for j := range order {
			a, b := MustParseVersion(order[i]), MustParseVersion(order[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%s cmp %s = %d, want %d", a, b, got, want)
			}
		}
	}
}

func TestQuirkRanges(t *testing.T) {

	tests := []struct {
		version string
		quirk   string
		want    bool
	}{
		{"1.14.0", "restart-deletes-remote-egw", true},
		{"1.14.16", "restart-deletes-remote-egw", true},
		{"1.15.1", "restart-deletes-remote-egw", true},
		{"1.15.2", "restart-deletes-remote-egw", false},
		{"1.15", "restart-deletes-remote-egw", true},
		{"1.16.14", "snat-stale-egress-ip", true},
		{"1.16.15", "snat-stale-egress-ip", false},
		{"1.18.2", "ct-fillup-enomem-only", false},
		{"1.18.3", "ct-fillup-enomem-only", true},
		{"1.18.9", "ct-fillup-enomem-only", true},
	}
	for _, tt := range tests {
		r, err := Resolve(tt.version)
		if err != nil {
			t.Fatal(err)
		}
		got := false
		for _, q := range r.Profile.QuirksFor(r.Version) {
			got = got || q.ID == tt.quirk
		}
		if got != tt.want {
			t.Errorf("%s has %s = %v, want %v", tt.version, tt.quirk, got, tt.want)
		}
	}
}

// TestProfilesConsistent checks invariants every profile must keep; a new
// profile file that breaks one fails here.
func TestProfilesConsistent(t *testing.T) {
	for _, p := range All() {
		t.Run(p.Name, func(t *testing.T) {
			seen := map[State]bool{}
			for _, prm := range p.Parameters {
				if seen[prm.State] {
					t.Errorf("two parameters for state %s", prm.State)
				}
				seen[prm.State] = true
				if prm.Default < MinTimeout || prm.Default > MaxTimeout {
					t.Errorf("%s default %v out of range", prm.Key, prm.Default)
				}
				if "bpf-ct-timeout-"+kebab(strings.TrimPrefix(prm.Key, "bpfCtTimeout")) != prm.Flag {
					t.Errorf("key %s does not mirror flag %s", prm.Key, prm.Flag)
				}
			}
			if len(p.ServiceTimers) != 3 {
				t.Errorf("%d service timers, want 3", len(p.ServiceTimers))
			}
			// ct_entry fields tile the 56 bytes without overlap.
			covered := make([]int, p.CTEntry.Size)
			for _, f := range p.CTEntry.Fields {
				for i := f.Offset; i < f.Offset+f.Size; i++ {
					covered[i]++
				}
			}
			for i, n := range covered {
				if n != 1 {
					t.Errorf("ct_entry byte %d covered %d times", i, n)
				}
			}
			for _, name := range []string{"lifetime", "flags"} {
				if _, ok := p.CTEntry.Field(name); !ok {
					t.Errorf("ct_entry has no %s", name)
				}
			}
			for _, bit := range []string{"rx_closing", "tx_closing", "seen_non_syn"} {
				if _, ok := p.CTEntry.Bit(bit); !ok {
					t.Errorf("no flag bit %s", bit)
				}
			}
			for _, role := range []MapRole{RoleCTTCP, RoleCTAny, RoleSNAT, RoleEgressPolicy} {
				if _, ok := p.Map(role, 4); !ok {
					t.Errorf("no IPv4 %s map", role)
				}
			}
			names := map[string]bool{}
			for _, m := range p.Maps {
				if names[m.Name] {
					t.Errorf("map %s listed twice", m.Name)
				}
				names[m.Name] = true
				if len(m.Flags) == 0 || m.KeySize == 0 || m.ValueSize == 0 {
					t.Errorf("map %s incomplete", m.Name)
				}
			}
		})
	}
}

func TestDefaultsPerVersion(t *testing.T) {
	tests := []struct {
		version string
		state   State
		want    time.Duration
	}{
		{"1.14.3", StateEstablished, 21600 * time.Second},
		{"1.15.0", StateEstablished, 8000 * time.Second},
		{"main", StateEstablished, 8000 * time.Second},
		{"1.18", StateSyn, 60 * time.Second},
		{"1.18", StateClosing, 10 * time.Second},
		{"1.18", StateNonTCP, 60 * time.Second},
	}
	for _, tt := range tests {
		r, _ := Resolve(tt.version)
		if got := r.Profile.ParameterFor(tt.state).Default; got != tt.want {
			t.Errorf("%s %s default = %v, want %v", tt.version, tt.state, got, tt.want)
		}
	}
}

func TestMapsPerVersion(t *testing.T) {
	tests := []struct {
		version string
		name    string
		present bool
	}{
		{"1.17", "cilium_egress_gw_policy_v6", false},
		{"1.18", "cilium_egress_gw_policy_v6", true},
		{"1.19", "cilium_egress_gw_policy_v4_v2", false},
		{"main", "cilium_egress_gw_policy_v4_v2", true},
		{"1.14", "cilium_snat_v4_alloc_retries", false},
		{"1.18", "cilium_snat_v4_alloc_retries", true},
	}
	for _, tt := range tests {
		r, _ := Resolve(tt.version)
		found := false
		for _, m := range r.Profile.Maps {
			found = found || m.Name == tt.name
		}
		if found != tt.present {
			t.Errorf("%s has %s = %v, want %v", tt.version, tt.name, found, tt.present)
		}
	}
}

// kebab turns RegularTcpSyn into regular-tcp-syn.
func kebab(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('-')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestVerifiedAgainstMatchesRecord checks that every profile claims exactly
// the releases hack/verify-profiles verified (its verified.json), and lists
// as Differs exactly those where it found a difference.
func TestVerifiedAgainstMatchesRecord(t *testing.T) {
	b, err := os.ReadFile("../../hack/verify-profiles/verified.json")
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Releases map[string]struct {
			Result string `json:"result"`
		} `json:"releases"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("verified.json: %v", err)
	}
	want := map[string][]Version{}
	for s, o := range rec.Releases {
		v, err := ParseVersion(s)
		if err != nil {
			t.Fatalf("verified.json: %v", err)
		}
		key := fmt.Sprintf("%d.%d/%s", v.Major, v.Minor, o.Result)
		want[key] = append(want[key], v)
	}
	for _, p := range All() {
		for _, c := range []struct {
			result string
			got    []Version
		}{{"verified", p.VerifiedAgainst}, {"differs", p.Differs}} {
			w := want[fmt.Sprintf("%d.%d/%s", p.Major, p.Minor, c.result)]
			sort.Slice(w, func(i, j int) bool { return w[i].Compare(w[j]) < 0 })
			if fmt.Sprint(w) != fmt.Sprint(c.got) {
				t.Errorf("profile %s: releases recorded as %s in verified.json = %v, profile lists %v (the list must be what make verify-profiles checked, oldest first)",
					p.Name, c.result, w, c.got)
			}
		}
	}
}
