//go:build !linux

package bpffs

import (
	"errors"
	"runtime"
)

// ErrUnsupported is what every function returns where there is no bpffs.
var ErrUnsupported = errors.New("BPF filesystems exist only on Linux, not on " + runtime.GOOS)

// IsMounted reports whether dir is the root of a mounted bpffs.
func IsMounted(string) (bool, error) { return false, ErrUnsupported }

// Mount creates dir if needed and mounts a new bpffs there.
func Mount(string) (bool, error) { return false, ErrUnsupported }

// Unmount unmounts the bpffs at dir.
func Unmount(string) error { return ErrUnsupported }
