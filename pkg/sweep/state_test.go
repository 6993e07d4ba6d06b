package sweep

import (
	"errors"
	"io/fs"
	"net/netip"
	"reflect"
	"testing"

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
