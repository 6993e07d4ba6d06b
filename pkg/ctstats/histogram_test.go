package ctstats

import (
	"testing"
	"time"
)

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
		var h Histogram
		for _, d := range tc.idle {
			h.Add(d)
		}
		if p50, p99 := h.Quantile(0.5), h.Quantile(0.99); p50 != tc.p50 || p99 != tc.p99 {
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
