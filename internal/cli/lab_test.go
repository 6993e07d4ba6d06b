package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"go.yaml.in/yaml/v3"

	"github.com/egwct/egwct/internal/bpffs"
	"github.com/egwct/egwct/internal/lab"
	"github.com/egwct/egwct/internal/printer"
	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
)

// jsonLines parses the list document of `ct|nat|egress list -o json`
// and returns its items.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var doc struct {
		SchemaVersion int              `json:"schemaVersion"`
		Kind          string           `json:"kind"`
		Items         []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %q: %v", out, err)
	}
	if doc.SchemaVersion != printer.SchemaVersion || !strings.HasSuffix(doc.Kind, "List") || doc.Items == nil {
		t.Fatalf("not a list document: %.200s", out)
	}
	return doc.Items
}

// TestLabLifecycle builds a lab of every profile with both clocks, lists
// it, checks that what is listed is what is in the maps and consistent
// (every outbound CT entry has its two SNAT entries, every egress SNAT
// entry its CT entry, the egress maps hold the keys the manifests resolve
// to), that labs of 1.18+ are dual-stack and older ones IPv4-only, and
// takes it down leaving nothing behind.
func TestLabLifecycle(t *testing.T) {
	testutil.RequireRoot(t)
	for _, p := range profiles.All() {
		for _, clock := range []string{"ktime", "jiffies"} {
			t.Run(p.Name+"/"+clock, func(t *testing.T) {
				dir := labDir(t)
				state := dir + ".state"
				node := []string{"--bpffs", dir, "--cilium-state-dir", state, "--cilium-version", p.Name}
				code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", p.Name, "--flows", "3000", "--clock", clock, "--hz", "250")
				if code != 0 {
					t.Fatalf("lab up: %d %s %s", code, out, errOut)
				}
				if ok, _ := bpffs.IsMounted(dir); !ok {
					t.Fatal("lab up did not mount a bpffs")
				}
				st, err := lab.LoadState(state)
				if err != nil {
					t.Fatal(err)
				}
				dual := lab.DualStack(p)
				if st.IPv6 != dual || slices.Contains(st.Maps, "cilium_egress_gw_policy_v6") != dual {
					t.Fatalf("dual-stack %v, lab.json says %v, maps %v", dual, st.IPv6, st.Maps)
				}

				code, out, errOut = run(t, "", append([]string{"ct", "list", "-o", "json"}, node...)...)
				if code != 0 {
					t.Fatalf("ct list: %d %s", code, errOut)
				}
				if !strings.Contains(errOut, "clock "+clock) {
					t.Errorf("ct list does not say its clock: %q", errOut)
				}
				cts := jsonLines(t, out)
				if want := countEntries(t, dir, p, profiles.RoleCTTCP) + countEntries(t, dir, p, profiles.RoleCTAny); len(cts) != want || want < 3000 {
					t.Fatalf("ct list printed %d entries, the maps hold %d (3000 flows)", len(cts), want)
				}
				// A fifth of a dual-stack lab's flows are IPv6, in the
				// IPv6 maps; an IPv4-only lab has none.
				v6 := countFamily(t, dir, p, 6, profiles.RoleCTTCP, profiles.RoleCTAny)
				listed6 := 0
				for _, r := range cts {
					if strings.HasSuffix(r["map"].(string), "6_global") {
						listed6++
					}
				}
				if listed6 != v6 || (dual && (v6 < len(cts)/8 || v6 > len(cts)/3)) || (!dual && v6 != 0) {
					t.Fatalf("%d IPv6 CT entries listed, %d in the maps, of %d", listed6, v6, len(cts))
				}
				for _, r := range cts {
					raw := r["raw"].(map[string]any)
					for _, f := range p.CTEntry.Fields {
						if _, ok := raw[camelCase(f.Name)]; !ok {
							t.Fatalf("raw lacks %s: %v", camelCase(f.Name), raw)
						}
					}
					flags := uint16(raw["flags"].(float64))
					want := "non-tcp"
					switch {
					case r["proto"] != "TCP":
					case flags&3 == 3:
						want = "closing"
					case flags&0x10 == 0:
						want = "syn"
					default:
						want = "established"
					}
					if r["state"] != want {
						t.Fatalf("state %v for flags %#x proto %v", r["state"], flags, r["proto"])
					}
					pod := netip.MustParseAddr(r["srcIP"].(string))
					if !(netip.MustParsePrefix("10.1.0.0/16").Contains(pod) || netip.MustParsePrefix("fd00:10:1::/64").Contains(pod)) || r["tuple_flags"] == "IN" {
						t.Fatalf("orientation: %v", r)
					}
					if pod.Is6() != strings.HasSuffix(r["map"].(string), "6_global") {
						t.Fatalf("an entry in the map of the other family: %v", r)
					}
				}

				code, out, _ = run(t, "", append([]string{"nat", "list", "-o", "json"}, node...)...)
				if code != 0 {
					t.Fatal("nat list failed")
				}
				nats := jsonLines(t, out)
				if want := countEntries(t, dir, p, profiles.RoleSNAT); len(nats) != want {
					t.Fatalf("nat list printed %d entries, the maps hold %d", len(nats), want)
				}
				if v6 := countFamily(t, dir, p, 6, profiles.RoleSNAT); (v6 > 0) != dual {
					t.Fatalf("%d IPv6 SNAT entries on a lab of %s", v6, p.Name)
				}
				checkCTNAT(t, cts, nats)

				code, out, _ = run(t, "", append([]string{"egress", "list", "-o", "json"}, node...)...)
				if code != 0 || len(jsonLines(t, out)) == 0 {
					t.Fatalf("egress list: %d %s", code, out)
				}
				checkEgressMaps(t, p, state, jsonLines(t, out), dual)
				code, _, errOut = run(t, "", "validate", "--cilium-version", p.Name, filepath.Join(state, lab.PoliciesFile))
				if code != 0 {
					t.Errorf("the lab's policies do not validate: %s", errOut)
				}

				code, out, errOut = run(t, "", "lab", "down", "--bpffs", dir)
				if code != 0 {
					t.Fatalf("lab down: %s %s", out, errOut)
				}
				if ok, _ := bpffs.IsMounted(dir); ok {
					t.Error("bpffs still mounted")
				}
				for _, name := range st.Maps {
					if _, err := os.Stat(filepath.Join(dir, ctmap.GlobalsDir, name)); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s left behind", name)
					}
				}
				if left, _ := os.ReadDir(dir); len(left) != 0 {
					t.Errorf("left behind in %s: %v", dir, left)
				}
				if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("state dir left behind: %v", err)
				}
			})
		}
	}
}

// checkCTNAT checks ct list and nat list output against each other, as
// Cilium's GC relies on them: every outbound CT entry has its SNAT egress
// entry (the CT key with its addresses swapped) translating to an address
// of its family, and that entry's reverse entry back to the pod; every
// egress SNAT entry has its CT entry and its reverse entry.
func checkCTNAT(t *testing.T, cts, nats []map[string]any) {
	t.Helper()
	ctKeys := map[string]bool{}
	var outbound []ctmap.Tuple
	for _, r := range cts {
		key := r["raw"].(map[string]any)["keyHex"].(string)
		ctKeys[key] = true
		if r["tuple_flags"] == "OUT" {
			k, _ := ctmap.DecodeTuple(mustHex(t, key))
			outbound = append(outbound, k)
		}
	}
	reverse := map[string]bool{}
	natValue := map[string]ctmap.NATEntry{} // by key
	for _, r := range nats {
		raw := r["raw"].(map[string]any)
		v, err := ctmap.DecodeNATEntry(mustHex(t, raw["valueHex"].(string)))
		if err != nil {
			t.Fatal(err)
		}
		natValue[raw["keyHex"].(string)] = v
		if r["direction"] == "reverse" {
			reverse[fmt.Sprintf("%v:%v>%v:%v", r["dstIP"], r["dstPort"], r["srcIP"], r["srcPort"])] = true
		}
	}
	for _, k := range outbound {
		eg, _ := ctmap.NATKeysForCT(k)
		v, ok := natValue[fmt.Sprintf("%x", eg.Bytes())]
		if !ok || v.Addr().Is4() != k.DAddr.Is4() {
			t.Fatalf("outbound CT entry %+v has no SNAT egress entry of its family (%v)", k, v.Addr())
		}
		rk := ctmap.ReverseKey(eg, &v)
		if rv, ok := natValue[fmt.Sprintf("%x", rk.Bytes())]; !ok || rv.Addr() != k.DAddr || rv.Port() != k.SPort {
			t.Fatalf("outbound CT entry %+v has no SNAT reverse entry back to its pod", k)
		}
	}
	for _, r := range nats {
		if r["direction"] != "egress" {
			continue
		}
		k, _ := ctmap.DecodeTuple(mustHex(t, r["raw"].(map[string]any)["keyHex"].(string)))
		if !ctKeys[fmt.Sprintf("%x", k.SwapAddrs().Bytes())] {
			t.Fatalf("egress NAT entry %v has no CT entry", r)
		}
		if !reverse[fmt.Sprintf("%v:%v>%v:%v", r["toIP"], r["toPort"], r["dstIP"], r["dstPort"])] {
			t.Fatalf("egress NAT entry %v has no reverse entry", r)
		}
	}
}

// checkEgressMaps: each egress-policy map holds exactly the keys of its
// family that the lab's manifests resolve to (pod address, destination or
// excluded CIDR), with the node as gateway; a dual-stack lab's
// CiliumEndpoints carry an IPv6 address beside the IPv4 one and its
// policies IPv6 CIDRs, an IPv4-only lab's neither.
func checkEgressMaps(t *testing.T, p *profiles.Profile, state string, recs []map[string]any, dual bool) {
	t.Helper()
	var pols []*policy.Policy
	var eps []*policy.Endpoint
	for _, f := range []string{lab.PoliciesFile, lab.EndpointsFile} {
		data, err := os.ReadFile(filepath.Join(state, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := policy.NewSource(f, data).EachObject(func(p *policy.Policy) { pols = append(pols, p) },
			func(e *policy.Endpoint) { eps = append(eps, e) }, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range eps {
		if len(e.IPs) != map[bool]int{false: 1, true: 2}[dual] || !e.IPs[0].Is4() || (dual && !e.IPs[1].Is6()) {
			t.Fatalf("endpoint %s/%s has addresses %v (dual-stack %v)", e.Namespace, e.Name, e.IPs, dual)
		}
	}
	type key struct {
		src, dst string
		excluded bool
	}
	want := map[int]map[key]bool{4: {}, 6: {}}
	for _, pol := range pols {
		spec, err := pol.ParseSpec()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range spec.Keys(eps, 4, 6) {
			fam := map[bool]int{true: 4, false: 6}[k.Pod.Is4()]
			want[fam][key{k.Pod.String(), k.Dest.String(), k.Excluded}] = true
		}
	}
	if len(want[4]) == 0 || (len(want[6]) > 0) != dual {
		t.Fatalf("the manifests resolve to %d IPv4 and %d IPv6 keys (dual-stack %v)", len(want[4]), len(want[6]), dual)
	}
	got := map[string]map[key]bool{}
	for _, r := range recs {
		m := r["map"].(string)
		if got[m] == nil {
			got[m] = map[key]bool{}
		}
		k := key{r["srcIP"].(string), r["dstCIDR"].(string), r["excluded"].(bool)}
		if got[m][k] {
			t.Fatalf("%s: %v twice", m, k)
		}
		got[m][k] = true
		if gw := r["gatewayIP"]; (k.excluded && gw != "0.0.0.1") || (!k.excluded && gw != lab.NodeIP.String()) {
			t.Fatalf("%s: entry %v", m, r)
		}
	}
	for _, s := range p.Maps {
		if s.Role != profiles.RoleEgressPolicy {
			continue
		}
		if len(got[s.Name]) != len(want[s.Family]) {
			t.Fatalf("%s holds %d keys, the manifests resolve to %d", s.Name, len(got[s.Name]), len(want[s.Family]))
		}
		for k := range want[s.Family] {
			if !got[s.Name][k] {
				t.Fatalf("%s lacks %v", s.Name, k)
			}
		}
		delete(got, s.Name)
	}
	if len(got) != 0 {
		t.Fatalf("entries of maps the profile does not have: %v", got)
	}
}

// countFamily counts the elements of a profile's maps of some roles and
// one address family directly.
func countFamily(t *testing.T, fs string, p *profiles.Profile, family int, roles ...profiles.MapRole) int {
	t.Helper()
	n := 0
	for _, s := range p.Maps {
		if s.Family != family || !slices.Contains(roles, s.Role) {
			continue
		}
		m, err := ctmap.Open(fs, s, false)
		if err != nil {
			t.Fatal(err)
		}
		err = m.Walk(func(k, v []byte) error { n++; return nil })
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// countEntries counts the elements of a profile's maps of a role directly.
func countEntries(t *testing.T, fs string, p *profiles.Profile, role profiles.MapRole) int {
	t.Helper()
	n := 0
	for _, s := range p.Maps {
		if s.Role != role {
			continue
		}
		m, err := ctmap.Open(fs, s, false)
		if err != nil {
			t.Fatal(err)
		}
		var key any // nil: the first key
		for {
			next, err := m.NextKeyBytes(key)
			if err != nil {
				t.Fatal(err)
			}
			if next == nil {
				break
			}
			key = next
			n++
		}
		m.Close()
	}
	return n
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	_, err := fmt.Sscanf(s, "%x", &b)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCTListTimes writes entries with known lifetimes and checks the
// remaining and idle times ct list prints, in both clock modes.
func TestCTListTimes(t *testing.T) {
	fs := testutil.PrivateBPFFS(t)
	res, _ := profiles.Resolve("1.17.8")
	spec, _ := res.Profile.Map(profiles.RoleCTTCP, 4)
	m, err := ctmap.Create(fs, spec, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	anySpec, _ := res.Profile.Map(profiles.RoleCTAny, 4)
	a, err := ctmap.Create(fs, anySpec, 64)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	state := t.TempDir() // no agent-runtime-config.json: defaults and --clock
	for _, tt := range []struct {
		clock       nodeconfig.Clock
		args        []string
		remaining   float64 // seconds
		idle        float64
		expiredLeft float64
	}{
		{nodeconfig.Clock{Mode: nodeconfig.Ktime}, nil, 100, 7900, -30},
		{nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: 250}, []string{"--clock", "jiffies", "--hz", "250"}, 102.4, 7812*1.024 - 102.4, -30.72},
	} {
		t.Run(tt.clock.Mode.String(), func(t *testing.T) {
			now, err := ctmap.Now(tt.clock)
			if err != nil {
				t.Fatal(err)
			}
			put := func(sport uint16, lifetime uint32) {
				k := ctmap.Tuple{DAddr: netip.MustParseAddr("10.0.1.5"), SAddr: netip.MustParseAddr("93.184.216.34"), DPort: 443, SPort: sport, NextHdr: ctmap.ProtoTCP}
				var v ctmap.CTEntry
				v.SetLifetime(lifetime)
				v.SetFlags(ctmap.FlagSeenNonSyn)
				if err := m.Put(k.Bytes(), v[:]); err != nil {
					t.Fatal(err)
				}
			}
			put(43210, now+100)
			put(43211, now-30)
			args := append([]string{"ct", "list", "-o", "json", "--bpffs", fs, "--cilium-state-dir", state, "--cilium-version", "1.17.8"}, tt.args...)
			code, out, errOut := run(t, "", args...)
			if code != 0 {
				t.Fatalf("%d %s", code, errOut)
			}
			recs := jsonLines(t, out)
			if len(recs) != 2 {
				t.Fatalf("%d records", len(recs))
			}
			for _, r := range recs {
				if r["srcIP"] != "10.0.1.5" || r["dstIP"] != "93.184.216.34" || r["dstPort"] != 443.0 || r["state"] != "established" {
					t.Errorf("record %v", r)
				}
				want := tt.remaining
				if r["srcPort"] == 43211.0 {
					want = tt.expiredLeft
				}
				// One clock unit of slack: the clock may tick between writing and listing.
				if got := r["remainingSeconds"].(float64); math.Abs(got-want) > tt.clock.Unit().Seconds()+0.01 {
					t.Errorf("remaining %v, want %v", got, want)
				}
			}
			code, out, _ = run(t, "", append(args, "--expired")...)
			if recs := jsonLines(t, out); code != 0 || len(recs) != 1 || recs[0]["srcPort"] != 43211.0 {
				t.Errorf("--expired gave %v", recs)
			}
			clearMap(m)
		})
	}
}

// TestCTListIPv6 lists an IPv6 entry of cilium_ct6_global.
func TestCTListIPv6(t *testing.T) {
	fs := testutil.PrivateBPFFS(t)
	res, _ := profiles.Resolve("1.18")
	for _, s := range res.Profile.Maps {
		if s.Role == profiles.RoleCTTCP || s.Role == profiles.RoleCTAny {
			m, err := ctmap.Create(fs, s, 64)
			if err != nil {
				t.Fatal(err)
			}
			if s.Name == "cilium_ct6_global" {
				k := ctmap.Tuple{DAddr: netip.MustParseAddr("fd00::5"), SAddr: netip.MustParseAddr("2001:db8::22"), DPort: 443, SPort: 40000, NextHdr: ctmap.ProtoTCP}
				var v ctmap.CTEntry
				v.SetFlags(ctmap.FlagSeenNonSyn)
				if err := m.Put(k.Bytes(), v[:]); err != nil {
					t.Fatal(err)
				}
			}
			m.Close()
		}
	}
	code, out, errOut := run(t, "", "ct", "list", "-o", "json", "--bpffs", fs, "--cilium-state-dir", t.TempDir(), "--cilium-version", "1.18")
	recs := jsonLines(t, out)
	if code != 0 || len(recs) != 1 || recs[0]["map"] != "cilium_ct6_global" || recs[0]["srcIP"] != "fd00::5" || recs[0]["dstIP"] != "2001:db8::22" {
		t.Fatalf("exit %d %v %s", code, recs, errOut)
	}
}

func clearMap(m *ctmap.Map) {
	var keys [][]byte
	_ = m.Walk(func(k, v []byte) error { keys = append(keys, append([]byte(nil), k...)); return nil })
	for _, k := range keys {
		_ = m.Delete(k)
	}
}

func TestListFilters(t *testing.T) {
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18", "--flows", "2000", "--clock", "jiffies", "--hz", "250"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	node := []string{"ct", "list", "-o", "json", "--bpffs", dir, "--cilium-state-dir", dir + ".state", "--cilium-version", "1.18"}
	for _, tt := range []struct {
		args []string
		ok   func(map[string]any) bool
	}{
		{[]string{"--state", "closing"}, func(r map[string]any) bool { return r["state"] == "closing" }},
		{[]string{"--proto", "udp"}, func(r map[string]any) bool { return r["proto"] == "UDP" }},
		{[]string{"--expired"}, func(r map[string]any) bool { return r["remainingSeconds"].(float64) < 0 }},
		{[]string{"--idle-over", "30m"}, func(r map[string]any) bool { return r["idleSeconds"].(float64) >= 1800 }},
		{[]string{"--src", "10.1.0.0/28"}, func(r map[string]any) bool { return strings.HasPrefix(r["srcIP"].(string), "10.1.0.") }},
		{[]string{"--dst", "198.18.0.0/15", "--state", "established"}, func(r map[string]any) bool {
			return strings.HasPrefix(r["dstIP"].(string), "198.1") && r["state"] == "established"
		}},
	} {
		code, out, errOut := run(t, "", append(node, tt.args...)...)
		recs := jsonLines(t, out)
		if code != 0 || len(recs) == 0 {
			t.Errorf("%v: exit %d, %d records %s", tt.args, code, len(recs), errOut)
		}
		for _, r := range recs {
			if !tt.ok(r) {
				t.Fatalf("%v let through %v", tt.args, r)
			}
		}
	}
	for _, args := range [][]string{{"--state", "open"}, {"--src", "10.1.0.0/99"}, {"--proto", "gre"}, {"-o", "csv"}} {
		if code, _, _ := run(t, "", append(node, args...)...); code != ExitUsage {
			t.Errorf("%v: exit %d, want usage error", args, code)
		}
	}
	// Table output works, and --no-headers drops the header.
	args := append(node[:0:0], node...)
	args[3] = "table"
	if code, out, _ := run(t, "", append(args, "--no-headers", "--state", "syn")...); code != 0 || strings.Contains(out, "PROTO") || !strings.Contains(out, "syn") {
		t.Errorf("table --no-headers: %s", out)
	}
}

// TestListRefusesMismatchedMap: a CT map of the wrong shape is refused
// with exit 1 and a message naming the difference; missing maps are exit 3.
func TestListRefusesMismatchedMap(t *testing.T) {
	fs := testutil.PrivateBPFFS(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "cilium_ct4_glob", Type: ebpf.LRUHash, KeySize: 14, ValueSize: 64, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	os.MkdirAll(filepath.Join(fs, ctmap.GlobalsDir), 0o700)
	if err := m.Pin(filepath.Join(fs, ctmap.GlobalsDir, "cilium_ct4_global")); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "", "ct", "list", "--bpffs", fs, "--cilium-state-dir", t.TempDir(), "--cilium-version", "1.18")
	if code != ExitEnv || !strings.Contains(errOut, "value size is 64, the profile expects 56") {
		t.Errorf("exit %d: %s", code, errOut)
	}
	code, _, errOut = run(t, "", "ct", "list", "--bpffs", t.TempDir(), "--cilium-state-dir", t.TempDir(), "--cilium-version", "1.18")
	if code != ExitEnv || !strings.Contains(errOut, "not pinned") {
		t.Errorf("missing maps: exit %d: %s", code, errOut)
	}
}

// TestLabDrive refreshes, opens and closes flows like a datapath: IPv6
// flows too on a dual-stack lab, none on an IPv4-only one; the new flows
// have their SNAT entries.
func TestLabDrive(t *testing.T) {
	for _, version := range []string{"main", "1.17.8"} {
		t.Run(version, func(t *testing.T) {
			dir := labDir(t)
			if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", version, "--flows", "1000"); code != 0 {
				t.Fatalf("lab up: %s %s", out, errOut)
			}
			defer run(t, "", "lab", "down", "--bpffs", dir)
			res, _ := profiles.Resolve(version)
			dual := lab.DualStack(res.Profile)
			node := []string{"--bpffs", dir, "--cilium-state-dir", dir + ".state", "--cilium-version", version}
			list := func(what string, args ...string) []map[string]any {
				t.Helper()
				code, out, errOut := run(t, "", append(append([]string{what, "list", "-o", "json"}, node...), args...)...)
				if code != 0 {
					t.Fatalf("%s list: %s", what, errOut)
				}
				return jsonLines(t, out)
			}
			ipv6 := func(recs []map[string]any) (n int) {
				for _, r := range recs {
					if strings.Contains(r["srcIP"].(string), ":") {
						n++
					}
				}
				return n
			}
			v6Before, idle6Before := ipv6(list("ct")), ipv6(list("ct", "--idle-over", "1m"))

			d, err := lab.NewDriver(dir + ".state")
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			before := d.Flows()
			s, err := d.Step(500, 100, 50)
			if err != nil {
				t.Fatal(err)
			}
			if s.Opened < 90 || s.Refreshed == 0 || s.Closed == 0 || d.Flows() != before+s.Opened-s.Gone {
				t.Fatalf("step: %+v, flows %d → %d", s, before, d.Flows())
			}
			// After refreshing nearly every flow, few are idle long (a minute: a
			// busy machine may take seconds between the step and the listing).
			idle := list("ct", "--idle-over", "1m")
			if n := len(idle); n >= before {
				t.Errorf("%d of %d flows still idle after a refresh step", n, before)
			}
			cts := list("ct")
			checkCTNAT(t, cts, list("nat"))
			v6After, idle6After := ipv6(cts), ipv6(idle)
			if dual && (v6After <= v6Before || idle6After >= idle6Before) {
				t.Errorf("IPv6 flows: %d → %d, idle %d → %d: none opened or refreshed", v6Before, v6After, idle6Before, idle6After)
			}
			if !dual && v6After != 0 {
				t.Errorf("%d IPv6 flows on an IPv4-only lab", v6After)
			}

			code, out, _ := run(t, "", "lab", "drive", "--bpffs", dir, "--rate", "200", "--duration", "1500ms", "--interval", "500ms")
			if code != 0 || !strings.Contains(out, "refreshed") {
				t.Errorf("lab drive: %d %s", code, out)
			}
		})
	}
}

// labDir is a folder for a lab's own bpffs mount (and, beside it, its state
// directory); the mount is removed after the test even if lab down is not
// reached.
func labDir(t testing.TB) string {
	t.Helper()
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() {
		if ok, _ := bpffs.IsMounted(dir); ok {
			_ = bpffs.Unmount(dir)
		}
	})
	return dir
}

// TestCTJSONPathsAgree: the fast JSON encoder of ct list and the generic
// record encoder (used for YAML) write the same object.
func TestCTJSONPathsAgree(t *testing.T) {
	res, _ := profiles.Resolve("1.14")
	layout := res.Profile.CTEntry
	c := ctmap.CT{Key: ctmap.Tuple{DAddr: netip.MustParseAddr("10.0.1.5"), SAddr: netip.MustParseAddr("93.184.216.34"), DPort: 443, SPort: 43210, NextHdr: ctmap.ProtoTCP}}
	for i := range c.Value {
		c.Value[i] = byte(i * 3)
	}
	spec, _ := res.Profile.Map(profiles.RoleCTTCP, 4)
	m := &ctmap.Map{Spec: spec}
	times := ctmap.NewTimes(nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: 250}, c.Value.Lifetime()-7, map[profiles.State]time.Duration{})
	var outs []string
	for _, format := range []string{"json", "yaml"} {
		var buf strings.Builder
		pr, err := newPrinter(&printer.Flags{Spec: listSpec, Output: format})
		if err != nil {
			t.Fatal(err)
		}
		out := newOutput(&buf, pr, "CTEntryList", nil, nil)
		o := &listOptions{proto: -1, state: -1, printer: pr}
		if err := o.ctEntry(out, m, c.Key.Bytes(), &c, times, layout); err != nil {
			t.Fatal(err)
		}
		out.close()
		outs = append(outs, buf.String())
	}
	var viaJSON map[string]any
	dec := json.NewDecoder(strings.NewReader(outs[0]))
	dec.UseNumber() // u64 counters do not fit a float64
	if err := dec.Decode(&viaJSON); err != nil {
		t.Fatal(err)
	}
	var viaRecord map[string]any
	if err := yaml.Unmarshal([]byte(outs[1]), &viaRecord); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(viaJSON)
	b, _ := json.Marshal(viaRecord)
	if string(a) != string(b) {
		t.Errorf("json and yaml differ:\n%s\n%s", a, b)
	}
}
