package metrics

import (
	"strings"
	"testing"

	"github.com/egwct/egwct/pkg/sweep"
)

// TestBadInput: every refused input gives a clear error and changes
// nothing.
func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"negative UnreadyAfter", Options{UnreadyAfter: -1}, "UnreadyAfter must not be negative, got -1"},
		{"negative TopPorts", Options{TopPorts: -2}, "TopPorts must not be negative"},
		{"negative PortCapacity", Options{PortCapacity: -3}, "PortCapacity must not be negative"},
	} {
		if _, err := New(BuildInfo{}, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}

	m := newMetrics(t, Options{})
	if err := m.Sweep(nil, nil, at); err == nil {
		t.Error("Sweep of a nil result: no error")
	}
	if err := m.Ready(); err == nil {
		t.Error("ready after a refused Sweep")
	}
	if err := m.Policies([]Policy{{Name: "a", Valid: true}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ps   []Policy
		want string
	}{
		{"no name", []Policy{{Name: "b"}, {Valid: true}}, "policy 1 has no name"},
		{"negative keys", []Policy{{Name: "b", Keys: -1}}, `policy "b": -1 keys is negative`},
	} {
		if err := m.Policies(tc.ps); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	_, fams := scrape(t, m)
	if got := labelsOf(fams, "egwct_policy_valid", "policy"); len(got) != 1 || got[0] != "a" {
		t.Errorf("a refused policy set changed the series: %q", got)
	}
}

func TestDefaults(t *testing.T) {
	m := newMetrics(t, Options{})
	if m.health.unreadyAfter != DefaultUnreadyAfter || m.top != DefaultTopPorts || m.capacity != DefaultPortCapacity {
		t.Errorf("defaults: unreadyAfter %d, top %d, capacity %d", m.health.unreadyAfter, m.top, m.capacity)
	}
	b, err := New(BuildInfo{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, fams := scrape(t, b)
	if got := labelsOf(fams, "egwct_build_info", "version"); len(got) != 1 || got[0] != "unknown" {
		t.Errorf("version of an unnamed build: %q", got)
	}
	// The series of an unset engine and cluster do not exist.
	for _, f := range []string{"egwct_sweep_engine_info", "egwct_cluster_up", "egwct_ct_entries", "egwct_policy_valid"} {
		if fams[f] != nil {
			t.Errorf("%s before anything was recorded", f)
		}
	}
}

func TestIdleHistogram(t *testing.T) {
	if len(sweep.Counts{}.Idle) != len(sweep.IdleBuckets)+1 {
		t.Fatalf("sweep.Counts has %d idle buckets for %d bounds", len(sweep.Counts{}.Idle), len(sweep.IdleBuckets))
	}
	for _, tc := range []struct {
		name    string
		idle    [8]uint64
		count   uint64
		sum     float64
		buckets map[float64]uint64
	}{
		{"empty", [8]uint64{}, 0, 0, map[float64]uint64{10: 0, 60: 0, 300: 0, 900: 0, 3600: 0, 7200: 0, 21600: 0}},
		{"all fresh", [8]uint64{5}, 5, 0, map[float64]uint64{10: 5, 60: 5, 300: 5, 900: 5, 3600: 5, 7200: 5, 21600: 5}},
		{"all beyond 6h", [8]uint64{7: 2}, 2, 2 * 21600, map[float64]uint64{10: 0, 60: 0, 300: 0, 900: 0, 3600: 0, 7200: 0, 21600: 0}},
		{"spread", [8]uint64{1, 1, 0, 0, 2, 0, 0, 1}, 5, 10 + 2*900 + 21600, map[float64]uint64{10: 1, 60: 2, 300: 2, 900: 2, 3600: 4, 7200: 4, 21600: 4}},
	} {
		count, sum, buckets := idleHistogram(&sweep.Counts{Idle: tc.idle})
		if count != tc.count || sum != tc.sum || len(buckets) != len(tc.buckets) {
			t.Errorf("%s: count %d sum %g buckets %v, want %d %g %v", tc.name, count, sum, buckets, tc.count, tc.sum, tc.buckets)
			continue
		}
		for le, n := range tc.buckets {
			if buckets[le] != n {
				t.Errorf("%s: bucket le=%g holds %d, want %d", tc.name, le, buckets[le], n)
			}
		}
	}
}

// TestConcurrentUse records and scrapes from several goroutines at once
// (run with -race).
func TestConcurrentUse(t *testing.T) {
	m := newMetrics(t, Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 50; i++ {
			_ = m.Policies([]Policy{{Name: "a", Valid: i%2 == 0, InForce: true}})
			_ = m.Sweep(map[uint32]string{1: "a"}, result(0, 1), at)
			m.SweepFailed(nil)
			m.Engine("iterator")
			m.ClusterUp(i%2 == 0)
		}
	}()
	for i := 0; i < 20; i++ {
		if _, err := m.Gatherer().Gather(); err != nil {
			t.Fatal(err)
		}
		_ = m.Ready()
	}
	<-done
}
