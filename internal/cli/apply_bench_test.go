package cli

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/egwct/egwct/internal/lab"
	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

// BenchmarkApplyLab measures whole `egwct apply` processes (the built
// binary) on a lab node filled as Cilium fills one (EGWCT_APPLY_BENCH_FLOWS
// flows, default 1,000,000, of Cilium 1.18.3, dual-stack; the jiffies
// clock, so that idle times spread over 1.25 times each state's timeout
// whatever the machine's uptime), against a GC pass as Cilium's agent
// makes one, over the same lab built again (same seed):
//
//   - first: `egwct apply` with the backlog (wall and CPU time per
//     reclaimed flow: CT entry and both SNAT entries);
//   - second: `egwct apply` again, nothing left to reclaim but the few
//     flows that crossed their timeout since (wall and CPU time of the
//     whole process);
//   - floor: after the second apply, bpf_for_each_map_elem over each CT
//     map of the lab with a callback that does nothing (sweep.EmptyWalk):
//     the walk no sweep goes below, the process and the programs' load
//     not included;
//   - gc: on the rebuilt lab, `egwct apply --mode mark` expires the same
//     flows for Cilium's GC (wall time: the first apply's walk, judgement
//     and load, without deletions); then a pass as Cilium's ctmap.GC and
//     NatMapNext4 make it: batch reads of each CT map, and per entry whose
//     lifetime has passed, delete it, look its SNAT egress entry up,
//     delete the reverse and the egress entry (wall and CPU per deleted
//     flow, and of the whole pass);
//
// and the ratios: first/gc per flow, second/gc and floor/gc against the
// whole pass, and reclaim/gc: what the first apply's deletions cost
// (first minus mark, per reclaimed flow: the kernel's lookup and three
// deletes) against the GC pass per flow.
//
//	sudo go test ./internal/cli -run '^$' -bench ApplyLab -benchtime 1x -timeout 30m
func BenchmarkApplyLab(b *testing.B) {
	testutil.RequireRoot(b)
	flows := 1_000_000
	if s := os.Getenv("EGWCT_APPLY_BENCH_FLOWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("EGWCT_APPLY_BENCH_FLOWS: %v", err)
		}
		flows = n
	}
	bin := buildAt(b, "")
	res, err := profiles.Resolve("1.18.3")
	if err != nil {
		b.Fatal(err)
	}
	hz, err := ctmap.KernelHZ()
	if err != nil {
		b.Fatal(err)
	}
	clock := nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: hz}
	up := func() (fs, state string) {
		fs = testutil.PrivateBPFFS(b)
		state = filepath.Join(b.TempDir(), "state")
		if _, err := lab.Up(lab.Config{BPFFS: fs, StateDir: state, Version: res, Flows: flows, Policies: 8, Seed: 1, Clock: clock}); err != nil {
			b.Fatal(err)
		}
		return fs, state
	}
	type cost struct {
		wall, cpu time.Duration
		flows     uint64
		engine    string
	}
	apply := func(fs, state string, args ...string) cost {
		cmd := exec.Command(bin, append([]string{"apply", "-f", filepath.Join(state, "manifests"), "--bpffs", fs,
			"--cilium-state-dir", state, "--cilium-version", "1.18.3", "-o", "json"}, args...)...)
		t0 := time.Now()
		out, err := cmd.Output()
		wall := time.Since(t0)
		if err != nil {
			b.Fatalf("egwct apply %v: %v\n%s", args, err, out)
		}
		var doc struct {
			Engine   string
			Policies []struct{ DeletedCT uint64 }
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			b.Fatalf("egwct apply -o json: %v\n%s", err, out)
		}
		c := cost{wall: wall, cpu: childCPU(cmd.ProcessState), engine: doc.Engine}
		for _, p := range doc.Policies {
			c.flows += p.DeletedCT
		}
		return c
	}
	var first, second, mark, gc cost
	var floor time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		fs, state := up()
		b.StartTimer()
		f := apply(fs, state)
		s := apply(fs, state)
		b.StopTimer()
		// The second apply finds only the flows whose idle time
		// crossed their timeout since the first.
		if f.flows == 0 || s.flows > f.flows/100 {
			b.Fatalf("the first apply reclaimed %d flows, the second %d", f.flows, s.flows)
		}
		floor += emptyWalks(b, fs, res.Profile)
		fs, state = up()
		m := apply(fs, state, "--mode", "mark")
		mark.wall, mark.cpu = mark.wall+m.wall, mark.cpu+m.cpu
		b.StartTimer()
		g := gcPass(b, fs, res.Profile, clock)
		first.wall, first.cpu, first.flows, first.engine = first.wall+f.wall, first.cpu+f.cpu, first.flows+f.flows, f.engine
		second.wall, second.cpu, second.flows = second.wall+s.wall, second.cpu+s.cpu, second.flows+s.flows
		gc.wall, gc.cpu, gc.flows = gc.wall+g.wall, gc.cpu+g.cpu, gc.flows+g.flows
	}
	us := func(d time.Duration, n uint64) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(n) }
	b.Logf("engine %s; the first apply reclaimed %d flows, the second %d, the GC pass deleted %d (over %d runs)",
		first.engine, first.flows, second.flows, gc.flows, b.N)
	b.ReportMetric(us(first.wall, first.flows), "first-wall-us/flow")
	b.ReportMetric(us(first.cpu, first.flows), "first-cpu-us/flow")
	b.ReportMetric(us(gc.wall, gc.flows), "gc-wall-us/flow")
	b.ReportMetric(us(gc.cpu, gc.flows), "gc-cpu-us/flow")
	b.ReportMetric(us(first.wall, first.flows)/us(gc.wall, gc.flows), "first/gc-wall")
	b.ReportMetric(us(first.cpu, first.flows)/us(gc.cpu, gc.flows), "first/gc-cpu")
	n := float64(b.N)
	b.ReportMetric(second.wall.Seconds()*1e3/n, "second-wall-ms")
	b.ReportMetric(second.cpu.Seconds()*1e3/n, "second-cpu-ms")
	b.ReportMetric(gc.wall.Seconds()*1e3/n, "gc-wall-ms")
	b.ReportMetric(float64(second.wall)/float64(gc.wall), "second/gc-wall")
	b.ReportMetric(float64(second.cpu)/float64(gc.cpu), "second/gc-cpu")
	b.ReportMetric(floor.Seconds()*1e3/n, "floor-ms")
	b.ReportMetric(float64(floor)/float64(gc.wall), "floor/gc-wall")
	b.ReportMetric(float64(second.wall)/float64(floor), "second/floor")
	b.ReportMetric(mark.wall.Seconds()*1e3/n, "mark-wall-ms")
	b.ReportMetric(us(first.wall-mark.wall, first.flows)/us(gc.wall, gc.flows), "reclaim/gc-wall")
}

// emptyWalks is the time of sweep.EmptyWalk over every CT map of a lab.
func emptyWalks(b *testing.B, fs string, p *profiles.Profile) (d time.Duration) {
	for _, fam := range []int{4, 6} {
		for _, role := range []profiles.MapRole{profiles.RoleCTTCP, profiles.RoleCTAny} {
			spec, ok := p.Map(role, fam)
			if !ok {
				continue
			}
			m, err := ctmap.Open(fs, spec, false)
			if err != nil {
				b.Fatal(err)
			}
			w, err := sweep.EmptyWalk(m)
			m.Close()
			if err != nil {
				b.Fatal(err)
			}
			d += w
		}
	}
	return d
}

// childCPU is the user and system time of an exited process.
func childCPU(ps *os.ProcessState) time.Duration {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfCPU is this process's user and system time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// gcPass does what one pass of Cilium's CT GC does on a node (ctmap.GC,
// and NatMapNext4/6 for the SNAT entries): every CT map read in batches,
// each entry whose lifetime has passed deleted, then its SNAT reverse
// and egress entries. It returns its wall and CPU time and the CT entries
// it deleted.
func gcPass(b *testing.B, fs string, p *profiles.Profile, clock nodeconfig.Clock) (c struct {
	wall, cpu time.Duration
	flows     uint64
}) {
	var maps []*ctmap.Map
	nat := map[int]*ctmap.Map{}
	for _, fam := range []int{4, 6} {
		for _, role := range []profiles.MapRole{profiles.RoleCTTCP, profiles.RoleCTAny, profiles.RoleSNAT} {
			spec, ok := p.Map(role, fam)
			if !ok {
				continue
			}
			m, err := ctmap.Open(fs, spec, true)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			if role == profiles.RoleSNAT {
				nat[fam] = m
			} else {
				maps = append(maps, m)
			}
		}
	}
	t0, c0 := time.Now(), selfCPU()
	now, err := ctmap.Now(clock)
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range maps {
		n := nat[4]
		if m.Spec.KeySize != 14 {
			n = nat[6]
		}
		raw := make([]byte, n.Spec.ValueSize)
		if err := m.Walk(func(k, v []byte) error {
			if int32(binary.LittleEndian.Uint32(v[32:])-now) >= 0 {
				return nil
			}
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return err
			}
			c.flows++
			t, err := ctmap.DecodeTuple(k)
			if err != nil {
				return err
			}
			egress, ok := ctmap.NATKeysForCT(t)
			if !ok {
				return nil
			}
			ek := egress.Bytes()
			if err := n.Lookup(ek, raw); err != nil {
				return nil // no SNAT entry
			}
			e, err := ctmap.DecodeNATEntry(raw)
			if err != nil {
				return err
			}
			_ = n.Delete(ctmap.ReverseKey(egress, &e).Bytes())
			_ = n.Delete(ek)
			return nil
		}); err != nil {
			b.Fatal(fmt.Errorf("GC pass over %s: %w", m.Spec.Name, err))
		}
	}
	c.wall, c.cpu = time.Since(t0), selfCPU()-c0
	return c
}
