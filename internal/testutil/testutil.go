// Package testutil has helpers for tests: for those that need the kernel,
// and a log sink safe for goroutines.
package testutil

import (
	"os"
	"testing"

	"github.com/cilium/ebpf/rlimit"

	"github.com/egwct/egwct/internal/bpffs"
)

// RequireRoot skips the test unless it runs as root (BPF maps and mounts
// need it). CI runs as root, so the privileged tests always run there.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the privileged tests as root")
		}
		t.Skip("needs root")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("remove memlock rlimit: %v", err)
	}
}

// PrivateBPFFS mounts a new bpffs in a temporary folder for the test and
// unmounts it afterwards, so that tests never see or touch the host's
// /sys/fs/bpf.
func PrivateBPFFS(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	dir := t.TempDir()
	if _, err := bpffs.Mount(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bpffs.Unmount(dir); err != nil {
			t.Error(err)
		}
	})
	return dir
}
