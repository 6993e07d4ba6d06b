package sweep

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/egwct/egwct/pkg/policy"
)

// SchemaVersion names the layout of egwct's pinned state. A newer egwct
// builds its state under a new version directory and removes the old one.
const SchemaVersion = "v7"

const nameSize = 256

// Dir is where egwct pins its state.
func Dir(bpffs string) string { return filepath.Join(bpffs, "egwct", SchemaVersion) }

// Key is one entry of the policy trie.
type Key = policy.Key

// Policy is one policy of a set: its display name, its timeouts in the
// datapath's clock units (0: the node's), and its keys.
type Policy struct {
	Name     string
	Timeouts [4]uint32
	Keys     []Key
}

// policyVal is what a key of the set in force maps to.
type policyVal struct {
	ID      uint32
	Timeout [4]uint32
	Flags   uint32
}

const policyExcluded = 1

// Totals are running counts per policy and state, kept by userspace.
type Totals struct {
	Expired, DeletedCT, DeletedNAT, Refreshed uint64
}

// State is egwct's pinned state.
type State struct {
	// mu orders Replace and sweeps of this process: a sweep runs with one
	// policy set from its first entry to its last. Across processes the
	// lock on the state directory allows one egwct at a time.
	mu       sync.Mutex
	dir      string
	lock     *os.File
	spec     *ebpf.CollectionSpec
	policies *ebpf.Map // outer array of maps
	stats    *ebpf.Map // the last sweep's statistics
	totals   *ebpf.Map
	names    *ebpf.Map
	status   *ebpf.Map // the last sweep; nil in a read-only state pinned before it existed
	agent    *ebpf.Map // the running agent (AgentStatus); nil in a read-only state pinned before it existed
	outcomes *ebpf.Map // the policies the agent refused (Outcomes); nil in a state pinned before it existed
	engine   *ebpf.Map // the engine of the last sweeper (EngineInUse); nil in a state pinned before it existed
	digest   *ebpf.Map // which set the policy map in force holds (setDigest); nil in a read-only state
	// set is the value of the set in force as this process last wrote or
	// read it (under the lock no other egwct changes it): the userspace
	// engine judges with it without reading 3 MB per sweep.
	set *sweeperPolicySet
	// slots is the number of policy slots of the set in force (0: not
	// known yet): the sweep statistics of higher slots are never written.
	slots uint32
}

// OpenState opens egwct's pinned state under bpffs, creating it if
// create is set, and takes its lock: one egwct at a time changes it.
func OpenState(bpffs string, create bool) (*State, error) {
	dir := Dir(bpffs)
	if _, err := os.Stat(dir); err != nil {
		if !create || !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("egwct state %s: %w", dir, err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create egwct state: %w", err)
		}
	}
	liftMemlock()
	s := &State{dir: dir}
	var err error
	if s.lock, err = os.Open(dir); err != nil {
		return nil, err
	}
	if err := tryLock(s.lock); err != nil {
		s.lock.Close()
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("%s is locked: another egwct apply or agent is running", dir)
		}
		return nil, err
	}
	if s.spec, err = loadSweeper(); err != nil {
		s.Close()
		return nil, err
	}
	opts := ebpf.MapOptions{PinPath: dir}
	open := func(spec *ebpf.MapSpec) (*ebpf.Map, error) {
		spec = spec.Copy()
		spec.Pinning = ebpf.PinByName
		m, err := ebpf.NewMapWithOptions(spec, opts)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", dir, spec.Name, withMemlock(err))
		}
		return m, nil
	}
	for _, x := range []struct {
		dst  **ebpf.Map
		spec *ebpf.MapSpec
	}{
		{&s.policies, s.spec.Maps["egwct_policies"]},
		{&s.stats, s.spec.Maps["egwct_sweep"]},
		{&s.totals, &ebpf.MapSpec{Name: "egwct_totals", Type: ebpf.Array, KeySize: 4, ValueSize: 32, MaxEntries: MaxPolicies * 4}},
		{&s.names, &ebpf.MapSpec{Name: "egwct_names", Type: ebpf.Array, KeySize: 4, ValueSize: nameSize, MaxEntries: MaxPolicies}},
		{&s.status, &ebpf.MapSpec{Name: "egwct_status", Type: ebpf.Array, KeySize: 4, ValueSize: 32, MaxEntries: 1}},
		{&s.agent, &ebpf.MapSpec{Name: "egwct_agent", Type: ebpf.Array, KeySize: 4, ValueSize: agentStatusSize, MaxEntries: 1}},
		{&s.outcomes, &ebpf.MapSpec{Name: "egwct_outcomes", Type: ebpf.Array, KeySize: 4, ValueSize: outcomesSize, MaxEntries: 1}},
		{&s.engine, &ebpf.MapSpec{Name: "egwct_engine", Type: ebpf.Array, KeySize: 4, ValueSize: engineRecordSize, MaxEntries: 1}},
		{&s.digest, &ebpf.MapSpec{Name: "egwct_digest", Type: ebpf.Array, KeySize: 4, ValueSize: setDigestSize, MaxEntries: 1}},
	} {
		if *x.dst, err = open(x.spec); err != nil {
			s.Close()
			return nil, err
		}
	}
	for _, m := range []*ebpf.Map{s.policies, s.stats, s.totals, s.names, s.status, s.agent, s.outcomes, s.engine, s.digest} {
		if err := os.Chmod(filepath.Join(dir, mapName(m)), 0o600); err != nil {
			s.Close()
			return nil, err
		}
	}
	if create {
		removeOtherVersions(bpffs)
	}
	return s, nil
}

// OtherVersions lists the schema versions of egwct state under bpffs
// other than this egwct's.
func OtherVersions(bpffs string) []string {
	ents, err := os.ReadDir(filepath.Join(bpffs, "egwct"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && e.Name() != SchemaVersion && strings.HasPrefix(e.Name(), "v") {
			out = append(out, e.Name())
		}
	}
	return out
}

// removeOtherVersions removes the state of other schema versions that no
// egwct holds: after an upgrade, the new state is built beside the old
// one (which stays in force for the old agent until it stops), and the
// old one goes once its lock is free. The new agent sweeps with its own
// state from its first sweep on, so there is no window without a set.
func removeOtherVersions(bpffs string) {
	for _, v := range OtherVersions(bpffs) {
		dir := filepath.Join(bpffs, "egwct", v)
		f, err := os.Open(dir)
		if err != nil {
			continue
		}
		if tryLock(f) == nil {
			os.RemoveAll(dir)
		}
		f.Close()
	}
}

func mapName(m *ebpf.Map) string {
	info, err := m.Info()
	if err != nil {
		return ""
	}
	return info.Name
}

// Close releases the maps and the lock; the pinned state stays.
func (s *State) Close() {
	for _, m := range []*ebpf.Map{s.policies, s.stats, s.totals, s.names, s.status, s.agent, s.outcomes, s.engine, s.digest} {
		if m != nil {
			m.Close()
		}
	}
	if s.lock != nil {
		s.lock.Close()
	}
}

// Replace builds a new policy set and swaps it in with one update of the
// outer map's single slot: a sweep sees either the old set or the new one,
// never a mix. Policies get slots 1..len(set) in order. A set beyond the
// limits (MaxPolicies, MaxKeys, MaxPods, MaxRules per pod) is refused and
// the set in force stays.
//
// A set equal to the one in force (its digest recorded with the map that
// holds it) is not written again: an apply that changes nothing writes
// nothing but its statistics.
func (s *State) Replace(set []Policy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	value, err := encodeSet(set)
	if err != nil {
		return err
	}
	sum := digestOf(value, set)
	if s.holds(sum) {
		s.slots = uint32(len(set))
		s.set = value
		return nil
	}
	inner, err := ebpf.NewMap(s.spec.Maps["egwct_policies"].InnerMap)
	if err != nil {
		return fmt.Errorf("create the policy set: %w", withMemlock(err))
	}
	defer inner.Close()
	if err := inner.Put(uint32(0), value); err != nil {
		return fmt.Errorf("write the policy set: %w", err)
	}
	if err := s.moveTotals(set); err != nil {
		return err
	}
	// Names first: a slot's name is right before the trie refers to it.
	for i, p := range set {
		var name [nameSize]byte
		copy(name[:nameSize-1], p.Name)
		if err := s.names.Put(uint32(i+1), name); err != nil {
			return err
		}
	}
	// Slots of a larger previous set are named from 1 on without gaps:
	// clear them up to the first empty one.
	var name, empty [nameSize]byte
	for id := uint32(len(set) + 1); id < MaxPolicies; id++ {
		if err := s.names.Lookup(id, &name); err != nil || name[0] == 0 {
			break
		}
		if err := s.names.Put(id, empty); err != nil {
			return err
		}
	}
	if err := s.policies.Put(uint32(0), inner); err != nil {
		return fmt.Errorf("swap in the policy set: %w", err)
	}
	s.slots = uint32(len(set))
	s.set = value
	return s.recordDigest(inner, sum)
}

// setDigest says which set the policy map with ID holds: the SHA-256 of
// its value and its policies' names. A policy map is never written after
// it is swapped in, and the kernel does not give its ID to another map
// while it exists, so a record that names the map in force is true
// whenever it was written; a record of another map (the swap done, the
// record not yet written when egwct was killed) says nothing.
type setDigest struct {
	ID  uint32
	_   uint32
	Sum [sha256.Size]byte
}

const setDigestSize = 4*2 + sha256.Size

// digestOf is the SHA-256 of a set's value (the bytes the policy map
// holds) and of its names in slot order.
func digestOf(value *sweeperPolicySet, set []Policy) [sha256.Size]byte {
	h := sha256.New()
	h.Write(unsafe.Slice((*byte)(unsafe.Pointer(value)), unsafe.Sizeof(*value)))
	for _, p := range set {
		h.Write([]byte(storedName(p.Name)))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// holds says whether the set in force is the one of digest sum.
func (s *State) holds(sum [sha256.Size]byte) bool {
	if s.digest == nil {
		return false
	}
	var id ebpf.MapID
	var rec setDigest
	if s.policies.Lookup(uint32(0), &id) != nil || s.digest.Lookup(uint32(0), &rec) != nil {
		return false
	}
	return id != 0 && rec.ID == uint32(id) && rec.Sum == sum
}

// recordDigest records that inner, now in force, holds the set of sum.
func (s *State) recordDigest(inner *ebpf.Map, sum [sha256.Size]byte) error {
	if s.digest == nil {
		return nil
	}
	info, err := inner.Info()
	if err != nil {
		return fmt.Errorf("record the policy set: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return nil // a kernel that gives no IDs: written every time
	}
	if err := s.digest.Put(uint32(0), &setDigest{ID: uint32(id), Sum: sum}); err != nil {
		return fmt.Errorf("record the policy set: %w", err)
	}
	return nil
}

// moveTotals makes the running totals follow their policy into the slot
// set gives it: slots are assigned by position (sorted by name), so a
// policy added or removed before another moves it to another slot, and
// its totals would otherwise be shown for whichever policy took its old
// slot. A slot whose policy is new, or that no policy holds any more,
// starts from zero. Slot 0 (no policy) stays as it is. Call it before
// the names of set are written.
func (s *State) moveTotals(set []Policy) error {
	old, err := s.policySlots()
	if err != nil {
		return err
	}
	n := max(old, uint32(len(set)))
	oldNames := make([]string, n+1)
	var name [nameSize]byte
	for id := uint32(1); id <= old; id++ {
		if err := s.names.Lookup(id, &name); err != nil {
			return err
		}
		oldNames[id] = string(bytes.TrimRight(name[:], "\x00"))
	}
	cur := make([][4]Totals, n+1)
	byName := map[string][4]Totals{}
	for id := uint32(1); id <= n; id++ {
		for st := range cur[id] {
			if err := s.totals.Lookup(id*4+uint32(st), &cur[id][st]); err != nil {
				return err
			}
		}
		if oldNames[id] != "" {
			byName[oldNames[id]] = cur[id]
		}
	}
	for id := uint32(1); id <= n; id++ {
		var want [4]Totals
		if int(id) <= len(set) {
			want = byName[storedName(set[id-1].Name)]
		}
		if want == cur[id] {
			continue
		}
		for st := range want {
			if err := s.totals.Put(id*4+uint32(st), &want[st]); err != nil {
				return err
			}
		}
	}
	return nil
}

// storedName is name as egwct_names holds it (cut to fit).
func storedName(name string) string {
	if len(name) > nameSize-1 {
		name = name[:nameSize-1]
	}
	return strings.TrimRight(name, "\x00")
}

// Names returns the display names of the policy slots in use.
func (s *State) Names() (map[uint32]string, error) {
	out := map[uint32]string{}
	var name [nameSize]byte
	for id := uint32(1); id < MaxPolicies; id++ {
		if err := s.names.Lookup(id, &name); err != nil {
			return nil, err
		}
		if name[0] == 0 {
			continue
		}
		out[id] = string(bytes.TrimRight(name[:], "\x00"))
	}
	return out, nil
}

// CurrentKeys reads the policy set in force: key → (slot, timeouts).
func (s *State) CurrentKeys() (map[Key]policyVal, error) {
	value, err := s.currentSet()
	if err != nil || value == nil {
		return map[Key]policyVal{}, err
	}
	return decodeSet(value), nil
}

// currentSet reads the value of the policy set in force; nil before the
// first Replace.
func (s *State) currentSet() (*sweeperPolicySet, error) {
	var id ebpf.MapID
	if err := s.policies.Lookup(uint32(0), &id); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, nil
		}
		return nil, err
	}
	inner, err := ebpf.NewMapFromID(id)
	if err != nil {
		return nil, err
	}
	defer inner.Close()
	value := new(sweeperPolicySet)
	if err := inner.Lookup(uint32(0), value); err != nil {
		return nil, err
	}
	return value, nil
}

// policySlots returns the number of policy slots of the set in force.
func (s *State) policySlots() (uint32, error) {
	if s.slots == 0 {
		value, err := s.currentSet()
		if err != nil {
			return 0, err
		}
		if value != nil {
			s.slots = min(value.Policies, MaxPolicies-1)
		}
	}
	return s.slots, nil
}

// LastSweep is what the state records of the most recent sweep.
type LastSweep struct {
	Time     time.Time
	Duration time.Duration
	Entries  uint64
	Mode     Mode
}

type lastSweep struct {
	UnixNano, Duration int64
	Entries            uint64
	Mode, Pad          uint32
}

// LastSweep returns the most recent sweep; ok is false before the first.
func (s *State) LastSweep() (l LastSweep, ok bool, err error) {
	if s.status == nil {
		return l, false, nil
	}
	var v lastSweep
	if err := s.status.Lookup(uint32(0), &v); err != nil {
		return l, false, err
	}
	if v.UnixNano == 0 {
		return l, false, nil
	}
	return LastSweep{Time: time.Unix(0, v.UnixNano), Duration: time.Duration(v.Duration), Entries: v.Entries, Mode: Mode(v.Mode)}, true, nil
}

func (s *State) recordSweep(l LastSweep) error {
	v := lastSweep{UnixNano: l.Time.UnixNano(), Duration: int64(l.Duration), Entries: l.Entries, Mode: uint32(l.Mode)}
	return s.status.Put(uint32(0), &v)
}

// AgentStatus is what a running egwct agent records of itself in the
// pinned state, so that a viewer in any PID namespace (egwct top, or a
// kubectl exec into another container) can tell who sweeps and how often.
type AgentStatus struct {
	Mode Mode
	// Engine names the BPF program's engine (Engine.String).
	Engine   string
	Interval time.Duration
	// Version is egwct's version.
	Version string
	// PID is the agent's process ID in its own PID namespace.
	PID int
	// Started is when the agent started; Heartbeat when it last said it
	// is alive (at every sweep, successful or not).
	Started, Heartbeat time.Time
	// PortCapacity is how many SNAT source ports one egress IP has per
	// destination on the node, as the agent knows it (the ports above
	// the node-port range, which it may have read from cilium-config);
	// 0: unknown, Cilium's default.
	PortCapacity int
}

// Sizes of the fixed-size text fields of the pinned agent status; longer
// text is cut.
const (
	agentEngineSize  = 16
	agentVersionSize = 64
)

// agentStatus is the pinned value of AgentStatus: one element of the
// egwct_agent array. A zero heartbeat means no agent.
type agentStatus struct {
	Started, Heartbeat, Interval int64 // nanoseconds (Unix time for the first two)
	PID, Mode                    uint32
	Engine                       [agentEngineSize]byte
	Version                      [agentVersionSize]byte
	PortCapacity                 uint32
	_                            uint32
}

const agentStatusSize = 8*3 + 4*2 + agentEngineSize + agentVersionSize + 4*2

// SetAgentStatus records the agent's status (a State from OpenState).
// The heartbeat must be set: a zero one reads as no agent.
func (s *State) SetAgentStatus(a AgentStatus) error {
	if s.agent == nil {
		return errors.New("egwct state has no agent status record")
	}
	if a.Heartbeat.IsZero() || a.Heartbeat.UnixNano() <= 0 {
		return fmt.Errorf("agent status: heartbeat %v is not a time after 1970", a.Heartbeat)
	}
	if a.PID < 0 || int64(a.PID) > int64(^uint32(0)) || a.Interval < 0 || a.PortCapacity < 0 || a.PortCapacity > 65535 {
		return fmt.Errorf("agent status: pid %d, interval %v or port capacity %d out of range", a.PID, a.Interval, a.PortCapacity)
	}
	v := agentStatus{Heartbeat: a.Heartbeat.UnixNano(), Interval: int64(a.Interval), PID: uint32(a.PID), Mode: uint32(a.Mode), PortCapacity: uint32(a.PortCapacity)}
	if !a.Started.IsZero() {
		v.Started = a.Started.UnixNano()
	}
	copy(v.Engine[:], a.Engine)
	copy(v.Version[:], a.Version)
	return s.agent.Put(uint32(0), &v)
}

// AgentHeartbeat sets the heartbeat of the recorded agent status to now
// (at every sweep of the agent, successful or not); it is an error when
// no status is recorded.
func (s *State) AgentHeartbeat(now time.Time) error {
	a, ok, err := s.AgentStatus()
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("agent heartbeat: no agent status recorded (SetAgentStatus first)")
	}
	a.Heartbeat = now
	return s.SetAgentStatus(a)
}

// ClearAgentStatus says no agent runs (an agent stopping).
func (s *State) ClearAgentStatus() error {
	if s.agent == nil {
		return nil
	}
	return s.agent.Put(uint32(0), &agentStatus{})
}

// AgentStatus returns the status the last agent recorded; ok is false when
// none is recorded (no agent ran, it stopped, or the state was pinned by
// an egwct without the record). A stale heartbeat is the caller's to judge.
func (s *State) AgentStatus() (a AgentStatus, ok bool, err error) {
	if s.agent == nil {
		return a, false, nil
	}
	var v agentStatus
	if err := s.agent.Lookup(uint32(0), &v); err != nil {
		return a, false, fmt.Errorf("egwct agent status: %w", err)
	}
	if v.Heartbeat == 0 {
		return a, false, nil
	}
	a = AgentStatus{
		Mode: Mode(v.Mode), Engine: cString(v.Engine[:]), Interval: time.Duration(v.Interval),
		Version: cString(v.Version[:]), PID: int(v.PID), Heartbeat: time.Unix(0, v.Heartbeat), PortCapacity: int(v.PortCapacity),
	}
	if v.Started != 0 {
		a.Started = time.Unix(0, v.Started)
	}
	return a, true, nil
}

// PolicyOutcome is what became of a policy the agent did not apply as
// written: its name, "kept" (its last valid timeouts stay in force) or
// "refused" (none in force), and why.
type PolicyOutcome struct {
	Name    string `json:"name"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
}

// outcomesSize is the size of the pinned record of outcomes: a length and
// a JSON document.
const outcomesSize = 16 << 10

// SetOutcomes records the policies the agent did not apply as written,
// replacing the previous record (a State from OpenState). What does not
// fit in the record is left out, and the last element says how many.
func (s *State) SetOutcomes(outs []PolicyOutcome) error {
	if s.outcomes == nil {
		return errors.New("egwct state has no outcomes record")
	}
	var data []byte
	for n := len(outs); ; n-- {
		list := outs[:n]
		if n < len(outs) {
			list = append(slices.Clone(list), PolicyOutcome{Outcome: "omitted", Reason: fmt.Sprintf("%d more policies", len(outs)-n)})
		}
		var err error
		if data, err = json.Marshal(list); err != nil {
			return err
		}
		if len(data) <= outcomesSize-4 || n == 0 {
			break
		}
	}
	v := make([]byte, outcomesSize)
	binary.LittleEndian.PutUint32(v, uint32(len(data)))
	copy(v[4:], data)
	return s.outcomes.Put(uint32(0), v)
}

// Outcomes returns the policies the agent did not apply as written, none
// when nothing is recorded.
func (s *State) Outcomes() ([]PolicyOutcome, error) {
	if s.outcomes == nil {
		return nil, nil
	}
	v := make([]byte, outcomesSize)
	if err := s.outcomes.Lookup(uint32(0), v); err != nil {
		return nil, fmt.Errorf("egwct outcomes: %w", err)
	}
	n := binary.LittleEndian.Uint32(v)
	if n == 0 {
		return nil, nil
	}
	if n > outcomesSize-4 {
		return nil, fmt.Errorf("egwct outcomes: a record of %d bytes in %d", n, outcomesSize-4)
	}
	var out []PolicyOutcome
	if err := json.Unmarshal(v[4:4+n], &out); err != nil {
		return nil, fmt.Errorf("egwct outcomes: %w", err)
	}
	return out, nil
}

// cString is the text of a zero-padded field.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// Reset removes everything egwct pinned under bpffs. Cilium's maps are
// not touched.
func Reset(bpffs string) error {
	dir := filepath.Join(bpffs, "egwct")
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return os.RemoveAll(dir)
}

// OpenStateReadOnly opens egwct's pinned state for reading, without its
// lock, so that a viewer (egwct top) can watch while an agent changes it.
// It returns an error wrapping os.ErrNotExist when no state is pinned.
func OpenStateReadOnly(bpffs string) (*State, error) {
	dir := Dir(bpffs)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("egwct state %s: %w", dir, err)
	}
	s := &State{dir: dir}
	ro := &ebpf.LoadPinOptions{ReadOnly: true}
	for _, x := range []struct {
		dst  **ebpf.Map
		name string
	}{
		{&s.policies, "egwct_policies"},
		{&s.stats, "egwct_sweep"},
		{&s.totals, "egwct_totals"},
		{&s.names, "egwct_names"},
	} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, x.name), ro)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("egwct state: %w", err)
		}
		*x.dst = m
	}
	if m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "egwct_status"), ro); err == nil {
		s.status = m
	}
	if m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "egwct_outcomes"), ro); err == nil {
		s.outcomes = m
	}
	if m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "egwct_agent"), ro); err == nil {
		s.agent = m
	}
	if m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "egwct_engine"), ro); err == nil {
		s.engine = m
	}
	return s, nil
}

// setInForce is the value of the set in force (nil before the first
// Replace), read once and then kept: only this process changes it.
func (s *State) setInForce() (*sweeperPolicySet, error) {
	if s.set != nil {
		return s.set, nil
	}
	v, err := s.currentSet()
	if err != nil {
		return nil, fmt.Errorf("read the policy set in force: %w", err)
	}
	s.set = v
	return v, nil
}

// EngineInUse is the engine the last sweeper of this state runs (an
// agent's, or the last apply's) and why: what egwct top shows.
type EngineInUse struct {
	Engine string `json:"engine"`
	// Reason is why: chosen with --engine, or auto and the engines the
	// kernel refused before it.
	Reason string `json:"reason"`
	// PID is the process of the sweeper.
	PID int `json:"pid"`
}

// engineRecordSize is the size of the pinned engine record: a length and
// a JSON document.
const engineRecordSize = 1024

// setEngine records the engine a new sweeper runs.
func (s *State) setEngine(c Choice) error {
	if s.engine == nil {
		return nil
	}
	rec := EngineInUse{Engine: c.Engine.String(), Reason: c.Reason(), PID: os.Getpid()}
	for {
		data, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if len(data) <= engineRecordSize-4 {
			v := make([]byte, engineRecordSize)
			binary.LittleEndian.PutUint32(v, uint32(len(data)))
			copy(v[4:], data)
			return s.engine.Put(uint32(0), v)
		}
		rec.Reason = rec.Reason[:len(rec.Reason)/2] + "..."
	}
}

// Engine returns the engine of the last sweeper; ok is false when none
// is recorded.
func (s *State) Engine() (e EngineInUse, ok bool, err error) {
	if s.engine == nil {
		return e, false, nil
	}
	v := make([]byte, engineRecordSize)
	if err := s.engine.Lookup(uint32(0), v); err != nil {
		return e, false, fmt.Errorf("egwct engine: %w", err)
	}
	n := binary.LittleEndian.Uint32(v)
	if n == 0 {
		return e, false, nil
	}
	if n > engineRecordSize-4 {
		return e, false, fmt.Errorf("egwct engine: a record of %d bytes in %d", n, engineRecordSize-4)
	}
	if err := json.Unmarshal(v[4:4+n], &e); err != nil {
		return e, false, fmt.Errorf("egwct engine: %w", err)
	}
	return e, true, nil
}

// Set reads the policy set in force back from the pinned state: slot i+1
// is element i, with its name, timeouts and keys, so that NewMatcher of the
// result judges as the sweeper does. Slots no key refers to are kept (with
// their names) so that slot numbers stay aligned.
func (s *State) Set() ([]Policy, error) {
	keys, err := s.CurrentKeys()
	if err != nil {
		return nil, err
	}
	names, err := s.Names()
	if err != nil {
		return nil, err
	}
	top := uint32(0)
	for _, v := range keys {
		top = max(top, v.ID)
	}
	for id := range names {
		top = max(top, id)
	}
	set := make([]Policy, top)
	for id, name := range names {
		set[id-1].Name = name
	}
	for k, v := range keys {
		if v.ID == 0 || v.ID > top {
			continue
		}
		p := &set[v.ID-1]
		p.Timeouts = v.Timeout
		p.Keys = append(p.Keys, k)
	}
	for i := range set {
		slices.SortFunc(set[i].Keys, func(a, b Key) int {
			if c := a.Pod.Compare(b.Pod); c != 0 {
				return c
			}
			return a.Dest.Addr().Compare(b.Dest.Addr())
		})
	}
	return set, nil
}
