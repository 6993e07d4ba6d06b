//go:build !windows

package sweep

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// errLocked and errAgain are the errors of a taken lock and of a read to
// retry.
var (
	errLocked error = unix.EWOULDBLOCK
	errAgain  error = unix.EAGAIN
)

// tryLock takes an exclusive flock on f without waiting.
func tryLock(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) }

// attachIter attaches the iterator prog to map m.
func attachIter(prog *ebpf.Program, m *ebpf.Map) (*link.Iter, error) {
	return link.AttachIter(link.IterOptions{Program: prog, Map: m})
}

// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK, counted over
// every process of the user (root's includes Cilium's maps): egwct lifts
// its limit before it creates a map or loads a program. Later kernels
// charge the memory cgroup and nothing changes.
var (
	memlockOnce sync.Once
	memlockErr  error // why the limit could not be lifted; nil if it was or need not be
)

// liftMemlock lifts RLIMIT_MEMLOCK where the kernel charges BPF memory to
// it. Failing to (without CAP_SYS_RESOURCE) is not an error yet: the
// limit may suffice; withMemlock explains the refusal that follows if not.
func liftMemlock() {
	memlockOnce.Do(func() { memlockErr = rlimit.RemoveMemlock() })
}

// withMemlock adds to the kernel's EPERM, when the limit could not be
// lifted, what the limit is and how to lift it: without it, the refusal
// reads like a missing capability.
func withMemlock(err error) error {
	if err == nil || memlockErr == nil || !errors.Is(err, unix.EPERM) {
		return err
	}
	limit := "unknown"
	var l unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &l) == nil {
		limit = "unlimited"
		if l.Cur != unix.RLIM_INFINITY {
			limit = strconv.FormatUint(l.Cur>>10, 10) + " KiB"
		}
	}
	return fmt.Errorf("%w (this kernel charges BPF memory to RLIMIT_MEMLOCK, %s here, and egwct could not lift it: %v; "+
		"run egwct with CAP_SYS_RESOURCE, as the chart does, or raise the limit: ulimit -l unlimited)", err, limit, memlockErr)
}

// haveCmpXchg probes for BPF_CMPXCHG (Linux 5.12), which the mark
// programs hold: a kernel without it refuses them with "BPF_STX uses
// reserved fields". Only an error wrapping ebpf.ErrNotSupported is
// conclusive.
var haveCmpXchg = sync.OnceValue(func() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: cmpxchgProbe()})
	if errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%w: %w", ebpf.ErrNotSupported, err)
	}
	if err == nil {
		prog.Close()
	}
	return err
})

// cmpxchgProbe is a program that compares and swaps a word on its stack.
func cmpxchgProbe() asm.Instructions {
	cas := asm.CmpXchg.Mem(asm.RFP, asm.R1, asm.Word, -4)
	// cilium/ebpf v0.22.0 encodes the immediate of an atomic operation
	// from Constant, not from the operation: a CmpXchg without it is an
	// atomic add, which every kernel takes.
	cas.Constant = int64(asm.CmpXchg >> 8)
	return asm.Instructions{
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Imm(asm.R0, 0),
		asm.Mov.Imm(asm.R1, 1),
		cas,
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}
}
