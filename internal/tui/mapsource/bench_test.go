package mapsource

import (
	"os"
	"testing"
	"time"

	"github.com/egwct/egwct/internal/tui"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// BenchmarkSnapshotLab reads a lab node given by EGWCT_TOP_BENCH_FS.
func BenchmarkSnapshotLab(b *testing.B) {
	fs := os.Getenv("EGWCT_TOP_BENCH_FS")
	if fs == "" {
		b.Skip("EGWCT_TOP_BENCH_FS not set")
	}
	r, _ := profiles.Resolve("1.18.3")
	src := &Source{BPFFS: fs, Profile: r.Profile, Clock: nodeconfig.Clock{Mode: nodeconfig.Ktime}, Timeouts: map[profiles.State]time.Duration{1: 8000 * time.Second}}
	for i := 0; i < b.N; i++ {
		if _, err := src.Snapshot(tui.Query{Window: time.Second}); err != nil {
			b.Fatal(err)
		}
	}
}
