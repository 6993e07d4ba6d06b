package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"go.yaml.in/yaml/v3"

	"github.com/egwct/egwct/internal/bpffs"
	"github.com/egwct/egwct/internal/lab"
	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// jsonLines parses `-o json` output.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("not JSON: %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// TestLabLifecycle builds a lab of every profile with both clocks, lists
// it, checks that what is listed is what is in the maps and consistent,
// and takes it down leaving nothing behind.
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
				ctKeys := map[string]bool{}
				for _, r := range cts {
					raw := r["raw"].(map[string]any)
					for _, f := range p.CTEntry.Fields {
						if _, ok := raw[f.Name]; !ok {
							t.Fatalf("raw lacks %s: %v", f.Name, raw)
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
					if !strings.HasPrefix(r["src_ip"].(string), "10.1.") || r["tuple_flags"] == "IN" {
						t.Fatalf("orientation: %v", r)
					}
					ctKeys[raw["key_hex"].(string)] = true
				}

				code, out, _ = run(t, "", append([]string{"nat", "list", "-o", "json"}, node...)...)
				if code != 0 {
					t.Fatal("nat list failed")
				}
				nats := jsonLines(t, out)
				if want := countEntries(t, dir, p, profiles.RoleSNAT); len(nats) != want {
					t.Fatalf("nat list printed %d entries, the maps hold %d", len(nats), want)
				}
				reverse := map[string]bool{}
				for _, r := range nats {
					if r["direction"] == "reverse" {
						reverse[fmt.Sprintf("%v:%v>%v:%v", r["dst_ip"], r["dst_port"], r["src_ip"], r["src_port"])] = true
					}
				}
				for _, r := range nats {
					if r["direction"] != "egress" {
						continue
					}
					// Every egress SNAT entry has its CT entry (addresses
					// swapped) and its reverse entry.
					k, _ := ctmap.DecodeTuple(mustHex(t, r["raw"].(map[string]any)["key_hex"].(string)))
					if !ctKeys[fmt.Sprintf("%x", k.SwapAddrs().Bytes())] {
						t.Fatalf("egress NAT entry %v has no CT entry", r)
					}
					if !reverse[fmt.Sprintf("%v:%v>%v:%v", r["to_ip"], r["to_port"], r["dst_ip"], r["dst_port"])] {
						t.Fatalf("egress NAT entry %v has no reverse entry", r)
					}
				}

				code, out, _ = run(t, "", append([]string{"egress", "list", "-o", "json"}, node...)...)
				if code != 0 || len(jsonLines(t, out)) == 0 {
					t.Fatalf("egress list: %d %s", code, out)
				}
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
				if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("state dir left behind: %v", err)
				}
			})
		}
	}
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
				if r["src_ip"] != "10.0.1.5" || r["dst_ip"] != "93.184.216.34" || r["dst_port"] != 443.0 || r["state"] != "established" {
					t.Errorf("record %v", r)
				}
				want := tt.remaining
				if r["src_port"] == 43211.0 {
					want = tt.expiredLeft
				}
				// One clock unit of slack: the clock may tick between writing and listing.
				if got := r["remaining_s"].(float64); math.Abs(got-want) > tt.clock.Unit().Seconds()+0.01 {
					t.Errorf("remaining %v, want %v", got, want)
				}
			}
			code, out, _ = run(t, "", append(args, "--expired")...)
			if recs := jsonLines(t, out); code != 0 || len(recs) != 1 || recs[0]["src_port"] != 43211.0 {
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
	if code != 0 || len(recs) != 1 || recs[0]["map"] != "cilium_ct6_global" || recs[0]["src_ip"] != "fd00::5" || recs[0]["dst_ip"] != "2001:db8::22" {
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
		{[]string{"--expired"}, func(r map[string]any) bool { return r["remaining_s"].(float64) < 0 }},
		{[]string{"--idle-over", "30m"}, func(r map[string]any) bool { return r["idle_s"].(float64) >= 1800 }},
		{[]string{"--src", "10.1.0.0/28"}, func(r map[string]any) bool { return strings.HasPrefix(r["src_ip"].(string), "10.1.0.") }},
		{[]string{"--dst", "198.18.0.0/15", "--state", "established"}, func(r map[string]any) bool {
			return strings.HasPrefix(r["dst_ip"].(string), "198.1") && r["state"] == "established"
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

// TestLabDrive refreshes, opens and closes flows like a datapath.
func TestLabDrive(t *testing.T) {
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "main", "--flows", "1000"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
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
	// After refreshing nearly every flow, few are idle long.
	code, out, _ := run(t, "", "ct", "list", "-o", "json", "--bpffs", dir, "--cilium-state-dir", dir+".state", "--cilium-version", "main", "--idle-over", "1s")
	if code != 0 {
		t.Fatal("ct list failed")
	}
	if n := len(jsonLines(t, out)); n >= before {
		t.Errorf("%d of %d flows still idle after a refresh step", n, before)
	}
	code, out, _ = run(t, "", "lab", "drive", "--bpffs", dir, "--rate", "200", "--duration", "1500ms", "--interval", "500ms")
	if code != 0 || !strings.Contains(out, "refreshed") {
		t.Errorf("lab drive: %d %s", code, out)
	}
}

// labDir is a folder for a lab's own bpffs mount (and, beside it, its state
// directory); the mount is removed after the test even if lab down is not
// reached.
func labDir(t *testing.T) string {
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
		out := newOutput(&buf, format, false, nil, nil)
		o := &listOptions{proto: -1, state: -1}
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
	var viaRecord []map[string]any
	if err := yaml.Unmarshal([]byte(outs[1]), &viaRecord); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(viaJSON)
	b, _ := json.Marshal(viaRecord[0])
	if string(a) != string(b) {
		t.Errorf("json and yaml differ:\n%s\n%s", a, b)
	}
}
