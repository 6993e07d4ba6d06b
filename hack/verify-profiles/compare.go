package main

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/egwct/egwct/hack/verify-profiles/facts"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
)

// Difference is one fact on which Cilium's code and egwct's profile disagree.
type Difference struct {
	Fact   string
	Cilium string
	Egwct  string
}

func (d Difference) String() string {
	return fmt.Sprintf("%s: Cilium says %s, egwct's profile says %s", d.Fact, d.Cilium, d.Egwct)
}

// layoutOf names the C struct each of Cilium's Go key/value types mirrors
// (the Go types say so in their doc comments and align tags).
var layoutOf = map[string]string{
	"ctmap.CtKey4Global":           "ipv4_ct_tuple",
	"ctmap.CtKey6Global":           "ipv6_ct_tuple",
	"nat.NatKey4":                  "ipv4_ct_tuple",
	"nat.NatKey6":                  "ipv6_ct_tuple",
	"ctmap.CtEntry":                "ct_entry",
	"nat.NatEntry4":                "ipv4_nat_entry",
	"nat.NatEntry6":                "ipv6_nat_entry",
	"egressmap.EgressPolicyKey4":   "egress_gw_policy_key",
	"egressmap.EgressPolicyVal4":   "egress_gw_policy_entry",
	"egressmap.EgressPolicyVal4V2": "egress_gw_policy_entry_v2",
	"egressmap.EgressPolicyKey6":   "egress_gw_policy_key6",
	"egressmap.EgressPolicyVal6":   "egress_gw_policy_entry6",
}

// fieldAlias maps an align tag that names a bitfield's first member to the
// name of the whole word in egwct's layout.
var fieldAlias = map[string]string{"ct_entry.rx_closing": "flags"}

// bitOf maps Cilium's Go constants of ct_entry flag bits to their C names.
var bitOf = map[string]string{
	"ctmap.RxClosing":   "rx_closing",
	"ctmap.TxClosing":   "tx_closing",
	"ctmap.SeenNonSyn":  "seen_non_syn",
	"ctmap.DSRInternal": "dsr_internal",
	"ctmap.DSR":         "dsr",
}

// Compare checks the facts of one release, one Run per option set (the
// "default" run carries the types, defaults and GC cases), against p.
func Compare(p *profiles.Profile, runs []facts.Run) []Difference {
	var diffs []Difference
	add := func(fact, cilium, egwct string, a ...any) {
		diffs = append(diffs, Difference{Fact: fmt.Sprintf(fact, a...), Cilium: cilium, Egwct: egwct})
	}
	for _, r := range runs {
		compareMaps(p, r, add)
		if r.Options != "default" {
			continue
		}
		compareTypes(p, r, add)
		compareDefaults(p, r, add)
		for _, c := range r.GC {
			compareGC(c, add)
		}
	}
	return diffs
}

type addFunc func(fact, cilium, egwct string, a ...any)

// inScope reports whether a pinned map is one a profile describes.
func inScope(name string) bool {
	for _, p := range []string{"cilium_ct", "cilium_snat_", "cilium_egress_gw_policy_"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func compareMaps(p *profiles.Profile, r facts.Run, add addFunc) {
	seen := map[string]bool{}
	for _, m := range r.Maps {
		seen[m.Name] = true
		var spec *profiles.MapSpec
		for i := range p.Maps {
			if p.Maps[i].Name == m.Name {
				spec = &p.Maps[i]
			}
		}
		if spec == nil {
			if inScope(m.Name) {
				add("map %s", "the agent creates it", "not in the profile", m.Name)
			}
			continue
		}
		if uint32(spec.Type) != m.Type {
			add("map %s: type", profiles.MapType(m.Type).String(), spec.Type.String(), m.Name)
		}
		if spec.KeySize != m.KeySize {
			add("map %s: key size", fmt.Sprint(m.KeySize), fmt.Sprint(spec.KeySize), m.Name)
		}
		if spec.ValueSize != m.ValueSize {
			add("map %s: value size", fmt.Sprint(m.ValueSize), fmt.Sprint(spec.ValueSize), m.Name)
		}
		ok := false
		for _, f := range spec.Flags {
			ok = ok || f == m.Flags
		}
		if !ok {
			add("map %s: flags with %s options", fmt.Sprintf("%#x", m.Flags), flagList(spec.Flags), m.Name, r.Options)
		}
		if r.Options == "default" && spec.DefaultMaxEntries != m.MaxEntries {
			add("map %s: default max entries", fmt.Sprint(m.MaxEntries), fmt.Sprint(spec.DefaultMaxEntries), m.Name)
		}
	}
	if r.Options != "default" {
		return
	}
	for _, spec := range p.Maps {
		if !seen[spec.Name] && spec.Role != profiles.RolePerClusterCT && spec.Role != profiles.RolePerClusterNAT {
			add("map %s", "the agent does not create it (IPv4, IPv6, egress gateway and NodePort enabled)", "listed", spec.Name)
		}
	}
}

func flagList(fs []uint32) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("%#x", f)
	}
	return "one of " + strings.Join(parts, ", ")
}

func compareTypes(p *profiles.Profile, r facts.Run, add addFunc) {
	names := make([]string, 0, len(r.Types))
	for n := range r.Types {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, goName := range names {
		t := r.Types[goName]
		cName, ok := layoutOf[goName]
		if !ok {
			add("Go type %s", "exists", "no layout is known to the verifier", goName)
			continue
		}
		l, ok := p.Layout(cName)
		if !ok {
			add("struct %s (Go %s)", fmt.Sprintf("%d bytes", t.Size), "no layout", cName, goName)
			continue
		}
		if l.Size != t.Size {
			add("struct %s (Go %s): size", fmt.Sprint(t.Size), fmt.Sprint(l.Size), cName, goName)
		}
		covered := make([]bool, len(l.Fields))
		for _, f := range t.Fields {
			name := f.C
			if a, ok := fieldAlias[cName+"."+name]; ok {
				name = a
			}
			if strings.HasPrefix(name, "$union") {
				// The profile's fields must tile the union exactly.
				end, at := f.Offset+f.Size, f.Offset
				for i, pf := range l.Fields {
					if pf.Offset == at && at < end {
						covered[i] = true
						at += pf.Size
					}
				}
				if at != end {
					add("struct %s (Go %s): union at %d (%d bytes)", "one union", "fields that do not tile it",
						cName, goName, f.Offset, f.Size)
				}
				continue
			}
			found := false
			for i, pf := range l.Fields {
				if pf.Offset != f.Offset {
					continue
				}
				found, covered[i] = true, true
				if pf.Size != f.Size {
					add("struct %s (Go %s): size of the field at %d", fmt.Sprintf("%s: %d", fieldName(f), f.Size),
						fmt.Sprintf("%s: %d", pf.Name, pf.Size), cName, goName, f.Offset)
				}
				if name != "" && pf.Name != name {
					add("struct %s (Go %s): name of the field at %d", name, pf.Name, cName, goName, f.Offset)
				}
			}
			if !found {
				add("struct %s (Go %s): field at %d", fmt.Sprintf("%s (%d bytes)", fieldName(f), f.Size), "none",
					cName, goName, f.Offset)
			}
		}
		for i, pf := range l.Fields {
			if !covered[i] {
				add("struct %s (Go %s): field %s at %d", "no such field", "listed", cName, goName, pf.Name, pf.Offset)
			}
		}
	}
}

func fieldName(f facts.Field) string {
	if f.C != "" {
		return f.C
	}
	return f.Go
}

func compareDefaults(p *profiles.Profile, r facts.Run, add addFunc) {
	dur := func(flag string, want time.Duration) {
		got, ok := r.FlagDefaults[flag]
		if !ok {
			add("default of --%s", "not found among the agent's flag registrations", want.String(), flag)
			return
		}
		d, err := time.ParseDuration(got)
		if err != nil || d != want {
			add("default of --%s", got, want.String(), flag)
		}
	}
	for _, prm := range p.Parameters {
		dur(prm.Flag, prm.Default)
	}
	for _, t := range p.ServiceTimers {
		dur(t.Flag, t.Default)
	}
	size := func(flag string, role profiles.MapRole) {
		spec, ok := p.Map(role, 4)
		got, found := r.FlagDefaults[flag]
		if !ok || !found {
			return
		}
		if got != fmt.Sprint(spec.DefaultMaxEntries) {
			add("default of --%s", got, fmt.Sprint(spec.DefaultMaxEntries), flag)
		}
	}
	size("bpf-ct-global-tcp-max", profiles.RoleCTTCP)
	size("bpf-ct-global-any-max", profiles.RoleCTAny)
	size("bpf-nat-global-max", profiles.RoleSNAT)
	if spec, ok := p.Map(profiles.RoleEgressPolicy, 4); ok {
		if got, found := r.Constants["egressmap.EgressGatewayPolicyMapMax"]; found && got != fmt.Sprint(spec.DefaultMaxEntries) {
			add("default of --egress-gateway-policy-map-max", got, fmt.Sprint(spec.DefaultMaxEntries))
		}
	}
	gc := func(name string, want time.Duration) {
		got, ok := r.Constants[name]
		if !ok {
			add("%s", "not found", want.String(), name)
			return
		}
		if d, err := time.ParseDuration(got); err != nil || d != want {
			add("%s", got, want.String(), name)
		}
	}
	gc("defaults.ConntrackGCStartingInterval", p.GCInterval.Start)
	gc("defaults.ConntrackGCMinInterval", p.GCInterval.Min)
	gc("defaults.ConntrackGCMaxLRUInterval", p.GCInterval.Max)
	for goName, cName := range bitOf {
		got, ok := r.Constants[goName]
		if !ok {
			continue
		}
		mask, ok := p.CTEntry.Bit(cName)
		if !ok {
			add("ct_entry flag bit %s (%s)", got, "no such bit", cName, goName)
			continue
		}
		if got != fmt.Sprint(mask) {
			add("ct_entry flag bit %s (%s)", got, fmt.Sprint(mask), cName, goName)
		}
	}
}

// compareGC checks egwct's model of what Cilium's GC deletes for an expired
// entry — the CT entry and, for an outbound one, the SNAT entry with the
// addresses swapped and its reverse entry (ctmap.NATKeysForCT,
// ctmap.ReverseKey) — against what Cilium's own GC pass deleted.
func compareGC(c facts.GCCase, add addFunc) {
	nat := map[string]string{}
	for _, e := range c.NAT {
		nat[e.Key] = e.Value
	}
	wantCT, wantNAT := map[string]bool{}, map[string]bool{}
	for _, e := range c.CT {
		wantCT[e.Key] = true
	}
	for k := range nat {
		wantNAT[k] = true
	}
	expired := 0
	for _, e := range c.CT {
		k, v, err := decodeCT(e)
		if err != nil {
			add("IPv%d GC fixture", err.Error(), "-", c.Family)
			return
		}
		if v.Lifetime() >= c.Now {
			continue
		}
		expired++
		delete(wantCT, e.Key)
		egress, ok := ctmap.NATKeysForCT(k)
		if !ok {
			continue
		}
		ek := hex.EncodeToString(egress.Bytes())
		val, ok := nat[ek]
		if !ok {
			continue
		}
		delete(wantNAT, ek)
		b, _ := hex.DecodeString(val)
		nv, err := ctmap.DecodeNATEntry(b)
		if err != nil {
			add("IPv%d GC fixture", err.Error(), "-", c.Family)
			return
		}
		delete(wantNAT, hex.EncodeToString(ctmap.ReverseKey(egress, &nv).Bytes()))
	}
	if c.Deleted != expired {
		add("IPv%d GC: CT entries deleted", fmt.Sprint(c.Deleted), fmt.Sprint(expired), c.Family)
	}
	diffSet := func(what string, got []string, want map[string]bool) {
		gotSet := map[string]bool{}
		for _, k := range got {
			gotSet[k] = true
			if !want[k] {
				add("IPv%d GC: %s key %s", "kept", "deleted", c.Family, what, describe(k))
			}
		}
		for k := range want {
			if !gotSet[k] {
				add("IPv%d GC: %s key %s", "deleted", "kept", c.Family, what, describe(k))
			}
		}
	}
	diffSet("CT", c.CTAfter, wantCT)
	diffSet("SNAT", c.NATAfter, wantNAT)
}

func decodeCT(e facts.Elem) (ctmap.Tuple, ctmap.CTEntry, error) {
	kb, err := hex.DecodeString(e.Key)
	if err != nil {
		return ctmap.Tuple{}, ctmap.CTEntry{}, err
	}
	vb, err := hex.DecodeString(e.Value)
	if err != nil {
		return ctmap.Tuple{}, ctmap.CTEntry{}, err
	}
	k, err := ctmap.DecodeTuple(kb)
	if err != nil {
		return k, ctmap.CTEntry{}, err
	}
	v, err := ctmap.DecodeCTEntry(vb)
	return k, v, err
}

func describe(hexKey string) string {
	b, err := hex.DecodeString(hexKey)
	if err != nil {
		return hexKey
	}
	t, err := ctmap.DecodeTuple(b)
	if err != nil {
		return hexKey
	}
	return fmt.Sprintf("%s (daddr %s saddr %s dport %d sport %d proto %d flags %d)", hexKey, t.DAddr, t.SAddr, t.DPort, t.SPort, t.NextHdr, t.Flags)
}
