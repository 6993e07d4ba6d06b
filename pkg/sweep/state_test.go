package sweep

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
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

// TestAgentStatus: the agent's status round-trips through the pinned
// record, reads on a read-only state, clears, refuses what it cannot
// hold, and a v3 state pinned without the record reads as no status.
func TestAgentStatus(t *testing.T) {
	bpffs := testutil.PrivateBPFFS(t)
	w, err := OpenState(bpffs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := OpenStateReadOnly(bpffs)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, ok, err := r.AgentStatus(); ok || err != nil {
		t.Fatalf("before any agent: ok %v, %v", ok, err)
	}
	started := time.Unix(1700000000, 123)
	long := strings.Repeat("v", 100)
	tests := []struct {
		name string
		in   AgentStatus
		want AgentStatus // zero: refused
	}{
		{"agent", AgentStatus{Mode: Mark, Engine: "foreach", Interval: 3 * time.Second, Version: "v0.4.0", PID: 7, Started: started, Heartbeat: started.Add(time.Minute), PortCapacity: 32767},
			AgentStatus{Mode: Mark, Engine: "foreach", Interval: 3 * time.Second, Version: "v0.4.0", PID: 7, Started: started, Heartbeat: started.Add(time.Minute), PortCapacity: 32767}},
		{"port capacity out of range", AgentStatus{PID: 1, Heartbeat: started, PortCapacity: 65536}, AgentStatus{}},
		{"long text is cut", AgentStatus{Engine: "iterator-with-a-long-name", Version: long, PID: 1, Heartbeat: started},
			AgentStatus{Engine: "iterator-with-a-", Version: long[:agentVersionSize], PID: 1, Heartbeat: started}},
		{"no start time", AgentStatus{PID: 1, Heartbeat: started}, AgentStatus{PID: 1, Heartbeat: started}},
		{"no heartbeat", AgentStatus{PID: 1, Started: started}, AgentStatus{}},
		{"negative pid", AgentStatus{PID: -1, Heartbeat: started}, AgentStatus{}},
		{"negative interval", AgentStatus{Interval: -time.Second, Heartbeat: started}, AgentStatus{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := w.SetAgentStatus(tc.in)
			if (err != nil) != tc.want.Heartbeat.IsZero() {
				t.Fatalf("SetAgentStatus(%+v): %v", tc.in, err)
			}
			if err != nil {
				return
			}
			got, ok, err := r.AgentStatus()
			if !ok || err != nil || got != tc.want {
				t.Errorf("AgentStatus() = %+v, %v, %v; want %+v", got, ok, err, tc.want)
			}
		})
	}
	if err := r.SetAgentStatus(AgentStatus{PID: 1, Heartbeat: started}); err == nil {
		t.Error("the read-only state accepted a status")
	}
	later := started.Add(time.Hour)
	if err := w.AgentHeartbeat(later); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := r.AgentStatus(); !ok || err != nil || !got.Heartbeat.Equal(later) || got.PID != 1 {
		t.Errorf("after a heartbeat: %+v, %v, %v", got, ok, err)
	}
	if err := w.ClearAgentStatus(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := r.AgentStatus(); ok || err != nil {
		t.Errorf("after clear: ok %v, %v", ok, err)
	}
	if err := w.AgentHeartbeat(later); err == nil {
		t.Error("a heartbeat without a status succeeded")
	}

	// A v3 state pinned by an egwct without the record.
	if err := os.Remove(filepath.Join(Dir(bpffs), "egwct_agent")); err != nil {
		t.Fatal(err)
	}
	old, err := OpenStateReadOnly(bpffs)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if _, ok, err := old.AgentStatus(); ok || err != nil {
		t.Errorf("state without the record: ok %v, %v", ok, err)
	}
}

// TestOutcomes: the refused policies round-trip through the pinned
// record, read-only too; what does not fit is counted in a last element.
func TestOutcomes(t *testing.T) {
	bpffs := testutil.PrivateBPFFS(t)
	w, err := OpenState(bpffs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := OpenStateReadOnly(bpffs)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := r.Outcomes(); got != nil || err != nil {
		t.Fatalf("before any: %v %v", got, err)
	}
	want := []PolicyOutcome{{Name: "pa", Outcome: "kept", Reason: "unknown-key at cegp/pa:7:7: \"x\"\n"}, {Name: "pb", Outcome: "refused"}}
	if err := w.SetOutcomes(want); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Outcomes(); err != nil || !slices.Equal(got, want) {
		t.Errorf("got %v %v, want %v", got, err, want)
	}
	many := make([]PolicyOutcome, 1000)
	for i := range many {
		many[i] = PolicyOutcome{Name: fmt.Sprintf("policy-%d", i), Outcome: "refused", Reason: strings.Repeat("r", 40)}
	}
	if err := w.SetOutcomes(many); err != nil {
		t.Fatal(err)
	}
	got, err := r.Outcomes()
	if err != nil || len(got) < 10 || len(got) >= len(many) {
		t.Fatalf("%d outcomes, %v", len(got), err)
	}
	last := got[len(got)-1]
	if last.Outcome != "omitted" || last.Reason != fmt.Sprintf("%d more policies", len(many)-len(got)+1) || got[0] != many[0] {
		t.Errorf("last %+v, first %+v", last, got[0])
	}
	if err := w.SetOutcomes(nil); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Outcomes(); len(got) != 0 || err != nil {
		t.Errorf("cleared: %v %v", got, err)
	}
}

// TestStateMemory: egwct's pinned state takes the same memory on a node
// of any size. A per-CPU map holds a copy per CPU the node may have (the
// statistics did: 1.5 MiB each, 288 MiB on a 192-CPU node, charged to
// the agent's memory limit), so none may be per-CPU; the whole state,
// with a set in force, stays within a bound of its own.
func TestStateMemory(t *testing.T) {
	st, err := OpenState(testutil.PrivateBPFFS(t), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Replace([]Policy{{Name: "a", Timeouts: [4]uint32{0, 300, 0, 30}, Keys: []policy.Key{
		{Pod: netip.MustParseAddr("10.1.0.5"), Dest: netip.MustParsePrefix("198.18.0.0/16")},
	}}}); err != nil {
		t.Fatal(err)
	}
	var id uint32
	if err := st.policies.Lookup(uint32(0), &id); err != nil {
		t.Fatal(err)
	}
	inner, err := ebpf.NewMapFromID(ebpf.MapID(id))
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	var total uint64
	for _, m := range []*ebpf.Map{st.policies, inner, st.stats, st.totals, st.names, st.status, st.agent, st.outcomes, st.engine, st.digest} {
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		switch info.Type {
		case ebpf.PerCPUArray, ebpf.PerCPUHash, ebpf.LRUCPUHash, ebpf.PerCPUCGroupStorage:
			t.Errorf("%s is a %v: its memory grows with the node's CPUs", info.Name, info.Type)
		}
		n, ok := info.Memlock()
		if !ok {
			t.Skip("this kernel does not report a map's memory")
		}
		t.Logf("%-16s %v, %d KiB", info.Name, info.Type, n>>10)
		total += n
	}
	const limit = 12 << 20
	if total > limit {
		t.Errorf("the state takes %d KiB, want at most %d KiB", total>>10, limit>>10)
	}
}

// TestDocsNameSchemaVersion: the pages that say where egwct's state lives
// name the schema version this egwct writes (they said v5 a release after
// v6 came).
func TestDocsNameSchemaVersion(t *testing.T) {
	dir := filepath.Join("..", "..", "docs")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		t.Skip("no source tree beside the test binary (make vmtest copies the binary alone)")
	}
	docs, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs found: %v", err)
	}
	named := regexp.MustCompile("<bpffs>/egwct/(v[0-9]+)|`(v[0-9]+)` is the schema version")
	seen := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range named.FindAllSubmatch(b, -1) {
			seen++
			if v := string(m[1]) + string(m[2]); v != SchemaVersion {
				t.Errorf("%s: %q names schema %s, egwct writes %s", doc, m[0], v, SchemaVersion)
			}
		}
	}
	if seen == 0 {
		t.Error("no page names the schema version")
	}
}

// TestReplaceMovesTotals: a policy's running totals follow it when a
// new set gives it another slot (slots are by position, sorted by name),
// a new policy starts from zero, and a removed one's totals go.
func TestReplaceMovesTotals(t *testing.T) {
	set := func(names ...string) []Policy {
		var out []Policy
		for i, n := range names {
			out = append(out, Policy{Name: n, Timeouts: [4]uint32{0, 300, 0, 0}, Keys: []policy.Key{
				{Pod: netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)}), Dest: netip.MustParsePrefix("198.18.0.0/16")},
			}})
		}
		return out
	}
	long := strings.Repeat("x", nameSize+10)
	for _, tc := range []struct {
		name        string
		before      []string
		after       []string
		want        []uint64 // DeletedCT of established, slots 1.. after the new set
		wantCleared uint32   // slots above the new set that must be zero
	}{
		{"added before the others", []string{"b", "c"}, []string{"a", "b", "c"}, []uint64{0, 1, 2}, 0},
		{"removed before the others", []string{"a", "b", "c"}, []string{"b", "c"}, []uint64{2, 3}, 3},
		{"unchanged", []string{"a", "b"}, []string{"a", "b"}, []uint64{1, 2}, 0},
		{"renamed", []string{"a", "b"}, []string{"a", "z"}, []uint64{1, 0}, 0},
		{"all gone", []string{"a", "b"}, nil, nil, 2},
		{"a name cut to fit", []string{long, "b"}, []string{"a", long, "b"}, []uint64{0, 1, 2}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bpffs := testutil.PrivateBPFFS(t)
			st, err := OpenState(bpffs, true)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { st.Close() }()
			if err := st.Replace(set(tc.before...)); err != nil {
				t.Fatal(err)
			}
			// Policy i of the first set has deleted i+1 entries.
			for i := range tc.before {
				tot := Totals{Expired: uint64(i + 1), DeletedCT: uint64(i + 1)}
				if err := st.totals.Put(uint32(i+1)*4+uint32(profiles.StateEstablished), &tot); err != nil {
					t.Fatal(err)
				}
			}
			// The next apply opens the state anew.
			st.Close()
			if st, err = OpenState(bpffs, true); err != nil {
				t.Fatal(err)
			}
			if err := st.Replace(set(tc.after...)); err != nil {
				t.Fatal(err)
			}
			for i, want := range tc.want {
				tot, err := st.Totals(uint32(i+1), profiles.StateEstablished)
				if err != nil || tot.DeletedCT != want || tot.Expired != want {
					t.Errorf("slot %d (%.8s): totals %+v %v, want %d deleted", i+1, tc.after[i], tot, err, want)
				}
			}
			for id := uint32(len(tc.after) + 1); id <= tc.wantCleared; id++ {
				if tot, err := st.Totals(id, profiles.StateEstablished); err != nil || tot != (Totals{}) {
					t.Errorf("slot %d of no policy: totals %+v %v", id, tot, err)
				}
			}
		})
	}
}

// TestReplaceSameSet: a set equal to the one in force (same keys,
// timeouts and names) is not written again, by this process or by the
// next one; any difference, even a name alone, is; a digest recorded for
// another map than the one in force (egwct killed between the swap and
// the record) says nothing.
func TestReplaceSameSet(t *testing.T) {
	bpffs := testutil.PrivateBPFFS(t)
	key := policy.Key{Pod: netip.MustParseAddr("10.1.0.1"), Dest: netip.MustParsePrefix("198.18.0.0/16")}
	set := func(name string, timeout uint32) []Policy {
		return []Policy{{Name: name, Timeouts: [4]uint32{0, timeout, 0, 0}, Keys: []policy.Key{key}}}
	}
	open := func() *State {
		st, err := OpenState(bpffs, true)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	inForce := func(st *State) ebpf.MapID {
		var id ebpf.MapID // 0: none yet
		_ = st.policies.Lookup(uint32(0), &id)
		return id
	}
	st := open()
	replace := func(step string, s []Policy, written bool) {
		t.Helper()
		before := inForce(st)
		if err := st.Replace(s); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if got := inForce(st) != before; got != written {
			t.Errorf("%s: written %v, want %v", step, got, written)
		}
		if keys, err := st.CurrentKeys(); err != nil || len(keys) != 1 || keys[key].Timeout[1] != s[0].Timeouts[1] {
			t.Errorf("%s: in force %v, %v", step, keys, err)
		}
	}
	replace("first", set("a", 300), true)
	replace("the same", set("a", 300), false)
	replace("another timeout", set("a", 600), true)
	replace("another name", set("b", 600), true)
	st.Close()
	st = open()
	replace("the same, by the next egwct", set("b", 600), false)
	var rec setDigest
	if err := st.digest.Lookup(uint32(0), &rec); err != nil {
		t.Fatal(err)
	}
	rec.ID++
	if err := st.digest.Put(uint32(0), &rec); err != nil {
		t.Fatal(err)
	}
	replace("the same, the digest of another map", set("b", 600), true)
	st.Close()
}
