package sweep

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/policy"
)

// TestOpenStateReadOnly: a viewer reads the set in force while the
// writer holds the lock, and cannot change it.
func TestOpenStateReadOnly(t *testing.T) {
	bpffs := testutil.PrivateBPFFS(t)
	if _, err := OpenStateReadOnly(bpffs); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no state: %v", err)
	}
	w, err := OpenState(bpffs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	set := []Policy{
		{Name: "a", Timeouts: [4]uint32{0, 300, 0, 30}, Keys: []policy.Key{
			{Pod: netip.MustParseAddr("10.1.0.5"), Dest: netip.MustParsePrefix("198.18.0.0/16")},
			{Pod: netip.MustParseAddr("10.1.0.5"), Dest: netip.MustParsePrefix("198.18.7.0/24"), Excluded: true},
		}},
		{Name: "b", Timeouts: [4]uint32{10, 0, 0, 0}, Keys: []policy.Key{
			{Pod: netip.MustParseAddr("10.1.0.6"), Dest: netip.MustParsePrefix("0.0.0.0/0")},
			{Pod: netip.MustParseAddr("fd00:10:1::6"), Dest: netip.MustParsePrefix("2001:db8::/32")},
			{Pod: netip.MustParseAddr("fd00:10:1::6"), Dest: netip.MustParsePrefix("2001:db8:7::/48"), Excluded: true},
		}},
	}
	if err := w.Replace(set); err != nil {
		t.Fatal(err)
	}
	r, err := OpenStateReadOnly(bpffs)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := r.Set()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, set) {
		t.Errorf("Set() = %+v, want %+v", got, set)
	}
	if err := r.names.Put(uint32(1), [nameSize]byte{'x'}); err == nil {
		t.Error("the read-only state accepted a write")
	}
}

// TestUpgradeRemovesOldState: a new schema's state is built beside an
// old one; the old one is removed once no egwct holds it, not before.
func TestUpgradeRemovesOldState(t *testing.T) {
	bpffs := testutil.PrivateBPFFS(t)
	old := filepath.Join(bpffs, "egwct", "v2")
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	// An old agent still runs: it holds its state's lock.
	held, err := os.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(held.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	st, err := OpenState(bpffs, true)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := os.Stat(old); err != nil {
		t.Fatalf("the old state went while an egwct held it: %v", err)
	}
	held.Close() // the old agent stops
	st, err = OpenState(bpffs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := os.Stat(old); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the old state stayed after the old agent stopped: %v", err)
	}
	if _, err := os.Stat(Dir(bpffs)); err != nil {
		t.Fatal(err)
	}
}
