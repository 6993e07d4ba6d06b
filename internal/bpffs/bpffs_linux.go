package bpffs

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// IsMounted reports whether dir is the root of a mounted bpffs.
func IsMounted(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, err
	}
	return st.Type == unix.BPF_FS_MAGIC, nil
}

// Mount creates dir if needed and mounts a new bpffs there, unless one is
// already mounted. It reports whether it mounted one.
func Mount(dir string) (mounted bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	if ok, err := IsMounted(dir); err != nil || ok {
		return false, err
	}
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		return false, fmt.Errorf("mount bpffs at %s: %w", dir, err)
	}
	return true, nil
}

// Unmount unmounts the bpffs at dir; its pins go with it.
func Unmount(dir string) error {
	if err := unix.Unmount(dir, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}
