package mapsource

import (
	"os"
	"testing"
	"time"

	"github.com/egwct/egwct/internal/tui"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// BenchmarkSnapshotLab reads a lab node given by EGWCT_TOP_BENCH_FS
// (`egwct lab up --flows 1000000` and `egwct apply`): every map each
// time, the CT maps only (the SNAT reading cached), and as top does; and
// the first frame of a new top, quick (without the SNAT maps, as top
// asks for it) against a full first snapshot.
func BenchmarkSnapshotLab(b *testing.B) {
	fs := os.Getenv("EGWCT_TOP_BENCH_FS")
	if fs == "" {
		b.Skip("EGWCT_TOP_BENCH_FS not set")
	}
	r, _ := profiles.Resolve("1.18.3")
	for _, bc := range []struct {
		name  string
		every time.Duration
	}{{"all", -1}, {"ct-only", time.Hour}, {"adaptive", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			src := &Source{BPFFS: fs, Profile: r.Profile, Clock: nodeconfig.Clock{Mode: nodeconfig.Ktime},
				Timeouts: map[profiles.State]time.Duration{1: 8000 * time.Second}, SNATEvery: bc.every}
			if _, err := src.Snapshot(tui.Query{Window: time.Second}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := src.Snapshot(tui.Query{Window: time.Second}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, quick := range []bool{false, true} {
		b.Run(map[bool]string{false: "first-full", true: "first-quick"}[quick], func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				src := &Source{BPFFS: fs, Profile: r.Profile, Clock: nodeconfig.Clock{Mode: nodeconfig.Ktime},
					Timeouts: map[profiles.State]time.Duration{1: 8000 * time.Second}}
				if _, err := src.Snapshot(tui.Query{Window: time.Second, Quick: quick}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
