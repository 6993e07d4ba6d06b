package ctmap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egwct/egwct/pkg/nodeconfig"
)

// Now returns the datapath's current time in lifetime units, read the way
// the agent's GC reads it (cilium-datapath.md §4): ktime is CLOCK_MONOTONIC
// in seconds; jiffies is the "timestamp" of /proc/schedstat shifted right
// by 8. Both are truncated to u32, as the datapath does.
func Now(c nodeconfig.Clock) (uint32, error) {
	if c.Mode == nodeconfig.Jiffies {
		j, err := Jiffies()
		if err != nil {
			return 0, err
		}
		return uint32(j >> 8), nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(CLOCK_MONOTONIC): %w", err)
	}
	return uint32(ts.Sec), nil
}

// Jiffies reads the kernel's jiffies counter: from the "timestamp" line of
// /proc/schedstat as the agent does, or, on kernels built without
// schedstats, from the "jiffies:" line of /proc/timer_list.
func Jiffies() (uint64, error) {
	for _, src := range []struct{ file, prefix string }{
		{"/proc/schedstat", "timestamp "},
		{"/proc/timer_list", "jiffies: "},
	} {
		f, err := os.Open(src.file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := bytes.CutPrefix(sc.Bytes(), []byte(src.prefix)); ok {
				f.Close()
				return strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			}
		}
		f.Close()
	}
	return 0, errors.New("cannot read jiffies: neither /proc/schedstat nor /proc/timer_list has them")
}

// KernelHZ measures the kernel's HZ as the agent does: two jiffies reads at
// least 100 ms apart, rounded to the nearest of 1000, 300, 250 and 100.
func KernelHZ() (int, error) {
	j0, err := Jiffies()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	time.Sleep(100 * time.Millisecond)
	j1, err := Jiffies()
	if err != nil {
		return 0, err
	}
	rate := float64(j1-j0) / time.Since(t0).Seconds()
	best, bestDiff := 0, math.Inf(1)
	for _, hz := range []int{1000, 300, 250, 100} {
		if d := math.Abs(rate - float64(hz)); d < bestDiff {
			best, bestDiff = hz, d
		}
	}
	return best, nil
}
