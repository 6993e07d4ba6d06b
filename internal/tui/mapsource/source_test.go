package mapsource

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/internal/tui"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

const now = 100000 // the datapath clock of the tests, in seconds (ktime)

var (
	pod    = netip.MustParseAddr("10.1.0.5")
	other  = netip.MustParseAddr("10.1.0.6")
	egress = netip.MustParseAddr("192.168.100.10")
	// The IPv6 side of a dual-stack node: pod's IPv6 address and the
	// egress interface's IPv6 address.
	pod6    = netip.MustParseAddr("fd00:10:1::a01:5")
	egress6 = netip.MustParseAddr("2001:db8:ff00::a")
	node    = map[profiles.State]time.Duration{
		profiles.StateSyn: 60 * time.Second, profiles.StateEstablished: 8000 * time.Second,
		profiles.StateClosing: 10 * time.Second, profiles.StateNonTCP: 60 * time.Second,
	}
)

type lab struct {
	fs      string
	ct, any *ctmap.Map
	nat     *ctmap.Map
	// The IPv6 maps.
	ct6, any6, nat6 *ctmap.Map
	src             *Source
}

func newLab(t *testing.T) *lab {
	t.Helper()
	fs := testutil.PrivateBPFFS(t)
	r, err := profiles.Resolve("1.18.3")
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{fs: fs}
	for _, x := range []struct {
		dst    **ctmap.Map
		role   profiles.MapRole
		family int
	}{
		{&l.ct, profiles.RoleCTTCP, 4}, {&l.any, profiles.RoleCTAny, 4}, {&l.nat, profiles.RoleSNAT, 4},
		{&l.ct6, profiles.RoleCTTCP, 6}, {&l.any6, profiles.RoleCTAny, 6}, {&l.nat6, profiles.RoleSNAT, 6},
	} {
		spec, _ := r.Profile.Map(x.role, x.family)
		m, err := ctmap.Create(fs, spec, 1024)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		*x.dst = m
	}
	l.src = &Source{
		BPFFS: fs, Profile: r.Profile, Clock: nodeconfig.Clock{Mode: nodeconfig.Ktime}, Timeouts: node,
		Now:      func() time.Time { return time.Unix(1700000000, 0) },
		ClockNow: func(nodeconfig.Clock) (uint32, error) { return now, nil },
	}
	return l
}

// flow writes a CT entry idle for idle seconds and, with snatPort, its
// SNAT egress and reverse entries, in the maps of its family (an IPv6
// flow leaves through egress6).
func (l *lab) flow(t *testing.T, from netip.Addr, sport uint16, dst string, dport uint16, proto uint8, st profiles.State, idle uint32, flags uint8, snatPort uint16) {
	t.Helper()
	k := ctmap.Tuple{DAddr: from, SAddr: netip.MustParseAddr(dst), DPort: dport, SPort: sport, NextHdr: proto, Flags: flags}
	var v ctmap.CTEntry
	v.SetLifetime(now + uint32(node[st]/time.Second) - idle)
	switch st {
	case profiles.StateEstablished:
		v.SetFlags(ctmap.FlagSeenNonSyn)
	case profiles.StateClosing:
		v.SetFlags(ctmap.FlagSeenNonSyn | ctmap.FlagRxClosing | ctmap.FlagTxClosing)
	}
	m, nat, to := l.ct, l.nat, egress
	if from.Is6() {
		m, nat, to = l.ct6, l.nat6, egress6
	}
	if proto != ctmap.ProtoTCP {
		m = map[bool]*ctmap.Map{false: l.any, true: l.any6}[from.Is6()]
	}
	if err := m.Put(k.Bytes(), v[:]); err != nil {
		t.Fatal(err)
	}
	if snatPort == 0 {
		return
	}
	eg, _ := ctmap.NATKeysForCT(k)
	ev := ctmap.NewNATEntry(1, true, to, snatPort)
	rv := ctmap.NewNATEntry(1, true, from, sport)
	if err := nat.Put(eg.Bytes(), ev.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := nat.Put(ctmap.ReverseKey(eg, &ev).Bytes(), rv.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshot checks every number of a snapshot against a node whose
// entries are known, while an apply holds egwct's lock.
func TestSnapshot(t *testing.T) {
	l := newLab(t)
	est := profiles.StateEstablished
	l.flow(t, pod, 40001, "198.18.0.7", 443, ctmap.ProtoTCP, est, 10, 0, 50001)   // fine
	l.flow(t, pod, 40002, "198.18.0.7", 443, ctmap.ProtoTCP, est, 400, 0, 50002)  // over the policy's 300 s
	l.flow(t, pod, 40003, "198.18.0.9", 443, ctmap.ProtoTCP, est, 8005, 0, 50003) // expired: Cilium's GC has not run
	l.flow(t, pod, 40004, "198.18.0.7", 443, ctmap.ProtoTCP, est, 299, 0, 50004)  // 1 s left under the policy
	l.flow(t, other, 40005, "8.8.8.8", 53, ctmap.ProtoUDP, profiles.StateNonTCP, 59, 0, 0)
	l.flow(t, pod, 40006, "198.18.0.7", 443, ctmap.ProtoTCP, est, 5, ctmap.TupleIn, 0) // inbound: no policy

	// No state yet: a live CT viewer with no policies.
	snap, err := l.src.Snapshot(tui.Query{Window: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Policies) != 1 || snap.Policies[0].Total != 6 || !strings.Contains(snap.Node.Sweeper, "no policies applied") {
		t.Fatalf("without state: %+v %q", snap.Policies, snap.Node.Sweeper)
	}

	st, err := sweep.OpenState(l.fs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close() // held during the snapshots: top needs no lock
	dest := netip.MustParsePrefix("198.18.0.0/24")
	set := []sweep.Policy{{Name: "pay", Timeouts: [4]uint32{0, 300, 0, 0}, Keys: []policy.Key{{Pod: pod, Dest: dest}}}}
	if err := st.Replace(set); err != nil {
		t.Fatal(err)
	}

	snap, err = l.src.Snapshot(tui.Query{Window: 2 * time.Second, FlowsOf: "pay", Flows: true})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Banner != "" {
		t.Errorf("banner %q", snap.Banner)
	}
	if want := fmt.Sprintf("1 policies, 1 keys in force; no egwct agent running: nothing sweeps until the next apply; no sweep yet"); snap.Node.Sweeper != want {
		t.Errorf("sweeper %q, want %q", snap.Node.Sweeper, want)
	}
	if len(snap.Node.Warnings) != 0 {
		t.Errorf("warnings %q", snap.Node.Warnings)
	}
	// Policies the agent refused are said, their text made safe.
	if err := st.SetOutcomes([]sweep.PolicyOutcome{{Name: "pay", Outcome: "kept", Reason: "unknown-key at cegp/pay:7:7: \x1b[31m"}, {Name: "old", Outcome: "refused", Reason: "bad-duration"}}); err != nil {
		t.Fatal(err)
	}
	snap, err = l.src.Snapshot(tui.Query{Window: 2 * time.Second, FlowsOf: "pay", Flows: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"policy pay refused, its last valid timeouts stay in force: unknown-key at cegp/pay:7:7: ?[31m",
		"policy old refused, its flows keep the node's timeouts: bad-duration"}; !slices.Equal(snap.Node.Warnings, want) {
		t.Errorf("warnings\n got %q\nwant %q", snap.Node.Warnings, want)
	}
	if len(snap.Policies) != 2 {
		t.Fatalf("policies %+v", snap.Policies)
	}
	none, pay := snap.Policies[0], snap.Policies[1]
	want := tui.Policy{
		Name: "pay", Flows: [4]int{0, 4, 0, 0}, Total: 4, Over: 2, Expired: 1, Expiring: 1,
		Timeouts: [4]time.Duration{0, 300 * time.Second, 0, 0}, WorstPorts: 3, WorstDest: "192.168.100.10→198.18.0.7:443",
		IdleP50: 288 * time.Second, IdleP99: 7936 * time.Second,
	}
	if pay != want {
		t.Errorf("pay:\n got %+v\nwant %+v", pay, want)
	}
	if none.Name != tui.NoPolicy || none.Total != 2 || none.Flows[profiles.StateNonTCP] != 1 || none.Expiring != 1 || none.Expired != 0 {
		t.Errorf("no policy: %+v", none)
	}
	if len(snap.Ports) != 2 || snap.Ports[0].Used != 3 || snap.Ports[0].Dst.String() != "198.18.0.7" ||
		len(snap.Ports[0].Policies) != 1 || snap.Ports[0].Policies[0] != "pay" {
		t.Errorf("ports %+v", snap.Ports)
	}
	if snap.FlowsOf != "pay" || len(snap.Flows) != 4 {
		t.Fatalf("flows of %q: %+v", snap.FlowsOf, snap.Flows)
	}
	for _, f := range snap.Flows {
		if !f.HasPolicy || f.PolicyRemaining != 300*time.Second-f.Idle || f.Remaining != 8000*time.Second-f.Idle {
			t.Errorf("flow times %+v", f)
		}
		if f.Egress.Addr() != egress || f.Egress.Port() != 50000+f.Src.Port()-40000 {
			t.Errorf("flow egress %+v", f)
		}
	}
	fills := map[string]int{}
	for _, m := range snap.Node.Maps {
		fills[m.Name] = m.Entries
	}
	if fills["cilium_ct4_global"] != 5 || fills["cilium_ct_any4_global"] != 1 || fills["cilium_snat_v4_external"] != 8 {
		t.Errorf("fills %v", fills)
	}

	// The SNAT map is read again only when due (or the set changes).
	l.src.SNATEvery = time.Hour
	l.flow(t, pod, 40007, "198.18.0.7", 443, ctmap.ProtoTCP, est, 1, 0, 50007)
	snap, _ = l.src.Snapshot(tui.Query{Window: 2 * time.Second, FlowsOf: "pay", Flows: true})
	if snap.Ports[0].Used != 3 || snap.Node.PortsAge <= 0 || snap.Policies[1].Total != 5 {
		t.Errorf("cached ports: %+v, age %v", snap.Ports[0], snap.Node.PortsAge)
	}
	l.src.SNATEvery = -1
	snap, _ = l.src.Snapshot(tui.Query{Window: 2 * time.Second, FlowsOf: "pay", Flows: true})
	if snap.Ports[0].Used != 4 || snap.Node.PortsAge != 0 || snap.Policies[1].WorstPorts != 4 {
		t.Errorf("fresh ports: %+v, age %v", snap.Ports[0], snap.Node.PortsAge)
	}

	// Cilium restarts: its CT map vanishes, then comes back.
	os.Remove(l.ct.Path)
	snap, err = l.src.Snapshot(tui.Query{Window: time.Second})
	if err != nil || !strings.Contains(snap.Banner, "cilium_ct4_global is missing") {
		t.Fatalf("missing map: %v %q", err, snap.Banner)
	}
	r, _ := profiles.Resolve("1.18.3")
	spec, _ := r.Profile.Map(profiles.RoleCTTCP, 4)
	m, err := ctmap.Create(l.fs, spec, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	snap, err = l.src.Snapshot(tui.Query{Window: time.Second})
	if err != nil || snap.Banner != "" || snap.Policies[1].Total != 0 || snap.Policies[0].Total != 1 || snap.Ports[0].Used != 4 {
		t.Errorf("recreated map: %v %q %+v", err, snap.Banner, snap.Policies)
	}

	l.src.SNATEvery = time.Hour
	// A re-created SNAT map is read at once.
	natSpec, _ := r.Profile.Map(profiles.RoleSNAT, 4)
	os.Remove(l.nat.Path)
	nat2, err := ctmap.Create(l.fs, natSpec, 1024)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ = l.src.Snapshot(tui.Query{Window: 2 * time.Second, FlowsOf: "pay", Flows: true})
	if len(snap.Ports) != 0 || snap.Node.PortsAge != 0 {
		t.Errorf("re-created SNAT map: ports %+v, age %v", snap.Ports, snap.Node.PortsAge)
	}
	nat2.Close()
}

// TestSnapshotIPv6: IPv6 flows count toward the policy whose IPv6 keys
// hold them, judged by the sweeper's matcher like IPv4 ones; their SNAT
// ports are counted per IPv6 destination; while the policies in force
// have no IPv6 keys, they are shown under (no policy) with a warning.
func TestSnapshotIPv6(t *testing.T) {
	l := newLab(t)
	est, udp := profiles.StateEstablished, profiles.StateNonTCP
	flows := []struct {
		from  netip.Addr
		sport uint16
		dst   string
		proto uint8
		st    profiles.State
		idle  uint32
		flags uint8
		snat  uint16
		want  string // the row it belongs to once IPv6 keys are in force
	}{
		{pod, 40001, "198.18.0.7", ctmap.ProtoTCP, est, 10, 0, 50001, "pay"},
		{pod6, 40002, "2001:db8:1::7", ctmap.ProtoTCP, est, 400, 0, 50002, "pay"}, // over the policy's 300 s
		{pod6, 40003, "2001:db8:1::7", ctmap.ProtoTCP, est, 20, 0, 50003, "pay"},
		{pod6, 40004, "2001:db8:1::9", ctmap.ProtoTCP, est, 299, 0, 50004, "pay"},         // 1 s left under the policy
		{pod6, 40005, "2001:db8:1::ff", ctmap.ProtoTCP, est, 500, 0, 50005, tui.NoPolicy}, // an excluded CIDR
		{pod6, 40006, "2001:db8:2::1", ctmap.ProtoTCP, est, 500, 0, 50006, tui.NoPolicy},  // no destination of the policy
		{pod6, 40007, "2001:db8:1::7", ctmap.ProtoTCP, est, 5, ctmap.TupleIn, 0, tui.NoPolicy},
		{netip.MustParseAddr("fd00:10:1::a01:6"), 40008, "2001:db8:1::7", ctmap.ProtoUDP, udp, 30, 0, 50008, tui.NoPolicy}, // another pod
	}
	for _, f := range flows {
		l.flow(t, f.from, f.sport, f.dst, 443, f.proto, f.st, f.idle, f.flags, f.snat)
	}
	st, err := sweep.OpenState(l.fs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v4Keys := []policy.Key{{Pod: pod, Dest: netip.MustParsePrefix("198.18.0.0/24")}}
	v6Keys := []policy.Key{
		{Pod: pod6, Dest: netip.MustParsePrefix("2001:db8:1::/64")},
		{Pod: pod6, Dest: netip.MustParsePrefix("2001:db8:1::ff/128"), Excluded: true},
	}
	if err := st.Replace([]sweep.Policy{{Name: "pay", Timeouts: [4]uint32{0, 300, 0, 0}, Keys: v4Keys}}); err != nil {
		t.Fatal(err)
	}
	q := tui.Query{Window: 2 * time.Second, FlowsOf: "pay", Flows: true}

	// The pinned set holds IPv4 keys only: every IPv6 flow is of no policy.
	snap, err := l.src.Snapshot(q)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Policies) != 2 || snap.Policies[0].Total != 7 || snap.Policies[1].Total != 1 {
		t.Fatalf("IPv4 keys only: %+v", snap.Policies)
	}
	if want := "7 IPv6 CT entries are shown under (no policy): the policies in force have no IPv6 keys"; !slices.Contains(snap.Node.Warnings, want) {
		t.Errorf("warnings %q, want %q", snap.Node.Warnings, want)
	}

	// With IPv6 keys in force (as the set read from the state will hold
	// once the sweeper handles IPv6), IPv6 flows count toward pay.
	l.src.readSet = func(s *sweep.State) ([]sweep.Policy, error) {
		set, err := s.Set()
		if err == nil && len(set) == 1 {
			set[0].Keys = append(set[0].Keys, v6Keys...)
		}
		return set, err
	}
	snap, err = l.src.Snapshot(q)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]tui.Policy{}
	for _, p := range snap.Policies {
		rows[p.Name] = p
	}
	for _, w := range snap.Node.Warnings {
		if strings.Contains(w, "IPv6") {
			t.Errorf("warning %q with IPv6 keys in force", w)
		}
	}
	for name, want := range map[string]int{"pay": 0, tui.NoPolicy: 0} {
		for _, f := range flows {
			if f.want == name {
				want++
			}
		}
		if rows[name].Total != want {
			t.Errorf("%s: %d flows, want %d (%+v)", name, rows[name].Total, want, rows[name])
		}
	}
	if pay := rows["pay"]; pay.Over != 1 || pay.Expiring != 1 || pay.Flows[est] != 4 ||
		pay.WorstPorts != 2 || pay.WorstDest != "2001:db8:ff00::a→[2001:db8:1::7]:443" {
		t.Errorf("pay: %+v", pay)
	}
	if none := rows[tui.NoPolicy]; none.Over != 0 || none.Flows[udp] != 1 {
		t.Errorf("no policy: %+v", none)
	}
	// Ports per IPv6 destination, with the policies holding them.
	var p6 *tui.Port
	for i, p := range snap.Ports {
		if p.Dst == netip.MustParseAddr("2001:db8:1::7") && p.Proto == ctmap.ProtoTCP {
			p6 = &snap.Ports[i]
		}
	}
	if p6 == nil || p6.Egress != egress6 || p6.DstPort != 443 || p6.Used != 2 || !slices.Equal(p6.Policies, []string{"pay"}) {
		t.Errorf("IPv6 ports %+v in %+v", p6, snap.Ports)
	}
	// The flows of pay, with their SNAT address and port.
	if len(snap.Flows) != 4 {
		t.Fatalf("flows of pay: %+v", snap.Flows)
	}
	for _, f := range snap.Flows {
		want := netip.AddrPortFrom(egress, 50000+f.Src.Port()-40000)
		if f.Src.Addr().Is6() {
			want = netip.AddrPortFrom(egress6, want.Port())
		}
		if f.Egress != want || !f.HasPolicy || f.PolicyRemaining != 300*time.Second-f.Idle {
			t.Errorf("flow %+v, want egress %s", f, want)
		}
	}
	fills := map[string]int{}
	for _, m := range snap.Node.Maps {
		fills[m.Name] = m.Entries
	}
	if fills["cilium_ct6_global"] != 6 || fills["cilium_ct_any6_global"] != 1 || fills["cilium_snat_v6_external"] != 12 {
		t.Errorf("fills %v", fills)
	}
}

// TestQuickFirstFrame: a quick snapshot leaves the SNAT maps for the
// next one and says so; the CT numbers are all there.
func TestQuickFirstFrame(t *testing.T) {
	l := newLab(t)
	l.flow(t, pod, 40001, "198.18.0.7", 443, ctmap.ProtoTCP, profiles.StateEstablished, 10, 0, 50001)
	snap, err := l.src.Snapshot(tui.Query{Window: time.Second, Quick: true})
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Node.PortsPending || len(snap.Ports) != 0 || snap.Policies[0].Total != 1 {
		t.Fatalf("quick: pending %v ports %+v policies %+v", snap.Node.PortsPending, snap.Ports, snap.Policies)
	}
	snap, err = l.src.Snapshot(tui.Query{Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Node.PortsPending || len(snap.Ports) != 1 || snap.Ports[0].Used != 1 {
		t.Fatalf("next: pending %v ports %+v", snap.Node.PortsPending, snap.Ports)
	}
	// Once the SNAT maps were read, a quick query uses what was read.
	snap, _ = l.src.Snapshot(tui.Query{Window: time.Second, Quick: true})
	if snap.Node.PortsPending || len(snap.Ports) != 1 {
		t.Fatalf("quick after a reading: pending %v ports %+v", snap.Node.PortsPending, snap.Ports)
	}
}

// TestOtherSchemaVersion: state pinned by an egwct of another schema
// version is named, not taken for "no policies".
func TestOtherSchemaVersion(t *testing.T) {
	l := newLab(t)
	if err := os.MkdirAll(filepath.Join(l.fs, "egwct", "v2"), 0o700); err != nil {
		t.Fatal(err)
	}
	snap, err := l.src.Snapshot(tui.Query{Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(snap.Node.Sweeper, "another version (v2)") {
		t.Errorf("sweeper %q", snap.Node.Sweeper)
	}
}
