//go:build linux

// What older kernels and stricter nodes refuse, and what egwct says then.

package sweep

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// lowMemlock gives this process the RLIMIT_MEMLOCK of a login shell on
// many distributions (64 KiB, soft and hard). Lowering the hard limit
// cannot be undone without CAP_SYS_RESOURCE, which some machines lack, so
// only a child process (inChild) lowers it. egwct then lifts it again.
func lowMemlock(t *testing.T) {
	t.Helper()
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 64 << 10, Max: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	memlockOnce, memlockErr = sync.Once{}, nil
}

// inChild reports whether this is the child process of the calling test;
// if not, it runs the test again in a child process, whose limits and
// capabilities it may change, and fails if the child fails.
func inChild(t *testing.T) bool {
	t.Helper()
	if os.Getenv("EGWCT_TEST_CHILD") == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "EGWCT_TEST_CHILD="+t.Name())
	out, err := cmd.CombinedOutput()
	t.Logf("child process:\n%s", out)
	if err != nil {
		t.Fatalf("child process: %v", err)
	}
	return false
}

// applyOnce does what egwct apply does on the node: open the state, load
// the sweeper (auto), put the set in force and sweep in reclaim mode.
func applyOnce(n *node, set []Policy) (Choice, *Result, error) {
	st, err := OpenState(n.fs, true)
	if err != nil {
		return Choice{}, nil, err
	}
	defer st.Close()
	cfg := n.config(Reclaim, Auto)
	cfg.Next = set
	s, err := New(cfg, st)
	if err != nil {
		return Choice{}, nil, err
	}
	defer s.Close()
	if err := st.Replace(set); err != nil {
		return Choice{}, nil, err
	}
	res, err := s.Sweep()
	return s.Choice(), res, err
}

// reclaimedOne checks that the sweep deleted dualStackNode's expired flow.
func reclaimedOne(t *testing.T, res *Result) {
	t.Helper()
	if got := res.Counts[2]; got == nil || got[profiles.StateEstablished].DeletedCT != 1 {
		t.Errorf("the expired flow of a/v6 was not deleted: %+v", got)
	}
}

// TestMemlockLifted: kernels before 5.11 charge BPF memory to
// RLIMIT_MEMLOCK, counted over all of a user's processes (root's holds
// Cilium's maps). With a 64 KiB limit, egwct lifts it and loads the same
// engine as with none; on later kernels there is nothing to lift.
func TestMemlockLifted(t *testing.T) {
	if !inChild(t) {
		return
	}
	n, v4, v6 := dualStackNode(t)
	want, _, err := applyOnce(n, []Policy{v4, v6})
	if err != nil {
		t.Fatal(err)
	}
	n, _, _ = dualStackNode(t)
	lowMemlock(t)
	got, res, err := applyOnce(n, []Policy{v4, v6})
	if err != nil {
		t.Fatalf("with RLIMIT_MEMLOCK at 64 KiB: %v", err)
	}
	if memlockErr != nil {
		t.Errorf("the limit was not lifted: %v", memlockErr)
	}
	if got.Engine != want.Engine {
		t.Errorf("with RLIMIT_MEMLOCK at 64 KiB the engine is %s, want %s as without a limit", got, want)
	}
	reclaimedOne(t, res)
}

// TestMemlockNotLifted: without CAP_SYS_RESOURCE egwct cannot lift the
// limit. Where the kernel charges it, the error says which limit refused
// and how to lift it, instead of a bare "operation not permitted" that
// reads like a missing capability; elsewhere egwct works as usual.
func TestMemlockNotLifted(t *testing.T) {
	if !inChild(t) {
		return
	}
	n, v4, v6 := dualStackNode(t)
	lowMemlock(t)
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome)
	go func() {
		// Capabilities belong to a thread: this one drops
		// CAP_SYS_RESOURCE and, never unlocked, ends with the goroutine.
		runtime.LockOSThread()
		if err := dropCapability(unix.CAP_SYS_RESOURCE); err != nil {
			done <- outcome{err: err}
			return
		}
		_, res, err := applyOnce(n, []Policy{v4, v6})
		done <- outcome{res, err}
	}()
	o := <-done
	if memlockErr == nil {
		// The kernel charges the memory cgroup.
		if o.err != nil {
			t.Fatal(o.err)
		}
		reclaimedOne(t, o.res)
		return
	}
	t.Logf("the kernel charges RLIMIT_MEMLOCK: %v", o.err)
	if o.err == nil {
		t.Fatal("egwct loaded its maps and programs within 64 KiB of locked memory")
	}
	for _, want := range []string{"RLIMIT_MEMLOCK, 64 KiB here", "CAP_SYS_RESOURCE", "ulimit -l unlimited"} {
		if !strings.Contains(o.err.Error(), want) {
			t.Errorf("error %q does not say %q", o.err, want)
		}
	}
}

// dropCapability removes capability c from the calling thread.
func dropCapability(c int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[c/32].Effective &^= 1 << (c % 32)
	data[c/32].Permitted &^= 1 << (c % 32)
	data[c/32].Inheritable &^= 1 << (c % 32)
	return unix.Capset(&hdr, &data[0])
}

// TestCmpXchgProbe: the probe holds a real compare-and-swap (opcode
// 0xc3, immediate BPF_CMPXCHG 0xf1), not the atomic add an encoding
// without the operation gives, which every kernel takes; and a kernel it
// finds without one refuses the mark programs saying so.
func TestCmpXchgProbe(t *testing.T) {
	var b bytes.Buffer
	if err := cmpxchgProbe().Marshal(&b, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0xc3, 0x1a, 0xfc, 0xff, 0xf1, 0, 0, 0}; !bytes.Contains(b.Bytes(), want) {
		t.Fatalf("the probe % x holds no cmpxchg (% x)", b.Bytes(), want)
	}
	err := haveCmpXchg()
	t.Logf("compare-and-swap: %v", err)
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return
	}
	n := newNode(t, "1.18.3", nodeconfig.Clock{Mode: nodeconfig.Ktime})
	st, err := OpenState(n.fs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := New(n.config(Mark, Iterator), st); err == nil || !strings.Contains(err.Error(), "compare-and-swap") {
		t.Errorf("iterator in mark mode: %v, want a refusal naming the compare-and-swap", err)
	}
}
