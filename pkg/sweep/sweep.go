package sweep

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// Mode says what happens to an expired entry.
type Mode uint32

const (
	// Reclaim deletes the CT entry and its two SNAT entries, as Cilium's
	// GC would, so the port is free at once.
	Reclaim Mode = 0
	// Mark only sets lifetime in the past for Cilium's next GC pass.
	Mark Mode = 1
)

func (m Mode) String() string {
	if m == Mark {
		return "mark"
	}
	return "reclaim"
}

// Engine is the kind of BPF program that walks the CT maps.
type Engine uint8

const (
	// Iterator walks each map with a map-element iterator, in chunks the
	// kernel reschedules between: gentle on a busy node (the default).
	Iterator Engine = iota
	// ForEach walks each map with bpf_for_each_map_elem in one
	// BPF_PROG_RUN call: about 1.4 times less CPU, but the CPU is held for
	// the whole map (about 0.35 s per million entries here).
	ForEach
)

func (e Engine) String() string {
	if e == ForEach {
		return "foreach"
	}
	return "iterator"
}

// IdleBuckets are the upper bounds of the idle-time histogram's buckets;
// the last bucket holds everything idle longer.
var IdleBuckets = [7]time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour}

// Config configures a Sweeper.
type Config struct {
	BPFFS   string
	Profile *profiles.Profile
	Clock   nodeconfig.Clock
	// Node are the node's timeouts per state.
	Node   map[profiles.State]time.Duration
	Mode   Mode
	Engine Engine
}

// Counts are the results of one sweep for one policy and state.
type Counts struct {
	Seen, Expired, Lost   uint64
	DeletedCT, DeletedNAT uint64
	Refreshed             uint64 // expired when judged, refreshed before deletion: kept
	Idle                  [8]uint64
}

// Result is what one sweep saw and did, per policy slot (0: entries of no
// policy) and state.
type Result struct {
	Duration time.Duration
	Entries  uint64
	Counts   map[uint32]*[4]Counts
}

// Sweeper is the loaded BPF program bound to a node's maps.
type Sweeper struct {
	cfg   Config
	state *State
	// Only the programs of the engine in use are loaded (older kernels
	// reject the other's).
	iter    *ebpf.Program    // iterator engine
	each    [2]*ebpf.Program // foreach engine: TCP map, the other map
	expired *ebpf.Map
	now     *ebpf.Variable
	ct      []*ctmap.Map // IPv4 CT maps, TCP then others
	nat     *ctmap.Map   // nil on nodes without BPF NodePort
	rb      *ringbuf.Reader
}

// New loads the sweeper with the node's clock, timeouts and mode, and
// opens Cilium's IPv4 CT and SNAT maps, refusing maps whose shape does not
// match the profile.
func New(cfg Config, state *State) (*Sweeper, error) {
	s := &Sweeper{cfg: cfg, state: state}
	writable := true
	for _, role := range []profiles.MapRole{profiles.RoleCTTCP, profiles.RoleCTAny} {
		spec, ok := cfg.Profile.Map(role, 4)
		if !ok {
			return nil, fmt.Errorf("profile %s has no IPv4 %s map", cfg.Profile.Name, role)
		}
		m, err := ctmap.Open(cfg.BPFFS, spec, writable)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.ct = append(s.ct, m)
	}
	if spec, ok := cfg.Profile.Map(profiles.RoleSNAT, 4); ok && cfg.Mode == Reclaim {
		m, err := ctmap.Open(cfg.BPFFS, spec, true)
		switch {
		case errors.Is(err, ctmap.ErrMapMissing):
		case err != nil:
			s.Close()
			return nil, err
		default:
			s.nat = m
		}
	}

	spec := state.spec.Copy()
	var node [4]uint32
	for st, d := range cfg.Node {
		node[st] = uint32(cfg.Clock.Units(d))
	}
	var buckets [7]uint32
	for i, d := range IdleBuckets {
		buckets[i] = uint32(cfg.Clock.Units(d))
	}
	for name, v := range map[string]any{"mode": uint32(cfg.Mode), "node_timeout": node, "idle_bucket": buckets} {
		if err := spec.Variables[name].Set(v); err != nil {
			s.Close()
			return nil, fmt.Errorf("configure the sweeper: %s: %w", name, err)
		}
	}
	repl := map[string]*ebpf.Map{"egwct_policies": state.policies, "egwct_sweep": state.stats}
	if cfg.Engine == ForEach {
		// bpf_for_each_map_elem needs Cilium's maps at load time, with
		// their exact size and flags.
		for i, name := range []string{"ct_tcp", "ct_any"} {
			info, err := s.ct[i].Info()
			if err != nil {
				s.Close()
				return nil, err
			}
			spec.Maps[name].MaxEntries, spec.Maps[name].Flags = info.MaxEntries, info.Flags
			repl[name] = s.ct[i].Map
		}
	}
	opts := &ebpf.CollectionOptions{MapReplacements: repl}
	var err error
	if cfg.Engine == ForEach {
		var o struct {
			TCP     *ebpf.Program  `ebpf:"sweep_all_tcp"`
			Any     *ebpf.Program  `ebpf:"sweep_all_any"`
			Expired *ebpf.Map      `ebpf:"egwct_expired"`
			Now     *ebpf.Variable `ebpf:"now"`
		}
		err = spec.LoadAndAssign(&o, opts)
		s.each, s.expired, s.now = [2]*ebpf.Program{o.TCP, o.Any}, o.Expired, o.Now
	} else {
		var o struct {
			Sweep   *ebpf.Program  `ebpf:"sweep"`
			Expired *ebpf.Map      `ebpf:"egwct_expired"`
			Now     *ebpf.Variable `ebpf:"now"`
		}
		err = spec.LoadAndAssign(&o, opts)
		s.iter, s.expired, s.now = o.Sweep, o.Expired, o.Now
	}
	if err != nil {
		s.Close()
		if old, release := kernelOlderThan(5, 12); old {
			return nil, fmt.Errorf("%w: the sweeper needs Linux 5.12 or later (map-element iterators, ring buffers, BPF atomics); this kernel is %s: %v", ErrKernelTooOld, release, err)
		}
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load the sweeper: %+v", ve)
		}
		return nil, fmt.Errorf("load the sweeper: %w", err)
	}
	if s.rb, err = ringbuf.NewReader(s.expired); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the program and the maps; egwct's pinned state stays.
func (s *Sweeper) Close() {
	if s.rb != nil {
		s.rb.Close()
	}
	for _, p := range []*ebpf.Program{s.iter, s.each[0], s.each[1]} {
		if p != nil {
			p.Close()
		}
	}
	if s.expired != nil {
		s.expired.Close()
	}
	for _, m := range s.ct {
		m.Close()
	}
	if s.nat != nil {
		s.nat.Close()
	}
}

// Sweep judges every entry of the CT maps once and handles the expired
// ones by the mode.
func (s *Sweeper) Sweep() (*Result, error) {
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	start := time.Now()
	if err := s.resetStats(); err != nil {
		return nil, err
	}
	now, err := ctmap.Now(s.cfg.Clock)
	if err != nil {
		return nil, err
	}
	if err := s.now.Set(now); err != nil {
		return nil, err
	}
	res := &Result{Counts: map[uint32]*[4]Counts{}}
	for i, m := range s.ct {
		var err error
		if s.cfg.Engine == ForEach {
			err = s.forEach(uint32(i))
		} else {
			err = s.iterate(m)
		}
		if err != nil {
			return nil, fmt.Errorf("sweep %s: %w", m.Spec.Name, err)
		}
	}
	if err := s.collect(res); err != nil {
		return nil, err
	}
	if s.cfg.Mode == Reclaim {
		if err := s.reclaim(res); err != nil {
			return nil, err
		}
	}
	if err := s.addTotals(res); err != nil {
		return nil, err
	}
	res.Duration = time.Since(start)
	if err := s.state.recordSweep(LastSweep{Time: start, Duration: res.Duration, Entries: res.Entries, Mode: s.cfg.Mode}); err != nil {
		return nil, err
	}
	return res, nil
}

// iterate runs the iterator over one map to its end. A read processes at
// most about a million elements and may then report EAGAIN: read again.
func (s *Sweeper) iterate(m *ctmap.Map) error {
	it, err := link.AttachIter(link.IterOptions{Program: s.iter, Map: m.Map})
	if err != nil {
		return fmt.Errorf("attach the iterator: %w", err)
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return err
	}
	defer rd.Close()
	buf := make([]byte, 4096)
	for {
		n, err := rd.Read(buf)
		switch {
		case errors.Is(err, io.EOF), err == nil && n == 0:
			return nil
		case errors.Is(err, unix.EAGAIN), errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case err != nil:
			return err
		}
	}
}

// statKeys are the indexes of the statistics map, for batch operations.
var statKeys = func() []uint32 {
	k := make([]uint32, MaxPolicies*4)
	for i := range k {
		k[i] = uint32(i)
	}
	return k
}()

// resetStats zeroes the per-sweep statistics in one batch update (the
// values of a per-CPU map come one per possible CPU per key).
// forEach runs the for_each program over CT map i (0 TCP, 1 the others).
func (s *Sweeper) forEach(i uint32) error {
	_, err := s.each[i].Run(&ebpf.RunOptions{})
	return err
}

func (s *Sweeper) resetStats() error {
	zero := make([]sweeperSweepStats, len(statKeys)*ebpfPossibleCPUs())
	_, err := s.state.stats.BatchUpdate(statKeys, zero, nil)
	if errors.Is(err, ebpf.ErrNotSupported) {
		per := zero[:ebpfPossibleCPUs()]
		for _, k := range statKeys {
			if err := s.state.stats.Put(k, per); err != nil {
				return err
			}
		}
		return nil
	}
	return err
}

// collect sums the per-CPU statistics the program wrote.
func (s *Sweeper) collect(res *Result) error {
	ncpu := ebpfPossibleCPUs()
	vals := make([]sweeperSweepStats, len(statKeys)*ncpu)
	keys := make([]uint32, len(statKeys))
	var cursor ebpf.MapBatchCursor
	count, err := s.state.stats.BatchLookup(&cursor, keys, vals, nil)
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist) || err == nil:
	case errors.Is(err, ebpf.ErrNotSupported):
		count = 0
		var per []sweeperSweepStats
		for i, k := range statKeys {
			if err := s.state.stats.Lookup(k, &per); err != nil {
				return err
			}
			keys[i] = k
			copy(vals[i*ncpu:], per)
			count++
		}
	default:
		return err
	}
	for j := 0; j < count; j++ {
		var c Counts
		for _, p := range vals[j*ncpu : (j+1)*ncpu] {
			c.Seen += p.Seen
			c.Expired += p.Expired
			c.Lost += p.Lost
			for b := range c.Idle {
				c.Idle[b] += p.Idle[b]
			}
		}
		if c.Seen == 0 {
			continue
		}
		slot, st := keys[j]/4, keys[j]%4
		if res.Counts[slot] == nil {
			res.Counts[slot] = new([4]Counts)
		}
		res.Counts[slot][st] = c
		res.Entries += c.Seen
	}
	return nil
}

// candidate mirrors struct candidate of the program.
const candidateSize = 24

// reclaim deletes what the program reported expired: the CT entry, unless
// its lifetime changed since it was judged (the datapath refreshed it),
// and then its SNAT egress and reverse entries, exactly the set Cilium's
// GC deletes for an outbound entry.
func (s *Sweeper) reclaim(res *Result) error {
	s.rb.SetDeadline(time.Now())
	var rec ringbuf.Record
	for {
		err := s.rb.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(rec.RawSample) < candidateSize {
			continue
		}
		raw := rec.RawSample
		key := raw[:ctmap.TupleSize4]
		state := raw[14]
		lifetime := binary.LittleEndian.Uint32(raw[16:])
		slot := binary.LittleEndian.Uint32(raw[20:])
		if state > 3 || slot >= MaxPolicies {
			continue
		}
		if res.Counts[slot] == nil {
			res.Counts[slot] = new([4]Counts)
		}
		c := &res.Counts[slot][state]
		m := s.ct[1]
		if key[12] == ctmap.ProtoTCP {
			m = s.ct[0]
		}
		deleted, err := s.deleteCT(m, key, lifetime)
		if err != nil {
			return err
		}
		if !deleted {
			c.Refreshed++
			continue
		}
		c.DeletedCT++
		n, err := s.deleteNAT(key)
		if err != nil {
			return err
		}
		c.DeletedNAT += n
	}
}

func (s *Sweeper) deleteCT(m *ctmap.Map, key []byte, lifetime uint32) (bool, error) {
	var v ctmap.CTEntry
	if err := m.Lookup(key, v[:]); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return false, nil
		}
		return false, err
	}
	if v.Lifetime() != lifetime {
		return false, nil // refreshed since judged: the flow is alive
	}
	if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return false, err
	}
	return true, nil
}

func (s *Sweeper) deleteNAT(ctKey []byte) (uint64, error) {
	if s.nat == nil {
		return 0, nil
	}
	t, err := ctmap.DecodeTuple(ctKey)
	if err != nil {
		return 0, err
	}
	egress, ok := ctmap.NATKeysForCT(t)
	if !ok {
		return 0, nil
	}
	ek := egress.Bytes()
	raw := make([]byte, s.nat.Spec.ValueSize)
	if err := s.nat.Lookup(ek, raw); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, nil
		}
		return 0, err
	}
	v, err := ctmap.DecodeNATEntry(raw)
	if err != nil {
		return 0, err
	}
	n := uint64(0)
	rk := ctmap.ReverseKey(egress, &v).Bytes()
	if err := s.nat.Delete(rk); err == nil {
		n++
	} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return n, err
	}
	if err := s.nat.Delete(ek); err == nil {
		n++
	} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return n, err
	}
	return n, nil
}

// addTotals adds this sweep's counts to the pinned running totals.
func (s *Sweeper) addTotals(res *Result) error {
	for slot, cs := range res.Counts {
		for st, c := range cs {
			if c.Expired == 0 && c.DeletedCT == 0 && c.Lost == 0 {
				continue
			}
			i := slot*4 + uint32(st)
			var t Totals
			if err := s.state.totals.Lookup(i, &t); err != nil {
				return err
			}
			t.Expired += c.Expired
			t.DeletedCT += c.DeletedCT
			t.DeletedNAT += c.DeletedNAT
			t.Refreshed += c.Refreshed
			t.Lost += c.Lost
			if err := s.state.totals.Put(i, &t); err != nil {
				return err
			}
		}
	}
	return nil
}

// Totals reads the running totals of a policy slot and state.
func (s *State) Totals(slot uint32, st profiles.State) (Totals, error) {
	var t Totals
	err := s.totals.Lookup(slot*4+uint32(st), &t)
	return t, err
}

// ErrKernelTooOld is returned when the kernel lacks what the sweeper needs.
var ErrKernelTooOld = errors.New("kernel too old")

// kernelOlderThan reports whether the running kernel is older than
// major.minor, and its release string.
func kernelOlderThan(major, minor int) (bool, string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false, ""
	}
	release := unix.ByteSliceToString(u.Release[:])
	return releaseOlderThan(release, major, minor), release
}

// releaseOlderThan compares a kernel release string ("5.10.0-28-amd64")
// with major.minor; an unreadable release is not judged older.
func releaseOlderThan(release string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(release, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma < major || (ma == major && mi < minor)
}

func ebpfPossibleCPUs() int {
	n, err := ebpf.PossibleCPU()
	if err != nil || n < 1 {
		return 1
	}
	return n
}
