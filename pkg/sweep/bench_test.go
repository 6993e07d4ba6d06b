package sweep

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// benchSet is 10,000 policy keys: 1,000 pods × 10 destination /24s, in
// 100 policies with an established-TCP timeout of 1000 s.
func benchSet() []Policy {
	set := make([]Policy, 100)
	for i := range set {
		set[i].Name = "bench/policy-" + itoa(i)
		set[i].Timeouts[profiles.StateEstablished] = 1000
	}
	for pod := 0; pod < 1000; pod++ {
		p := netip.AddrFrom4([4]byte{10, 1, byte(pod >> 8), byte(pod)})
		for d := 0; d < 10; d++ {
			set[pod%100].Keys = append(set[pod%100].Keys, Key{Pod: p, Dest: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(d), 0}), 24)})
		}
	}
	return set
}

func itoa(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }

// fillBench writes n established TCP entries of the bench set's pods with
// idle times spread over 0–8000 s: about 7/8 are idle over 1000 s.
func fillBench(b *testing.B, m *ctmap.Map, n int, now uint32) {
	const chunk = 1 << 16
	keys := make([][14]byte, chunk)
	vals := make([][56]byte, chunk)
	for done := 0; done < n; {
		c := min(chunk, n-done)
		for i := 0; i < c; i++ {
			id := done + i
			pod := id % 1000
			binary.BigEndian.PutUint32(keys[i][0:], 0x0a010000|uint32(pod))
			binary.BigEndian.PutUint32(keys[i][4:], 0xc6120000|uint32(id/1000%10)<<8|uint32(id%250+1))
			binary.BigEndian.PutUint16(keys[i][8:], 443)
			binary.BigEndian.PutUint16(keys[i][10:], uint16(32768+id/2500))
			keys[i][12], keys[i][13] = ctmap.ProtoTCP, 0
			var e ctmap.CTEntry
			e.SetLifetime(now + 8000 - uint32(id%8000))
			e.SetFlags(ctmap.FlagSeenNonSyn)
			vals[i] = e
		}
		if _, err := m.BatchUpdate(keys[:c], vals[:c], nil); err != nil {
			b.Fatal(err)
		}
		done += c
	}
}

// benchNode is a private bpffs with Cilium 1.18's CT maps, n entries in
// the TCP one, and egwct's state holding benchSet.
type benchNode struct {
	fs    string
	r     profiles.Resolution
	clock nodeconfig.Clock
	node  map[profiles.State]time.Duration
	ct    *ctmap.Map
	st    *State
	set   []Policy
}

func newBenchNode(b *testing.B, n int) *benchNode {
	bn := &benchNode{fs: testutil.PrivateBPFFS(b), clock: nodeconfig.Clock{Mode: nodeconfig.Ktime},
		node: map[profiles.State]time.Duration{}, set: benchSet()}
	bn.r, _ = profiles.Resolve("1.18.3")
	for _, p := range bn.r.Profile.Parameters {
		bn.node[p.State] = p.Default
	}
	for _, role := range []profiles.MapRole{profiles.RoleCTTCP, profiles.RoleCTAny} {
		spec, _ := bn.r.Profile.Map(role, 4)
		m, err := ctmap.Create(bn.fs, spec, uint32(n+n/4))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		if role == profiles.RoleCTTCP {
			bn.ct = m
		}
	}
	now, _ := ctmap.Now(bn.clock)
	fillBench(b, bn.ct, n, now)
	var err error
	if bn.st, err = OpenState(bn.fs, true); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(bn.st.Close)
	if err := bn.st.Replace(bn.set); err != nil {
		b.Fatal(err)
	}
	return bn
}

// BenchmarkSweep measures one sweep over a CT map of 1M entries against
// 10K policy keys in the steady state of an agent: the first (untimed)
// sweep marks the expired entries, so every timed sweep judges every entry
// and finds nothing new, in mark mode. In the same run: every engine the
// kernel loads (foreach, iterator, userspace) and the floor,
// bpf_for_each_map_elem over the same map with a callback that does
// nothing, and a GC pass with nothing to delete (batch reads, lifetime
// against now, as Cilium's ctmap.GC). Reported: CPU time (user + system,
// all threads) per entry of each, and each engine's ratios to the floor
// and to the GC pass.
//
//	go test ./pkg/sweep -run '^$' -bench Sweep -benchtime 3x
func BenchmarkSweep(b *testing.B) {
	const n = 1_000_000
	bn := newBenchNode(b, n)
	fs, r, clock, node, ct, st, set := bn.fs, bn.r, bn.clock, bn.node, bn.ct, bn.st, bn.set
	now, _ := ctmap.Now(clock)
	var sweepers []*Sweeper
	for _, e := range AutoOrder {
		s, err := New(Config{BPFFS: fs, Profile: r.Profile, Clock: clock, Node: node, Mode: Mark, Engine: e}, st)
		if err != nil {
			b.Logf("%s: %v", e, err)
			continue
		}
		defer s.Close()
		sweepers = append(sweepers, s)
	}
	matcher := NewMatcher(set)
	times := ctmap.NewTimes(clock, now, node)
	walk, read := floors(b, bn)

	want := countExpired(b, ct, matcher, times)
	res, err := sweepers[0].Sweep()
	if err != nil {
		b.Fatal(err)
	}
	var got uint64
	for _, cs := range res.Counts {
		got += cs[profiles.StateEstablished].Expired
	}
	if res.Entries != n || got == 0 || int(got) < want-5000 || int(got) > want+5000 {
		b.Fatalf("program judged %d of %d expired, the model %d", got, res.Entries, want)
	}

	cpu := make([]time.Duration, len(sweepers))
	var floor, readFloor, gc time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, s := range sweepers {
			c0 := cpuTime()
			if _, err := s.Sweep(); err != nil {
				b.Fatal(err)
			}
			cpu[j] += cpuTime() - c0
		}
		c0 := cpuTime()
		if _, err := walk.Run(nil); err != nil {
			b.Fatal(err)
		}
		floor += cpuTime() - c0
		c0 = cpuTime()
		if _, err := read.Run(nil); err != nil {
			b.Fatal(err)
		}
		readFloor += cpuTime() - c0
		// A GC pass with nothing to delete, as Cilium's ctmap.GC reads
		// the map: batch reads, lifetime against now.
		c0 = cpuTime()
		t, _ := ctmap.Now(clock)
		old := 0
		if err := ct.Walk(func(_, v []byte) error {
			if int32(binary.LittleEndian.Uint32(v[32:])-t) < 0 {
				old++
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		gc += cpuTime() - c0
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / n }
	b.ReportMetric(per(floor), "floor-ns/entry")
	b.ReportMetric(per(readFloor), "read-ns/entry")
	b.ReportMetric(per(gc), "gc-ns/entry")
	for j, s := range sweepers {
		e := s.Choice().Engine.String()
		b.ReportMetric(per(cpu[j]), e+"-ns/entry")
		b.ReportMetric(float64(cpu[j])/float64(floor), e+"/floor")
		b.ReportMetric(float64(cpu[j])/float64(readFloor), e+"/read")
		b.ReportMetric(float64(cpu[j])/float64(gc), e+"/gc")
	}
}

// cpuTime is the process's CPU time so far, user and system.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countExpired judges every entry with the model, changing nothing.
func countExpired(b *testing.B, m *ctmap.Map, matcher *Matcher, t ctmap.Times) int {
	n := 0
	var c ctmap.CT
	if err := m.Walk(func(k, v []byte) error {
		c.Key, _ = ctmap.DecodeTuple(k)
		copy(c.Value[:], v)
		if _, exp := matcher.Judge(&c, t); exp {
			n++
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return n
}

// floors loads the floor programs over the bench node's CT map: the walk
// alone (egwct's walk_only, a callback doing nothing) and the walk with
// the reads every judgement makes (read_only, of the test-only
// bpf/walkcost.bpf.c).
func floors(b *testing.B, bn *benchNode) (walk, read *ebpf.Program) {
	var w struct {
		Walk *ebpf.Program `ebpf:"walk_only"`
	}
	var r struct {
		Read *ebpf.Program `ebpf:"read_only"`
	}
	for _, l := range []struct {
		load func() (*ebpf.CollectionSpec, error)
		to   any
	}{{loadSweeper, &w}, {loadWalkCost, &r}} {
		spec, err := l.load()
		if err != nil {
			b.Fatal(err)
		}
		if err := spec.LoadAndAssign(l.to, overBenchCT(b, bn, spec)); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { w.Walk.Close(); r.Read.Close() })
	return w.Walk, r.Read
}

// overBenchCT sizes spec's ct_tcp4 placeholder as the bench node's CT map
// and returns the options that bind that map in its place.
func overBenchCT(b *testing.B, bn *benchNode, spec *ebpf.CollectionSpec) *ebpf.CollectionOptions {
	info, err := bn.ct.Info()
	if err != nil {
		b.Fatal(err)
	}
	spec.Maps["ct_tcp4"].MaxEntries, spec.Maps["ct_tcp4"].Flags = info.MaxEntries, info.Flags
	return &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{"ct_tcp4": bn.ct.Map}}
}

// BenchmarkBacklog measures the first reclaim on a node with a backlog:
// 250,000 established flows with their SNAT egress and reverse entries,
// 7/8 of them idle past their policy's timeout. In the same run, on the
// same maps refilled before each: a reclaim sweep of every engine the
// kernel loads, and a userspace GC pass that does what Cilium's
// ctmap.GC and NatMapNext4 do (batch reads of the CT map; per expired
// entry, delete it, look its SNAT egress entry up, delete the reverse
// and the egress entry). Reported: wall time per reclaimed flow of each
// and each engine's ratio to the GC pass.
//
//	go test ./pkg/sweep -run '^$' -bench Backlog -benchtime 1x -count 3
func BenchmarkBacklog(b *testing.B) {
	const n = 250_000
	clock := nodeconfig.Clock{Mode: nodeconfig.Ktime}
	fs := testutil.PrivateBPFFS(b)
	r, _ := profiles.Resolve("1.18.3")
	node := map[profiles.State]time.Duration{}
	for _, p := range r.Profile.Parameters {
		node[p.State] = p.Default
	}
	var ct, nat *ctmap.Map
	for _, role := range []profiles.MapRole{profiles.RoleCTTCP, profiles.RoleCTAny, profiles.RoleSNAT} {
		spec, _ := r.Profile.Map(role, 4)
		m, err := ctmap.Create(fs, spec, uint32(3*n))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		switch role {
		case profiles.RoleCTTCP:
			ct = m
		case profiles.RoleSNAT:
			nat = m
		}
	}
	now, _ := ctmap.Now(clock)
	fill := func() {
		fillBench(b, ct, n, now)
		var ks [][14]byte
		var nvs [][40]byte
		if err := ct.Walk(func(k, _ []byte) error {
			t, _ := ctmap.DecodeTuple(k)
			eg, _ := ctmap.NATKeysForCT(t)
			// A translated (address, port) of its own for every flow.
			j := len(ks) / 2
			ev := ctmap.NewNATEntry(1, true, netip.AddrFrom4([4]byte{192, 168, byte(j >> 16), 10}), uint16(j))
			rv := ctmap.NewNATEntry(1, true, t.DAddr, t.SPort)
			ks = append(ks, [14]byte(eg.Bytes()), [14]byte(ctmap.ReverseKey(eg, &ev).Bytes()))
			nvs = append(nvs, [40]byte(ev.Bytes()), [40]byte(rv.Bytes()))
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if _, err := nat.BatchUpdate(ks, nvs, nil); err != nil {
			b.Fatal(err)
		}
	}
	st, err := OpenState(fs, true)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	set := benchSet()
	if err := st.Replace(set); err != nil {
		b.Fatal(err)
	}
	cfg := Config{BPFFS: fs, Profile: r.Profile, Clock: clock, Node: node, Mode: Reclaim,
		Now: func() (uint32, error) { return now, nil }}
	matcher := NewMatcher(set)
	times := ctmap.NewTimes(clock, now, node)

	wall := map[string]time.Duration{}
	flows := map[string]uint64{}
	var names []string
	for i := 0; i < b.N; i++ {
		for _, e := range AutoOrder {
			cfg.Engine = e
			s, err := New(cfg, st)
			if err != nil {
				continue
			}
			b.StopTimer()
			fill()
			b.StartTimer()
			t0 := time.Now()
			res, err := s.Sweep()
			wall[e.String()] += time.Since(t0)
			s.Close()
			if err != nil {
				b.Fatal(err)
			}
			var del, delNAT uint64
			for _, cs := range res.Counts {
				del += cs[profiles.StateEstablished].DeletedCT
				delNAT += cs[profiles.StateEstablished].DeletedNAT
			}
			if del == 0 || delNAT != 2*del {
				b.Fatalf("%s deleted %d CT and %d SNAT entries", e, del, delNAT)
			}
			flows[e.String()] += del
			if i == 0 {
				names = append(names, e.String())
			}
		}
		b.StopTimer()
		fill()
		b.StartTimer()
		t0 := time.Now()
		var c ctmap.CT
		var gone uint64
		var ds Sweeper
		if err := ct.Walk(func(k, v []byte) error {
			c.Key, _ = ctmap.DecodeTuple(k)
			copy(c.Value[:], v)
			if _, exp := matcher.Judge(&c, times); !exp {
				return nil
			}
			if err := ct.Delete(k); err != nil {
				return err
			}
			gone++
			_, err := ds.deleteNAT(nat, k)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		wall["gc"] += time.Since(t0)
		flows["gc"] += gone
	}
	per := func(name string) float64 { return float64(wall[name].Nanoseconds()) / float64(flows[name]) }
	b.ReportMetric(per("gc"), "gc-ns/flow")
	for _, e := range names {
		b.ReportMetric(per(e), e+"-ns/flow")
		b.ReportMetric(per(e)/per("gc"), e+"/gc")
	}
}
