package nodeconfig

import (
	"fmt"
	"math"
	"time"
)

// ClockMode is the datapath clock the lifetimes of CT entries count in.
type ClockMode uint8

const (
	// Ktime counts seconds of CLOCK_MONOTONIC (the default).
	Ktime ClockMode = iota
	// Jiffies counts units of 2^8 jiffies (enable-bpf-clock-probe=true).
	Jiffies
)

func (m ClockMode) String() string {
	if m == Jiffies {
		return "jiffies"
	}
	return "ktime"
}

// jiffyShift is BPF_MONO_SCALER: a jiffies-mode unit is 256 jiffies.
const jiffyShift = 8

// Clock is a datapath clock: its mode and, for jiffies, the kernel's HZ.
type Clock struct {
	Mode ClockMode
	HZ   int
}

func (c Clock) String() string {
	if c.Mode == Jiffies {
		return fmt.Sprintf("jiffies (HZ=%d, 1 unit = %s)", c.HZ, c.Unit())
	}
	return "ktime (1 unit = 1s)"
}

// Unit is the duration of one unit of lifetime.
func (c Clock) Unit() time.Duration {
	if c.Mode == Jiffies && c.HZ > 0 {
		return time.Duration(int64(time.Second) << jiffyShift / int64(c.HZ))
	}
	return time.Second
}

// Units converts a timeout to lifetime units as the datapath does: the
// agent truncates to whole seconds and bpf_sec_to_mono scales those by
// HZ >> 8 in jiffies mode.
func (c Clock) Units(d time.Duration) uint64 {
	s := uint64(d / time.Second)
	if c.Mode == Jiffies && c.HZ > 0 {
		return s * uint64(c.HZ) >> jiffyShift
	}
	return s
}

// Duration converts lifetime units back to time.
func (c Clock) Duration(units uint64) time.Duration {
	if c.Mode == Jiffies && c.HZ > 0 {
		j, hz := units<<jiffyShift, uint64(c.HZ)
		if j/hz > math.MaxInt64/uint64(time.Second) {
			return math.MaxInt64
		}
		return time.Duration(j/hz)*time.Second + time.Duration(j%hz*uint64(time.Second)/hz)
	}
	if units > math.MaxInt64/uint64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(units) * time.Second
}

// Effective is the timeout a datapath with this clock actually applies
// for d: d truncated to whole seconds, then to whole units.
func (c Clock) Effective(d time.Duration) time.Duration {
	return c.Duration(c.Units(d))
}
