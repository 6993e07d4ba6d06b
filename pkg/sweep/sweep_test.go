package sweep

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

var (
	podA   = netip.MustParseAddr("10.1.0.5")
	podB   = netip.MustParseAddr("10.1.0.6") // in no policy
	egress = netip.MustParseAddr("192.168.100.10")
)

// node is a private bpffs holding a profile's CT and SNAT maps. Its
// flows are of one address family: ct, any and nat are that family's maps.
type node struct {
	fs      string
	p       *profiles.Profile
	clock   nodeconfig.Clock
	fam     int
	ct, any *ctmap.Map
	nat     *ctmap.Map
	timeout map[profiles.State]time.Duration
	units   [4]uint32
	port    uint16
	byFam   map[int]*[3]*ctmap.Map // CT TCP, CT any, SNAT
	// now is the datapath's clock of the test: flows are written idle
	// relative to it and the sweepers read it (Config.Now), so that no
	// result depends on how long the test takes.
	now uint32
}

// engines are the engines every semantic test runs with; one the kernel
// refuses is skipped with the refusal (sweeperWith).
var engines = []Engine{ForEach, Iterator, Userspace}

func newNode(t *testing.T, version string, clock nodeconfig.Clock) *node {
	return newNodeFamily(t, version, clock, 4, 4096)
}

// newNodeFamily is newNode with flows of family fam: the IPv4 maps are
// always there (the sweeper needs them), the IPv6 ones when fam is 6,
// each with room for size entries.
func newNodeFamily(t *testing.T, version string, clock nodeconfig.Clock, fam, size int) *node {
	t.Helper()
	fs := testutil.PrivateBPFFS(t)
	r, err := profiles.Resolve(version)
	if err != nil {
		t.Fatal(err)
	}
	now, err := ctmap.Now(clock)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{fs: fs, p: r.Profile, clock: clock, fam: fam, timeout: map[profiles.State]time.Duration{}, port: 40000, byFam: map[int]*[3]*ctmap.Map{}, now: now}
	for _, prm := range r.Profile.Parameters {
		n.timeout[prm.State] = prm.Default
		n.units[prm.State] = uint32(clock.Units(prm.Default))
	}
	for _, f := range []int{4, fam} {
		if n.byFam[f] != nil {
			continue
		}
		n.byFam[f] = new([3]*ctmap.Map)
		for i, x := range []struct {
			dst  **ctmap.Map
			role profiles.MapRole
		}{{&n.ct, profiles.RoleCTTCP}, {&n.any, profiles.RoleCTAny}, {&n.nat, profiles.RoleSNAT}} {
			spec, _ := r.Profile.Map(x.role, f)
			m, err := ctmap.Create(fs, spec, uint32(size))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			*x.dst = m
			n.byFam[f][i] = m
		}
	}
	return n
}

// ctMaps returns the CT map of a family for TCP or other flows, and the
// family's SNAT map.
func (n *node) ctMaps(v4, tcp bool) (ct, nat *ctmap.Map) {
	ms := n.byFam[4]
	if !v4 {
		ms = n.byFam[6]
	}
	if tcp {
		return ms[0], ms[2]
	}
	return ms[1], ms[2]
}

// addr is a's counterpart in the node's family: itself for IPv4, for IPv6
// the address with a's four bytes last in 2001:db8::/96.
func (n *node) addr(a netip.Addr) netip.Addr {
	if n.fam == 4 {
		return a
	}
	b := netip.MustParseAddr("2001:db8::").As16()
	copy(b[12:], a.AsSlice())
	return netip.AddrFrom16(b)
}

// prefix is p's counterpart in the node's family (/24 becomes /120).
func (n *node) prefix(p string) netip.Prefix {
	pp := netip.MustParsePrefix(p)
	if n.fam == 4 || pp.Bits() == 0 {
		if n.fam == 6 {
			return netip.MustParsePrefix("::/0")
		}
		return pp
	}
	return netip.PrefixFrom(n.addr(pp.Addr()), 96+pp.Bits())
}

// flow writes a CT entry idle for idle (in the node's state timeout) and
// its two SNAT entries; it returns the CT key.
func (n *node) flow(t *testing.T, pod netip.Addr, dst string, proto uint8, state profiles.State, idle time.Duration, flags uint8) ctmap.Tuple {
	t.Helper()
	n.port++
	pod = n.addr(pod)
	k := ctmap.Tuple{DAddr: pod, SAddr: n.addr(netip.MustParseAddr(dst)), DPort: 443, SPort: n.port, NextHdr: proto, Flags: flags}
	var v ctmap.CTEntry
	v.SetLifetime(n.now + n.units[state] - uint32(n.clock.Units(idle)))
	switch state {
	case profiles.StateEstablished:
		v.SetFlags(ctmap.FlagSeenNonSyn)
	case profiles.StateClosing:
		v.SetFlags(ctmap.FlagSeenNonSyn | ctmap.FlagRxClosing | ctmap.FlagTxClosing)
	}
	for i := 16; i < 32; i++ {
		v[i] = byte(i) // counters: must survive untouched
	}
	v[44] = 0x42
	m := n.ct
	if proto != ctmap.ProtoTCP {
		m = n.any
	}
	if err := m.Put(k.Bytes(), v[:]); err != nil {
		t.Fatal(err)
	}
	eg, ok := ctmap.NATKeysForCT(k)
	if !ok {
		return k // inbound: no SNAT entries of ours
	}
	ev := ctmap.NewNATEntry(1, true, n.addr(egress), n.port)
	rv := ctmap.NewNATEntry(1, true, pod, k.SPort)
	if err := n.nat.Put(eg.Bytes(), ev.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := n.nat.Put(ctmap.ReverseKey(eg, &ev).Bytes(), rv.Bytes()); err != nil {
		t.Fatal(err)
	}
	return k
}

func dump(t *testing.T, m *ctmap.Map) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	if err := m.Walk(func(k, v []byte) error {
		out[string(k)] = bytes.Clone(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func (n *node) sweeper(t *testing.T, mode Mode, set []Policy) (*Sweeper, *State) {
	t.Helper()
	return n.sweeperWith(t, mode, Auto, set)
}

func (n *node) sweeperWith(t *testing.T, mode Mode, engine Engine, set []Policy) (*Sweeper, *State) {
	t.Helper()
	st, err := OpenState(n.fs, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Replace(set); err != nil {
		t.Fatal(err)
	}
	s, err := New(n.config(mode, engine), st)
	var ee *EngineError
	if errors.As(err, &ee) {
		t.Skipf("this kernel refuses the engine: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, st
}

// config is a sweeper's configuration on the node, with its clock.
func (n *node) config(mode Mode, engine Engine) Config {
	return Config{BPFFS: n.fs, Profile: n.p, Clock: n.clock, Node: n.timeout, Mode: mode, Engine: engine,
		Now: func() (uint32, error) { return n.now, nil }}
}

func units(c nodeconfig.Clock, d time.Duration) uint32 { return uint32(c.Units(d)) }

// TestSweepSemantics covers every state with and without policy timeouts,
// excluded CIDRs, entries of no policy and inbound entries, in both modes
// and both clocks: exactly the expired entries are handled, and every
// other byte of Cilium's maps stays as it was.
func TestSweepSemantics(t *testing.T) {
	for _, fam := range []int{4, 6} {
		for _, engine := range engines {
			for _, clock := range []nodeconfig.Clock{{Mode: nodeconfig.Ktime}, {Mode: nodeconfig.Jiffies, HZ: 250}} {
				for _, mode := range []Mode{Reclaim, Mark} {
					t.Run(fmt.Sprintf("ipv%d/%s/%s/%s", fam, engine, clock.Mode, mode), func(t *testing.T) {
						n := newNodeFamily(t, "1.18.3", clock, fam, 4096)
						policy := Policy{Name: "payments/payments-egress", Keys: []Key{
							{Pod: n.addr(podA), Dest: n.prefix("0.0.0.0/0")},
							{Pod: n.addr(podA), Dest: n.prefix("203.0.113.0/24"), Excluded: true},
						}}
						policy.Timeouts[profiles.StateSyn] = units(clock, 20*time.Second)
						policy.Timeouts[profiles.StateEstablished] = units(clock, 300*time.Second)
						policy.Timeouts[profiles.StateClosing] = units(clock, 5*time.Second)
						policy.Timeouts[profiles.StateNonTCP] = units(clock, 30*time.Second)
						onlyTCP := Policy{Name: "mail/mail-egress", Keys: []Key{{Pod: n.addr(podB), Dest: n.prefix("198.51.100.0/24")}}}
						onlyTCP.Timeouts[profiles.StateEstablished] = units(clock, 600*time.Second)

						expire := []ctmap.Tuple{
							n.flow(t, podA, "93.184.216.34", ctmap.ProtoTCP, profiles.StateEstablished, 400*time.Second, ctmap.TupleOut),
							n.flow(t, podA, "93.184.216.35", ctmap.ProtoTCP, profiles.StateSyn, 40*time.Second, ctmap.TupleOut),
							n.flow(t, podA, "93.184.216.36", ctmap.ProtoTCP, profiles.StateClosing, 8*time.Second, ctmap.TupleOut),
							n.flow(t, podA, "93.184.216.37", ctmap.ProtoUDP, profiles.StateNonTCP, 45*time.Second, ctmap.TupleOut),
							n.flow(t, podB, "198.51.100.7", ctmap.ProtoTCP, profiles.StateEstablished, 700*time.Second, ctmap.TupleOut),
						}
						// Not expired under their policy, excluded, of no policy, inbound,
						// or in a state the policy leaves to the node.
						n.flow(t, podA, "93.184.216.38", ctmap.ProtoTCP, profiles.StateEstablished, 100*time.Second, ctmap.TupleOut)
						n.flow(t, podA, "203.0.113.9", ctmap.ProtoTCP, profiles.StateEstablished, 7000*time.Second, ctmap.TupleOut)
						n.flow(t, podB, "93.184.216.34", ctmap.ProtoTCP, profiles.StateEstablished, 7000*time.Second, ctmap.TupleOut)
						n.flow(t, podA, "93.184.216.39", ctmap.ProtoTCP, profiles.StateEstablished, 7000*time.Second, ctmap.TupleIn)
						n.flow(t, podB, "198.51.100.8", ctmap.ProtoUDP, profiles.StateNonTCP, 59*time.Second, ctmap.TupleOut)
						n.flow(t, podB, "198.51.100.9", ctmap.ProtoTCP, profiles.StateSyn, 59*time.Second, ctmap.TupleOut)

						before := map[*ctmap.Map]map[string][]byte{n.ct: dump(t, n.ct), n.any: dump(t, n.any), n.nat: dump(t, n.nat)}
						s, st := n.sweeperWith(t, mode, engine, []Policy{policy, onlyTCP})
						start := time.Now()
						res, err := s.Sweep()
						if err != nil {
							t.Fatal(err)
						}
						gone := map[string]bool{}
						natGone := map[string]bool{}
						for _, k := range expire {
							gone[string(k.Bytes())] = true
							eg, _ := ctmap.NATKeysForCT(k)
							natGone[string(eg.Bytes())] = true
						}
						for m, old := range before {
							after := dump(t, m)
							for k, v := range old {
								got, ok := after[k]
								switch {
								case m == n.nat && mode == Reclaim && (natGone[k] || reverseOf(k, natGone, old)):
									if ok {
										t.Errorf("NAT entry %x not deleted", k)
									}
								case m != n.nat && gone[k] && mode == Reclaim:
									if ok {
										t.Errorf("CT entry %x not deleted", k)
									}
								case m != n.nat && gone[k] && mode == Mark:
									var want ctmap.CTEntry
									copy(want[:], v)
									var e ctmap.CTEntry
									copy(e[:], got)
									// Marked with the sweep's now − 1.
									if e.Lifetime() != n.now-1 {
										t.Errorf("marked entry %x lifetime %d, want %d", k, e.Lifetime(), n.now-1)
									}
									want.SetLifetime(e.Lifetime())
									if !bytes.Equal(want[:], got) {
										t.Errorf("mark changed more than lifetime of %x", k)
									}
								default:
									if !ok || !bytes.Equal(v, got) {
										t.Errorf("%s entry %x changed: %x → %x (present %v)", m.Spec.Name, k, v, got, ok)
									}
								}
							}
							if len(after) > len(old) {
								t.Errorf("%s grew", m.Spec.Name)
							}
						}
						var expired, deletedCT, deletedNAT uint64
						for _, cs := range res.Counts {
							for _, c := range cs {
								expired += c.Expired
								deletedCT += c.DeletedCT
								deletedNAT += c.DeletedNAT
							}
						}
						if expired != uint64(len(expire)) || res.Entries != 11 {
							t.Errorf("expired %d of %d entries, want %d of 11", expired, res.Entries, len(expire))
						}
						if mode == Reclaim && (deletedCT != 5 || deletedNAT != 10) {
							t.Errorf("deleted %d CT and %d NAT entries, want 5 and 10", deletedCT, deletedNAT)
						}
						if last, ok, err := st.LastSweep(); err != nil || !ok || last.Entries != 11 || last.Mode != mode || last.Time.Before(start.Truncate(0)) {
							t.Errorf("last sweep %+v %v %v", last, ok, err)
						}
						if tot, _ := st.Totals(1, profiles.StateEstablished); tot.Expired != 1 {
							t.Errorf("totals of policy 1 established: %+v", tot)
						}
						names, _ := st.Names()
						if names[1] != "payments/payments-egress" || names[2] != "mail/mail-egress" {
							t.Errorf("names %v", names)
						}
						// A second sweep finds nothing new: reclaimed entries are gone,
						// marked ones are already expired for Cilium's GC.
						again, err := s.Sweep()
						if err != nil {
							t.Fatal(err)
						}
						for slot, cs := range again.Counts {
							for st, c := range cs {
								if c.Expired != 0 {
									t.Errorf("second sweep: slot %d %s expired %d", slot, profiles.State(st), c.Expired)
								}
							}
						}
					})
				}
			}
		}
	}
}

// reverseOf reports whether k is the reverse NAT entry of a deleted egress entry.
func reverseOf(k string, egressGone map[string]bool, nat map[string][]byte) bool {
	for ek := range egressGone {
		v, ok := nat[ek]
		if !ok {
			continue
		}
		eg, _ := ctmap.DecodeTuple([]byte(ek))
		e, _ := ctmap.DecodeNATEntry(v)
		if string(ctmap.ReverseKey(eg, &e).Bytes()) == k {
			return true
		}
	}
	return false
}

// TestRefreshedBeforeDeletion: an entry judged expired that the datapath
// refreshes before it is deleted is kept, with its SNAT entries. The BPF
// engines re-check the lifetime inside the walk, where a test cannot
// step in; the userspace engine is stopped between judgement and
// deletion.
func TestRefreshedBeforeDeletion(t *testing.T) {
	clock := nodeconfig.Clock{Mode: nodeconfig.Ktime}
	n := newNode(t, "main", clock)
	p := Policy{Name: "a/b", Keys: []Key{{Pod: podA, Dest: netip.MustParsePrefix("93.184.216.0/24")}}}
	p.Timeouts[profiles.StateEstablished] = 60
	k := n.flow(t, podA, "93.184.216.34", ctmap.ProtoTCP, profiles.StateEstablished, 120*time.Second, ctmap.TupleOut)
	s, _ := n.sweeperWith(t, Reclaim, Userspace, []Policy{p})
	// The datapath sees a packet: lifetime = now + timeout.
	s.judged = func([]byte) {
		var v ctmap.CTEntry
		n.ct.Lookup(k.Bytes(), v[:])
		v.SetLifetime(n.now + n.units[profiles.StateEstablished])
		n.ct.Put(k.Bytes(), v[:])
	}
	res, err := s.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Counts[1][profiles.StateEstablished]; c.Refreshed != 1 || c.DeletedCT != 0 || c.Expired != 1 {
		t.Fatalf("counts %+v", c)
	}
	var v ctmap.CTEntry
	if err := n.ct.Lookup(k.Bytes(), v[:]); err != nil {
		t.Fatalf("refreshed entry deleted: %v", err)
	}
	if len(dump(t, n.nat)) != 2 {
		t.Error("its SNAT entries were touched")
	}
}

// TestReplaceIsWhole: a new set replaces the old one entirely.
func TestReplaceIsWhole(t *testing.T) {
	fs := testutil.PrivateBPFFS(t)
	st, err := OpenState(fs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := []Policy{{Name: "a", Keys: []Key{{Pod: podA, Dest: netip.MustParsePrefix("1.0.0.0/8")}, {Pod: podB, Dest: netip.MustParsePrefix("2.0.0.0/8")}}}}
	b := []Policy{{Name: "b", Keys: []Key{{Pod: podB, Dest: netip.MustParsePrefix("3.3.0.0/16"), Excluded: true}}}}
	for _, set := range [][]Policy{a, b} {
		if err := st.Replace(set); err != nil {
			t.Fatal(err)
		}
		cur, err := st.CurrentKeys()
		if err != nil {
			t.Fatal(err)
		}
		var want []Key
		for _, p := range set {
			want = append(want, p.Keys...)
		}
		got := slices.Collect(maps.Keys(cur))
		if len(got) != len(want) {
			t.Fatalf("keys %v, want %v", got, want)
		}
		for _, k := range want {
			if _, ok := cur[k]; !ok {
				t.Fatalf("key %v missing from %v", k, got)
			}
		}
	}
	if names, _ := st.Names(); len(names) != 1 || names[1] != "b" {
		t.Errorf("names after a smaller set: %v", names)
	}
	// Pins are for root only.
	ents, _ := os.ReadDir(Dir(fs))
	for _, e := range ents {
		if fi, err := os.Stat(filepath.Join(Dir(fs), e.Name())); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v %v", e.Name(), fi.Mode().Perm(), err)
		}
	}
	// A pod with more destination CIDRs than the sweeper scans is refused.
	var wide Policy
	wide.Name = "wide"
	for i := 0; i <= MaxRules; i++ {
		wide.Keys = append(wide.Keys, Key{Pod: podA, Dest: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 24)})
	}
	if err := st.Replace([]Policy{wide}); err == nil || !strings.Contains(err.Error(), "at most 256 per pod") {
		t.Errorf("too many CIDRs for a pod: %v", err)
	}
	// A set too large for the trie is refused before anything changes.
	var huge Policy
	huge.Name = "huge"
	for i := 0; i <= MaxKeys; i++ {
		huge.Keys = append(huge.Keys, Key{Pod: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Dest: netip.MustParsePrefix("0.0.0.0/0")})
	}
	if err := st.Replace([]Policy{huge}); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("too many keys: %v", err)
	}
	if cur, _ := st.CurrentKeys(); len(cur) != 1 {
		t.Errorf("a refused set changed the set in force: %d keys", len(cur))
	}
	// A second egwct is refused while the first holds the state.
	if _, err := OpenState(fs, true); err == nil {
		t.Fatal("state opened twice")
	}
	st.Close()
	if err := Reset(fs); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenState(fs, false); err == nil {
		t.Fatal("state survived reset")
	}
}

// TestRefusesMismatchedCTMap: nothing is loaded against a CT map whose
// shape differs from the profile.
func TestRefusesMismatchedCTMap(t *testing.T) {
	for _, engine := range engines {
		for _, tc := range []struct {
			fam  int
			name string
		}{{4, "cilium_ct4_global"}, {6, "cilium_ct6_global"}} {
			t.Run(engine.String()+"/"+tc.name, func(t *testing.T) {
				n := newNodeFamily(t, "1.18", nodeconfig.Clock{}, tc.fam, 4096)
				good, st := n.sweeperWith(t, Reclaim, engine, nil)
				good.Close()
				// Profile 1.18's maps opened as if they were another layout.
				bad := *mustProfile(t, "1.18")
				bad.Maps = slices.Clone(bad.Maps)
				for i := range bad.Maps {
					if bad.Maps[i].Name == tc.name {
						bad.Maps[i].ValueSize = 64
					}
				}
				cfg := n.config(Reclaim, engine)
				cfg.Profile = &bad
				_, err := New(cfg, st)
				var mm *ctmap.MismatchError
				if !errors.As(err, &mm) || !strings.Contains(err.Error(), tc.name) {
					t.Errorf("err = %v, want a mismatch", err)
				}
			})
		}
	}
}

func mustProfile(t *testing.T, v string) *profiles.Profile {
	r, err := profiles.Resolve(v)
	if err != nil {
		t.Fatal(err)
	}
	return r.Profile
}

// TestSwapDuringSweeps: policy sets replaced while sweeps run; every sweep
// judges all entries with one set, the old or the new.
func TestSwapDuringSweeps(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine.String(), func(t *testing.T) { testSwapDuringSweeps(t, engine) })
	}
}

func testSwapDuringSweeps(t *testing.T, engine Engine) {
	clock := nodeconfig.Clock{Mode: nodeconfig.Ktime}
	n := newNode(t, "1.18", clock)
	for i := 0; i < 400; i++ {
		n.flow(t, podA, []string{"93.184.216.34", "198.51.100.7"}[i%2], ctmap.ProtoTCP, profiles.StateEstablished, 10*time.Second, ctmap.TupleOut)
	}
	// Set a covers half the flows, set b all of them.
	a := Policy{Name: "a", Keys: []Key{{Pod: podA, Dest: netip.MustParsePrefix("93.184.216.0/24")}}}
	b := Policy{Name: "b", Keys: []Key{{Pod: podA, Dest: netip.MustParsePrefix("93.184.216.0/24")}, {Pod: podA, Dest: netip.MustParsePrefix("198.51.100.0/24")}}}
	a.Timeouts[profiles.StateEstablished], b.Timeouts[profiles.StateEstablished] = 500, 500
	s, st := n.sweeperWith(t, Mark, engine, []Policy{a})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 60; i++ {
			set := []Policy{a}
			if i%2 == 1 {
				set = []Policy{b}
			}
			if err := st.Replace(set); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < 30; i++ {
		res, err := s.Sweep()
		if err != nil {
			t.Fatal(err)
		}
		if seen := res.Counts[1][profiles.StateEstablished].Seen; seen != 200 && seen != 400 {
			t.Fatalf("sweep %d judged with a mix of sets: %d entries of the policy", i, seen)
		}
	}
	<-done
}

// TestConcurrentWriter: a datapath-like writer refreshes 20,000 live flows
// over and over while reclaim sweeps run, with every engine: live entries
// are never deleted nor changed beyond their lifetime; idle ones go.
func TestConcurrentWriter(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine.String(), func(t *testing.T) { testConcurrentWriter(t, engine) })
	}
}

func testConcurrentWriter(t *testing.T, engine Engine) {
	clock := nodeconfig.Clock{Mode: nodeconfig.Ktime}
	n := newNode(t, "1.16", clock)
	r, _ := profiles.Resolve("1.16")
	spec, _ := r.Profile.Map(profiles.RoleCTTCP, 4)
	os.Remove(ctmap.PinPath(n.fs, spec))
	big, err := ctmap.Create(n.fs, spec, 65536)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	n.ct = big
	const nLive, nIdle = 20000, 2000
	now, _ := ctmap.Now(clock)
	keys := make([][14]byte, nLive)
	vals := make([][56]byte, nLive)
	for i := range keys {
		k := ctmap.Tuple{DAddr: podA, SAddr: netip.AddrFrom4([4]byte{93, 184, 216, byte(i % 250)}), DPort: 443, SPort: uint16(10000 + i), NextHdr: ctmap.ProtoTCP}
		keys[i] = [14]byte(k.Bytes())
		var v ctmap.CTEntry
		v.SetLifetime(now + n.units[profiles.StateEstablished])
		v.SetFlags(ctmap.FlagSeenNonSyn)
		for j := 16; j < 32; j++ {
			v[j] = byte(i + j)
		}
		vals[i] = v
	}
	if _, err := big.BatchUpdate(keys, vals, nil); err != nil {
		t.Fatal(err)
	}
	var idle []ctmap.Tuple
	for i := 0; i < nIdle; i++ {
		idle = append(idle, n.flow(t, podA, "93.184.217.1", ctmap.ProtoTCP, profiles.StateEstablished, 100*time.Second, ctmap.TupleOut))
	}
	before := dump(t, n.ct)
	p := Policy{Name: "p", Keys: []Key{{Pod: podA, Dest: netip.MustParsePrefix("93.184.0.0/16")}}}
	p.Timeouts[profiles.StateEstablished] = 30
	s, _ := n.sweeperWith(t, Reclaim, engine, []Policy{p})
	stop := make(chan struct{})
	writes := make(chan int)
	var rounds atomic.Int32 // whole batches the writer refreshed
	go func() {
		w := 0
		defer func() { writes <- w }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			// What the datapath does on every packet: lifetime = now + timeout.
			now, _ := ctmap.Now(clock)
			for i := range vals {
				binary.LittleEndian.PutUint32(vals[i][32:], now+n.units[profiles.StateEstablished])
			}
			c, err := big.BatchUpdate(keys, vals, &ebpf.BatchOptions{ElemFlags: 0})
			if err != nil {
				t.Error(err)
				return
			}
			w += c
			rounds.Add(1)
		}
	}()
	// At least 5 sweeps, and as many more as it takes for the writer to
	// refresh every live entry 3 times while they run: the two overlap
	// however fast the machine is.
	var deleted uint64
	for i := 0; i < 5 || rounds.Load() < 3; i++ {
		if i == 10000 {
			t.Fatal("the writer never ran during the sweeps")
		}
		res, err := s.Sweep()
		if err != nil {
			t.Fatal(err)
		}
		deleted += res.Counts[1][profiles.StateEstablished].DeletedCT
	}
	close(stop)
	w := <-writes
	t.Logf("writer: %d refreshes in %d rounds during the sweeps", w, rounds.Load())
	after := dump(t, n.ct)
	for i, k := range keys {
		got, ok := after[string(k[:])]
		if !ok {
			t.Fatalf("live entry %d deleted", i)
		}
		want := before[string(k[:])]
		if !bytes.Equal(got[:32], want[:32]) || !bytes.Equal(got[36:], want[36:]) {
			t.Fatalf("live entry %d garbled", i)
		}
	}
	for _, k := range idle {
		if _, ok := after[string(k.Bytes())]; ok {
			t.Errorf("idle entry %x kept", k.Bytes())
		}
	}
	if deleted != nIdle {
		t.Errorf("deleted %d, want the %d idle entries", deleted, nIdle)
	}
}

// TestBacklog: a backlog of 200,000 expired entries (the first apply on
// a busy node) is deleted by one sweep, every entry of it, while the walk
// goes on over the map it deletes from.
func TestBacklog(t *testing.T) {
	const n = 200_000
	for _, engine := range engines {
		t.Run(engine.String(), func(t *testing.T) {
			clock := nodeconfig.Clock{Mode: nodeconfig.Ktime}
			nd := newNodeFamily(t, "1.18.3", clock, 4, n+n/4)
			now := nd.now
			keys := make([][14]byte, n)
			vals := make([][56]byte, n)
			for i := range keys {
				binary.BigEndian.PutUint32(keys[i][0:], 0x0a010005)
				binary.BigEndian.PutUint32(keys[i][4:], 0xc6120000|uint32(i))
				binary.BigEndian.PutUint16(keys[i][8:], 443)
				binary.BigEndian.PutUint16(keys[i][10:], uint16(1024+i%60000))
				keys[i][12] = ctmap.ProtoTCP
				var e ctmap.CTEntry
				e.SetLifetime(now + nd.units[profiles.StateEstablished] - 1000)
				e.SetFlags(ctmap.FlagSeenNonSyn)
				vals[i] = e
			}
			if _, err := nd.ct.BatchUpdate(keys, vals, nil); err != nil {
				t.Fatal(err)
			}
			p := Policy{Name: "a/b", Keys: []Key{{Pod: podA, Dest: netip.MustParsePrefix("198.18.0.0/15")}}}
			p.Timeouts[profiles.StateEstablished] = 60
			s, _ := nd.sweeperWith(t, Reclaim, engine, []Policy{p})
			res, err := s.Sweep()
			if err != nil {
				t.Fatal(err)
			}
			c := res.Counts[1][profiles.StateEstablished]
			if c.Expired != n || c.DeletedCT != n {
				t.Errorf("expired %d, deleted %d; want %d, %d", c.Expired, c.DeletedCT, n, n)
			}
			if left := len(dump(t, nd.ct)); left != 0 {
				t.Errorf("%d entries left", left)
			}
		})
	}
}

// TestSweeperFollowsTheSet: the BPF engines' programs hold the code for
// what the set in force holds (each family's pods, lists of rules) and
// nothing else; a new set that holds more loads them again before the
// sweep, which then judges its flows; a set that holds less keeps them.
func TestSweeperFollowsTheSet(t *testing.T) {
	for _, engine := range []Engine{ForEach, Iterator} {
		t.Run(engine.String(), func(t *testing.T) {
			n, v4, v6 := dualStackNode(t)

			s, st := n.sweeperWith(t, Mark, engine, []Policy{v4})
			if want := uint32(sweeperSetFeatureHAS_PODS4); s.features != want {
				t.Fatalf("loaded for features %#x, want %#x (the IPv4 set's)", s.features, want)
			}
			small := verified(t, s)
			expired := func(slot uint32) uint64 {
				t.Helper()
				res, err := s.Sweep()
				if err != nil {
					t.Fatal(err)
				}
				if res.Counts[slot] == nil {
					return 0
				}
				return res.Counts[slot][profiles.StateEstablished].Expired
			}
			if got := expired(0); got != 0 {
				t.Fatalf("the IPv6 flow of no policy expired: %d", got)
			}

			defer func(b uint) { maxTableBits = b }(maxTableBits)
			maxTableBits = 0 // lists only
			if err := st.Replace([]Policy{v4, v6}); err != nil {
				t.Fatal(err)
			}
			if got := expired(2); got != 1 {
				t.Fatalf("the IPv6 flow of a/v6 (a list) expired %d times in the sweep after the swap, want 1", got)
			}
			if want := uint32(sweeperSetFeatureALL_FEATURES); s.features != want {
				t.Fatalf("loaded for features %#x after the swap, want %#x", s.features, want)
			}
			if big := verified(t, s); small > 0 && big <= small {
				t.Errorf("the verifier walked %d instructions for every feature, %d for the IPv4 tables: no less", big, small)
			}

			colls := slices.Clone(s.colls)
			maxTableBits = 10
			if err := st.Replace([]Policy{v4}); err != nil {
				t.Fatal(err)
			}
			expired(1)
			if !slices.Equal(s.colls, colls) {
				t.Error("a set holding less loaded the programs again")
			}
		})
	}
}

// verified is the number of instructions the verifier processed for the
// sweeper's programs (0 where the kernel does not say).
func verified(t *testing.T, s *Sweeper) (n uint32) {
	t.Helper()
	for _, c := range s.colls {
		for _, p := range c.Programs {
			info, err := p.Info()
			if err != nil {
				t.Fatal(err)
			}
			v, ok := info.VerifiedInstructions()
			if !ok {
				return 0
			}
			n += v
		}
	}
	return n
}

// TestSweeperLoadsForTheNextSet: with Config.Next (apply's order: New,
// then Replace, then Sweep), the programs are loaded for the set about to
// be put in force, not for the one in force (none, or a larger one), and
// the first sweep keeps them.
func TestSweeperLoadsForTheNextSet(t *testing.T) {
	for _, engine := range []Engine{ForEach, Iterator} {
		t.Run(engine.String(), func(t *testing.T) {
			n, v4, _ := dualStackNode(t)
			v6 := Policy{Name: "a/v6", Keys: []Key{{Pod: n.addr(podA), Dest: n.prefix("93.184.216.0/24")}}}
			st, err := OpenState(n.fs, true)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			for _, inForce := range [][]Policy{nil, {v4, v6}} {
				if inForce != nil {
					if err := st.Replace(inForce); err != nil {
						t.Fatal(err)
					}
				}
				cfg := n.config(Mark, engine)
				cfg.Next = []Policy{v4}
				s, err := New(cfg, st)
				var ee *EngineError
				if errors.As(err, &ee) {
					t.Skipf("this kernel refuses the engine: %v", err)
				}
				if err != nil {
					t.Fatal(err)
				}
				if want := uint32(sweeperSetFeatureHAS_PODS4); s.features != want {
					t.Errorf("set in force %v: loaded for features %#x, want %#x (the next set's)", inForce, s.features, want)
				}
				colls := slices.Clone(s.colls)
				if err := st.Replace(cfg.Next); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Sweep(); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(s.colls, colls) {
					t.Error("the first sweep loaded the programs again")
				}
				s.Close()
			}
		})
	}
}

// dualStackNode is a node with IPv4 and IPv6 maps, an established IPv6
// flow of podA idle for 2 minutes, and a policy of podA's per family with
// a 60 s timeout that holds the flow's destination.
func dualStackNode(t *testing.T) (n *node, v4, v6 Policy) {
	t.Helper()
	n = newNodeFamily(t, "1.18.3", nodeconfig.Clock{Mode: nodeconfig.Ktime}, 6, 4096)
	v4 = Policy{Name: "a/v4", Keys: []Key{{Pod: podA, Dest: netip.MustParsePrefix("93.184.216.0/24")}}}
	v6 = Policy{Name: "a/v6", Keys: []Key{{Pod: n.addr(podA), Dest: n.prefix("93.184.216.0/24")}}}
	v4.Timeouts[profiles.StateEstablished], v6.Timeouts[profiles.StateEstablished] = 60, 60
	n.flow(t, podA, "93.184.216.34", ctmap.ProtoTCP, profiles.StateEstablished, 120*time.Second, ctmap.TupleOut)
	return n, v4, v6
}
