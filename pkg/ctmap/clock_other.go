//go:build !linux

package ctmap

import (
	"errors"
	"runtime"

	"github.com/egwct/egwct/pkg/nodeconfig"
)

// errNoClock: the datapath's clocks are Linux's.
var errNoClock = errors.New("the datapath clock is Linux's; there is none on " + runtime.GOOS)

// Now returns the datapath's current time in lifetime units; only on Linux.
func Now(nodeconfig.Clock) (uint32, error) { return 0, errNoClock }

// Jiffies reads the kernel's jiffies counter; only on Linux.
func Jiffies() (uint64, error) { return 0, errNoClock }

// KernelHZ measures the kernel's HZ; only on Linux.
func KernelHZ() (int, error) { return 0, errNoClock }
