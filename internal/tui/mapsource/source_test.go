package mapsource

import (
	"fmt"
	"net/netip"
	"os"
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
	node   = map[profiles.State]time.Duration{
		profiles.StateSyn: 60 * time.Second, profiles.StateEstablished: 8000 * time.Second,
		profiles.StateClosing: 10 * time.Second, profiles.StateNonTCP: 60 * time.Second,
	}
)

type lab struct {
	fs      string
	ct, any *ctmap.Map
	nat     *ctmap.Map
	src     *Source
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
		dst  **ctmap.Map
		role profiles.MapRole
	}{{&l.ct, profiles.RoleCTTCP}, {&l.any, profiles.RoleCTAny}, {&l.nat, profiles.RoleSNAT}} {
		spec, _ := r.Profile.Map(x.role, 4)
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
// SNAT egress entry.
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
	m := l.ct
	if proto != ctmap.ProtoTCP {
		m = l.any
	}
	if err := m.Put(k.Bytes(), v[:]); err != nil {
		t.Fatal(err)
	}
	if snatPort == 0 {
		return
	}
	eg, _ := ctmap.NATKeysForCT(k)
	ev := ctmap.NewNATEntry(1, true, egress, snatPort)
	rv := ctmap.NewNATEntry(1, true, from, sport)
	if err := l.nat.Put(eg.Bytes(), ev.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := l.nat.Put(ctmap.ReverseKey(eg, &ev).Bytes(), rv.Bytes()); err != nil {
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
	if want := fmt.Sprintf("1 policies, 1 keys in force; egwct (pid %d) is changing the state; no sweep yet", os.Getpid()); snap.Node.Sweeper != want {
		t.Errorf("sweeper %q, want %q", snap.Node.Sweeper, want)
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

func TestHistogram(t *testing.T) {
	tests := []struct {
		idle     []time.Duration
		p50, p99 time.Duration
	}{
		{nil, 0, 0},
		{[]time.Duration{-time.Second}, 0, 0},
		{[]time.Duration{5 * time.Second}, 5 * time.Second, 5 * time.Second},
		{[]time.Duration{1 * time.Second, 2 * time.Second, 3 * time.Second}, 2 * time.Second, 3 * time.Second},
		{[]time.Duration{10 * time.Second, 299 * time.Second, 400 * time.Second, 8005 * time.Second}, 288 * time.Second, 7936 * time.Second},
	}
	for _, tc := range tests {
		var h histogram
		for _, d := range tc.idle {
			h.add(d)
		}
		if p50, p99 := h.quantile(0.5), h.quantile(0.99); p50 != tc.p50 || p99 != tc.p99 {
			t.Errorf("%v: p50 %v p99 %v, want %v %v", tc.idle, p50, p99, tc.p50, tc.p99)
		}
	}
	// Buckets are at most about 6 % wide and their bounds are in order.
	prev := uint64(0)
	for b := 1; b < 500; b++ {
		lo := lowerBound(b)
		if lo <= prev || bucketOf(lo) != b || bucketOf(lo-1) != b-1 {
			t.Fatalf("bucket %d: lower bound %d (previous %d)", b, lo, prev)
		}
		if b > 16 && float64(lo-prev)/float64(prev) > 0.0625 {
			t.Fatalf("bucket %d is %d wide at %d", b, lo-prev, prev)
		}
		prev = lo
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
