package sweep

import (
	"errors"
	"io"
	"os"

	"github.com/cilium/ebpf"
)

// The sweeper needs Linux: these make the package build for the commands
// that run on Windows (validate, profiles), and fail if ever called.
var (
	errNotLinux       = errors.New("the sweeper needs Linux")
	errLocked   error = errNotLinux
	errAgain    error = errNotLinux
)

func tryLock(*os.File) error { return errNotLinux }

type iterLink struct{}

func (iterLink) Open() (io.ReadCloser, error) { return nil, errNotLinux }
func (iterLink) Close() error                 { return nil }

func attachIter(*ebpf.Program, *ebpf.Map) (iterLink, error) { return iterLink{}, errNotLinux }

func liftMemlock() {}

func withMemlock(err error) error { return err }

func haveCmpXchg() error { return errNotLinux }
