package tui

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// flowTable is the flows view's table over n synthetic flows.
func flowTable(n int) *table {
	m := New(Options{Refresh: time.Second})
	m.snap = &Snapshot{Flows: flows(n)}
	t := m.flowsTable()
	t.setRows(n, "", false)
	return t
}

// TestFilterIncremental: whatever the order of keystrokes (typing,
// deleting, pasting), the rows shown are those a filter from scratch
// shows, in the same order.
func TestFilterIncremental(t *testing.T) {
	tb := flowTable(3000)
	rng := rand.New(rand.NewPCG(7, 8))
	alphabet := "0123456789.:ESTab"
	f := ""
	for i := 0; i < 400; i++ {
		switch op := rng.IntN(4); {
		case op < 2 || f == "":
			f += string(alphabet[rng.IntN(len(alphabet))])
		case op == 2:
			f = f[:len(f)-1]
		default:
			f = f[rng.IntN(len(f)):]
		}
		tb.setFilter(f)
		fresh := flowTable(3000)
		fresh.filter = f
		fresh.rebuild()
		if !slices.Equal(tb.idx, fresh.idx) {
			t.Fatalf("filter %q: %d rows, from scratch %d", f, len(tb.idx), len(fresh.idx))
		}
	}
	// New rows (a refresh) drop the cached text.
	tb.setFilter("198.18.0.")
	m := New(Options{Refresh: time.Second})
	m.snap = &Snapshot{Flows: flows(10)}
	small := m.flowsTable()
	small.filter = "198.18.0."
	small.lower = tb.lower
	small.setRows(10, "", false)
	if len(small.idx) != 10 || strings.Count(strings.Join(small.lower, "|"), "198.18.0.") != 10 {
		t.Fatalf("after new rows: %v", small.idx)
	}
}

// BenchmarkFilterKeystroke types a filter into the flows view of 300,000
// flows, one character at a time, and reports the cost of a keystroke;
// in the same run, the baseline formats and sorts every row again at
// each keystroke, as top did before.
//
//	go test ./internal/tui -run '^$' -bench FilterKeystroke
func BenchmarkFilterKeystroke(b *testing.B) {
	const n = 300_000
	typed := "198.18.1"
	var first, inc, full time.Duration
	for i := 0; i < b.N; i++ {
		tb := flowTable(n)
		t0 := time.Now()
		tb.setFilter(typed[:1])
		first += time.Since(t0)
		for j := 2; j <= len(typed); j++ {
			tb.setFilter(typed[:j])
		}
		inc += time.Since(t0)

		old := flowTable(n)
		t1 := time.Now()
		for j := 1; j <= len(typed); j++ {
			old.lower = old.lower[:0]
			old.filter = typed[:j]
			old.rebuild()
		}
		full += time.Since(t1)
		if !slices.Equal(tb.idx, old.idx) {
			b.Fatal("different rows")
		}
	}
	per := func(d time.Duration) float64 { return float64(d.Milliseconds()) / float64(b.N*len(typed)) }
	b.ReportMetric(per(inc), "ms/keystroke")
	b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "first-ms")
	b.ReportMetric(float64((inc-first).Milliseconds())/float64(b.N*(len(typed)-1)), "later-ms")
	b.ReportMetric(per(full), "baseline-ms/keystroke")
	b.ReportMetric(float64(full)/float64(inc), "speedup")
}
