package ctstats

import (
	"math"
	"math/bits"
	"time"
)

// Histogram counts durations in whole seconds in buckets about 6 % wide:
// exact below 16 s, then 16 buckets per power of two. The zero value is
// empty.
type Histogram struct {
	n      int
	counts []int
}

func bucketOf(sec uint64) int {
	if sec < 16 {
		return int(sec)
	}
	e := bits.Len64(sec) - 5
	return 16 + e*16 + int(sec>>e-16)
}

// lowerBound is the smallest value of a bucket.
func lowerBound(b int) uint64 {
	if b < 16 {
		return uint64(b)
	}
	e := (b - 16) / 16
	return uint64(16+(b-16)%16) << e
}

// Add counts d; a negative d counts as 0.
func (h *Histogram) Add(d time.Duration) {
	sec := uint64(0)
	if d > 0 {
		sec = uint64(d / time.Second)
	}
	b := bucketOf(sec)
	if b >= len(h.counts) {
		h.counts = append(h.counts, make([]int, b+1-len(h.counts))...)
	}
	h.counts[b]++
	h.n++
}

// Count is how many durations were added.
func (h *Histogram) Count() int { return h.n }

// Quantile returns the lower bound of the bucket holding quantile q
// (nearest rank), 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := max(1, int(math.Ceil(q*float64(h.n))))
	seen := 0
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(lowerBound(b)) * time.Second
		}
	}
	return 0
}
