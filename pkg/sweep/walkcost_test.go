package sweep

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// The test-only programs that price a callback's instructions.
//go:generate go tool bpf2go -cc clang-14 -target bpfel walkCost ../../bpf/walkcost.bpf.c -- -O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu

// funcLen is the number of instructions of the function sym (a program or
// one of its subprograms, such as a bpf_for_each_map_elem callback) in
// prog, as compiled: the verifier may leave some out.
func funcLen(prog *ebpf.ProgramSpec, sym string) int {
	n, in := 0, false
	for _, ins := range prog.Instructions {
		if s := ins.Symbol(); s != "" {
			in = s == sym
		}
		if in {
			n++
		}
	}
	return n
}

// BenchmarkWalkCost prices what a bpf_for_each_map_elem callback adds to
// the walk of a CT map of 1M entries, in the same run: the empty walk
// (the floor), the reads every judgement makes, those reads followed by 4,
// 8, 16 and 32 rounds of dependent arithmetic and by 16 and 32 rounds on
// four independent chains (bpf/walkcost.bpf.c), and the foreach engine's
// steady-state sweep (mark mode, nothing new to expire). Reported for each: CPU ns per entry, its ratio to the floor,
// and its callback's instructions. The programs run in turn, forwards
// then backwards, so that a machine growing busier or idler charges them
// alike.
//
//	go test ./pkg/sweep -run '^$' -bench WalkCost -benchtime 10x
func BenchmarkWalkCost(b *testing.B) {
	const n = 1_000_000
	bn := newBenchNode(b, n)
	walk, read := floors(b, bn)
	spec, err := loadWalkCost()
	if err != nil {
		b.Fatal(err)
	}
	readInsns := funcLen(spec.Programs["read_only"], "read_only_cb")
	delete(spec.Programs, "read_only") // floors loaded it
	coll, err := ebpf.NewCollectionWithOptions(spec, *overBenchCT(b, bn, spec))
	if err != nil {
		b.Fatal(err)
	}
	defer coll.Close()

	s, err := New(Config{BPFFS: bn.fs, Profile: bn.r.Profile, Clock: bn.clock, Node: bn.node, Mode: Mark, Engine: ForEach}, bn.st)
	if err != nil {
		b.Skipf("foreach: %v", err)
	}
	defer s.Close()
	if _, err := s.Sweep(); err != nil { // marks what has expired
		b.Fatal(err)
	}
	sweeper, err := loadSweeper()
	if err != nil {
		b.Fatal(err)
	}

	type run struct {
		name  string
		insns int
		do    func() error
	}
	prog := func(p *ebpf.Program) func() error {
		return func() error { _, err := p.Run(nil); return err }
	}
	runs := []run{
		{name: "floor", insns: funcLen(sweeper.Programs["walk_only"], "nothing"), do: prog(walk)},
		{name: "read_only", insns: readInsns, do: prog(read)},
	}
	for _, name := range []string{"work4", "work8", "work16", "work32", "wide16", "wide32"} {
		runs = append(runs, run{name: name, insns: funcLen(spec.Programs[name], name+"_cb"), do: prog(coll.Programs[name])})
	}
	runs = append(runs, run{name: "foreach", insns: funcLen(sweeper.Programs["sweep_all_mark_tcp4"], "visit_mark_tcp4"),
		do: func() error { _, err := s.Sweep(); return err }})

	cpu := make([]time.Duration, len(runs))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range runs {
			if i%2 == 1 {
				j = len(runs) - 1 - j
			}
			c0 := cpuTime()
			if err := runs[j].do(); err != nil {
				b.Fatalf("%s: %v", runs[j].name, err)
			}
			cpu[j] += cpuTime() - c0
		}
	}
	b.StopTimer()
	for j, r := range runs {
		b.ReportMetric(float64(cpu[j].Nanoseconds())/float64(b.N)/n, r.name+"-ns/entry")
		if j > 0 {
			b.ReportMetric(float64(cpu[j])/float64(cpu[0]), r.name+"/floor")
		}
		b.ReportMetric(float64(r.insns), r.name+"-insns")
	}
}
