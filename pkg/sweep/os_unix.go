//go:build !windows

package sweep

import (
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
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

// kernelRelease is uname's release, e.g. "6.12.0-1-amd64".
func kernelRelease() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}
