package sweep

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	ebpffeatures "github.com/cilium/ebpf/features"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// Mode says what happens to an expired entry.
type Mode uint32

const (
	// Reclaim deletes the CT entry and its two SNAT entries, as Cilium's
	// GC would, so the port is free at once.
	Reclaim = Mode(sweeperSweepModeMODE_RECLAIM)
	// Mark only sets lifetime in the past for Cilium's next GC pass.
	Mark = Mode(sweeperSweepModeMODE_MARK)
)

func (m Mode) String() string {
	if m == Mark {
		return "mark"
	}
	return "reclaim"
}

// IdleBuckets are the upper bounds of the idle-time histogram's buckets,
// inclusive as Prometheus' le is: a bucket holds the idle times above the
// bound before it and at most its own; the last bucket holds everything
// idle longer.
var IdleBuckets = [7]time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour}

// Config configures a Sweeper.
type Config struct {
	BPFFS   string
	Profile *profiles.Profile
	Clock   nodeconfig.Clock
	// Node are the node's timeouts per state.
	Node map[profiles.State]time.Duration
	Mode Mode
	// Engine is the engine to run; Auto (the zero value) takes the first
	// of AutoOrder that loads.
	Engine Engine
	// Now is the datapath's clock in lifetime units; nil reads the
	// node's (ctmap.Now). Tests inject it.
	Now func() (uint32, error)
	// Refuse, when set, is asked before each engine is loaded: an error
	// refuses the engine as a kernel would (tests force the fallbacks).
	Refuse func(Engine) error
	// Next, when set, is the policy set the first sweep judges with, put
	// in force after New (as apply does): the programs are loaded for it
	// rather than for the set in force, so that the first sweep does not
	// load them again.
	Next []Policy
}

// Counts are the results of one sweep for one policy and state.
type Counts struct {
	Seen, Expired         uint64
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
	// colls are the loaded programs, one collection each, with a
	// variable now each (see loadApart).
	colls   []*ebpf.Collection
	targets []target
	// features is what the loaded programs judge (the program's enum
	// set_feature): a set in force that holds more loads them again.
	features uint32
	// fitted is the set in force fit last found the programs fit for:
	// the same set is not read again at every sweep.
	fitted *sweeperPolicySet
	nat    [2]*ctmap.Map // SNAT maps by family; nil on nodes without BPF NodePort (or in mark mode)
	choice Choice
	// node and buckets are the node's timeouts and the first idle time
	// of each histogram bucket after the first, in clock units (the
	// program's constants).
	node    [4]uint32
	buckets [7]uint32
	// judged, in tests, is called by the userspace engine between the
	// judgement of an expired entry and its deletion or mark.
	judged func(key []byte)
}

// target is one CT map the sweeper walks.
type target struct {
	m    *ctmap.Map
	fam  int           // 4 or 6
	each *ebpf.Program // foreach engine: the program bound to m
	iter *ebpf.Program // iterator engine: the program bound to m
}

// Families are the address families egwct sweeps on a profile's nodes:
// IPv4, and IPv6 where Cilium has an IPv6 egress gateway (1.18+).
func Families(p *profiles.Profile) []int {
	if _, ok := p.Map(profiles.RoleEgressPolicy, 6); ok {
		return []int{4, 6}
	}
	return []int{4}
}

// kind names the target as the program's maps and programs do: tcp4,
// any4, tcp6, any6.
func (t target) kind() string {
	if t.m.Spec.Role == profiles.RoleCTTCP {
		return fmt.Sprintf("tcp%d", t.fam)
	}
	return fmt.Sprintf("any%d", t.fam)
}

// famIndex is the index of a family in per-family arrays.
func famIndex(fam int) int { return fam / 6 }

// New loads the sweeper with the node's clock, timeouts and mode, and
// opens Cilium's CT and SNAT maps, refusing maps whose shape does not
// match the profile: the IPv4 maps always, the IPv6 maps on profiles with
// an IPv6 egress gateway (1.18+) when the node has them.
//
// A profile whose ct_entry or CT key layout is not the one the program was
// built for is refused with a *LayoutError before anything is opened.
func New(cfg Config, state *State) (*Sweeper, error) {
	if cfg.Profile == nil {
		return nil, errors.New("sweeper: no profile")
	}
	if state == nil || state.spec == nil {
		return nil, errors.New("sweeper: egwct's state is not open for writing")
	}
	if err := checkLayout(state.spec, cfg.Profile); err != nil {
		return nil, err
	}
	s := &Sweeper{cfg: cfg, state: state}
	for _, fam := range Families(cfg.Profile) {
		for _, role := range []profiles.MapRole{profiles.RoleCTTCP, profiles.RoleCTAny} {
			spec, ok := cfg.Profile.Map(role, fam)
			if !ok {
				s.Close()
				return nil, fmt.Errorf("profile %s has no IPv%d %s map", cfg.Profile.Name, fam, role)
			}
			m, err := ctmap.Open(cfg.BPFFS, spec, true)
			if fam == 6 && errors.Is(err, ctmap.ErrMapMissing) {
				continue // IPv6 is off on this node
			}
			if err != nil {
				s.Close()
				return nil, err
			}
			s.targets = append(s.targets, target{m: m, fam: fam})
		}
		spec, ok := cfg.Profile.Map(profiles.RoleSNAT, fam)
		if !ok || cfg.Mode != Reclaim {
			continue
		}
		m, err := ctmap.Open(cfg.BPFFS, spec, true)
		switch {
		case errors.Is(err, ctmap.ErrMapMissing):
		case err != nil:
			s.Close()
			return nil, err
		default:
			s.nat[famIndex(fam)] = m
		}
	}
	for st, d := range cfg.Node {
		s.node[st] = uint32(cfg.Clock.Units(d))
	}
	for i, d := range IdleBuckets {
		// The first idle time above the bound: Units rounds down, so
		// an idle time of n units is at most d exactly when n is at
		// most Units(d).
		s.buckets[i] = uint32(cfg.Clock.Units(d)) + 1
	}
	if err := s.choose(); err != nil {
		s.Close()
		return nil, err
	}
	if err := state.setEngine(s.choice); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Choice is the engine the sweeper runs and why.
func (s *Sweeper) Choice() Choice { return s.choice }

// choose loads the engine of the configuration, or with Auto the first
// of AutoOrder that loads. An explicit engine that cannot be loaded is an
// *EngineError naming the refusal and the engines that do load.
func (s *Sweeper) choose() error {
	auto := s.cfg.Engine == Auto
	order := AutoOrder
	if !auto {
		order = []Engine{s.cfg.Engine}
	}
	features, err := s.firstFeatures()
	if err != nil {
		return err
	}
	var refused []Refusal
	for _, e := range order {
		err := s.try(e, features)
		if err == nil {
			s.choice = Choice{Engine: e, Auto: auto, Refused: refused}
			return nil
		}
		refused = append(refused, Refusal{Engine: e, Err: err})
	}
	if auto {
		return fmt.Errorf("no sweep engine loads on this node: %s", Choice{Auto: true, Refused: refused}.Reason())
	}
	ee := &EngineError{Engine: s.cfg.Engine, Err: refused[0].Err}
	for _, e := range AutoOrder {
		if e != s.cfg.Engine && s.try(e, features) == nil {
			ee.Loads = append(ee.Loads, e)
			s.unload()
		}
	}
	return ee
}

// try loads engine e with the code for sets of the given features: a real
// load of its programs (and, for the iterator, an attachment to a CT map),
// so that whatever the kernel, an LSM or a container refuses is refused
// here and not at the first sweep.
func (s *Sweeper) try(e Engine, features uint32) error {
	if s.cfg.Refuse != nil {
		if err := s.cfg.Refuse(e); err != nil {
			return err
		}
	}
	switch e {
	case Userspace:
		s.unload()
		return nil
	case ForEach:
		// The verifier of a kernel without the helper refuses the
		// program with "number of funcs in func_info doesn't match
		// number of subprogs": say what is missing instead.
		if err := ebpffeatures.HaveProgramHelper(ebpf.RawTracepoint, asm.FnForEachMapElem); errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("this kernel has no bpf_for_each_map_elem (Linux 5.13): %w", err)
		}
	case Iterator:
	default:
		return fmt.Errorf("unknown engine %d", e)
	}
	if s.cfg.Mode == Mark {
		// As above, for "BPF_STX uses reserved fields".
		if err := haveCmpXchg(); errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("this kernel has no BPF compare-and-swap, which mark mode needs (Linux 5.12): %w", err)
		}
	}
	if err := s.load(e, features); err != nil {
		return err
	}
	if e == Iterator && len(s.targets) > 0 {
		it, err := attachIter(s.targets[0].iter, s.targets[0].m.Map)
		if err != nil {
			s.unload()
			return fmt.Errorf("attach the iterator: %w", err)
		}
		it.Close()
	}
	return nil
}

// firstFeatures is what the set of the first sweep holds: Config.Next's,
// or the set in force's.
func (s *Sweeper) firstFeatures() (uint32, error) {
	if s.cfg.Next != nil {
		if v, err := encodeSet(s.cfg.Next); err == nil {
			return setFeatures(v), nil
		}
		// A set Replace refuses stays out of force: fit the set in force.
	}
	set, err := s.state.setInForce()
	if err != nil {
		return 0, err
	}
	return setFeatures(set), nil
}

// unload releases what try loaded.
func (s *Sweeper) unload() {
	for _, c := range s.colls {
		c.Close()
	}
	s.colls = nil
	for i := range s.targets {
		s.targets[i].each, s.targets[i].iter = nil, nil
	}
}

// LayoutError is returned by New when a profile describes one of Cilium's
// structs differently from the program's BTF: the program would read the
// wrong bytes, so it is not loaded.
type LayoutError struct {
	// Profile is the profile's name.
	Profile string
	// Field names what differs: "ct_entry" (its size), "ct_entry.lifetime",
	// "ct_entry.flags:seen_non_syn" (a flag bit), or a CT map's key
	// ("cilium_ct4_global key").
	Field string
	// What is "size", "offset" or "mask".
	What string
	// Program is the program's value, Found the profile's; Found is -1
	// when the profile has no such field.
	Program, Found int
}

// Error names the profile, the field and both values.
func (e *LayoutError) Error() string {
	if e.Found < 0 {
		return fmt.Sprintf("profile %s has no %s; the sweeper was built to read it (%s %d)", e.Profile, e.Field, e.What, e.Program)
	}
	return fmt.Sprintf("profile %s does not match the sweeper: %s %s is %d in the profile, the sweeper was built for %d",
		e.Profile, e.Field, e.What, e.Found, e.Program)
}

// checkLayout compares what the program's BTF says of Cilium's structs
// with the profile: the size and every named field of struct ct_entry
// (offset and size), the flag bits of enum ct_const, and the key size of
// the CT maps the program walks. (The maps' value size against the
// profile is ctmap.Open's check.)
func checkLayout(spec *ebpf.CollectionSpec, p *profiles.Profile) error {
	bad := func(field, what string, program, found int) error {
		return &LayoutError{Profile: p.Name, Field: field, What: what, Program: program, Found: found}
	}
	var entry *btf.Struct
	if err := spec.Types.TypeByName("ct_entry", &entry); err != nil {
		return fmt.Errorf("the sweeper's BTF: %w", err)
	}
	l := p.CTEntry
	if int(entry.Size) != l.Size {
		return bad("ct_entry", "size", int(entry.Size), l.Size)
	}
	for _, m := range entry.Members {
		if strings.HasPrefix(m.Name, "pad") {
			continue
		}
		off, size := int(m.Offset.Bytes()), 0
		if n, err := btf.Sizeof(m.Type); err == nil {
			size = n
		}
		name := "ct_entry." + m.Name
		f, ok := l.Field(m.Name)
		switch {
		case !ok:
			return bad(name, "offset", off, -1)
		case f.Offset != off:
			return bad(name, "offset", off, f.Offset)
		case f.Size != size:
			return bad(name, "size", size, f.Size)
		}
		if m.Name == "flags" && l.FlagsOffset != off {
			return bad(name, "offset", off, l.FlagsOffset)
		}
	}
	var consts *btf.Enum
	if err := spec.Types.TypeByName("ct_const", &consts); err != nil {
		return fmt.Errorf("the sweeper's BTF: %w", err)
	}
	for _, v := range consts.Values {
		bit, ok := strings.CutPrefix(v.Name, "CT_")
		if !ok {
			continue
		}
		bit = strings.ToLower(bit)
		name := "ct_entry.flags:" + bit
		mask, ok := l.Bit(bit)
		switch {
		case !ok:
			return bad(name, "mask", int(v.Value), -1)
		case uint64(mask) != v.Value:
			return bad(name, "mask", int(v.Value), int(mask))
		}
	}
	for _, fam := range Families(p) {
		var key *btf.Struct
		if err := spec.Types.TypeByName(fmt.Sprintf("ct_key%d", fam), &key); err != nil {
			return fmt.Errorf("the sweeper's BTF: %w", err)
		}
		for _, role := range []profiles.MapRole{profiles.RoleCTTCP, profiles.RoleCTAny} {
			m, ok := p.Map(role, fam)
			if !ok {
				continue // New says which map is missing
			}
			if int(m.KeySize) != int(key.Size) {
				return bad(m.Name+" key", "size", int(key.Size), int(m.KeySize))
			}
		}
	}
	return nil
}

// program names the program of an engine (its name's prefix) for target
// t in the sweeper's mode: the mark programs, which hold a
// compare-and-swap, are programs of their own (bpf/sweep.bpf.c).
func (s *Sweeper) program(engine string, t target) string {
	if s.cfg.Mode == Mark {
		return engine + "mark_" + t.kind()
	}
	return engine + t.kind()
}

// load loads the programs of a BPF engine for the maps opened, and
// nothing else (older kernels reject programs they need not run), with the
// code for what policy sets of the given features hold. Only once they
// are loaded do they replace the programs loaded before.
func (s *Sweeper) load(engine Engine, features uint32) error {
	spec := s.state.spec.Copy()
	for name, v := range map[string]any{"node_timeout": s.node, "idle_bucket": s.buckets, "features": features} {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("configure the sweeper: %s: %w", name, err)
		}
	}
	repl := map[string]*ebpf.Map{"egwct_policies": s.state.policies, "egwct_sweep": s.state.stats}
	want := map[string]bool{}
	// A program deletes only from maps it was loaded with: Cilium's CT
	// maps (and bpf_for_each_map_elem's map) and SNAT maps are bound at
	// load time, with their exact size and flags.
	bind := func(name string, m *ctmap.Map) error {
		info, err := m.Info()
		if err != nil {
			return err
		}
		spec.Maps[name].MaxEntries, spec.Maps[name].Flags = info.MaxEntries, info.Flags
		repl[name] = m.Map
		return nil
	}
	for _, t := range s.targets {
		if err := bind("ct_"+t.kind(), t.m); err != nil {
			return err
		}
		if engine == ForEach {
			want[s.program("sweep_all_", t)] = true
		} else {
			want[s.program("iter_", t)] = true
		}
	}
	for i, m := range s.nat {
		if m != nil {
			if err := bind(fmt.Sprintf("snat%d", []int{4, 6}[i]), m); err != nil {
				return err
			}
		}
	}
	for name := range spec.Programs {
		if !want[name] {
			delete(spec.Programs, name)
		}
	}
	for name := range spec.Maps {
		if strings.HasPrefix(name, "ct_") && repl[name] == nil {
			delete(spec.Maps, name)
		}
	}
	colls, err := loadApart(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("load the sweeper: %+v", ve)
		}
		return fmt.Errorf("load the sweeper: %w", withMemlock(err))
	}
	s.unload()
	s.colls, s.features = colls, features
	for _, c := range colls {
		for i, t := range s.targets {
			if p := c.Programs[s.program("sweep_all_", t)]; p != nil {
				s.targets[i].each = p
			}
			if p := c.Programs[s.program("iter_", t)]; p != nil {
				s.targets[i].iter = p
			}
		}
	}
	return nil
}

// loadApart loads each program of spec in a collection of its own, all at
// once: the kernel verifies them side by side on the node's CPUs, and
// verifying is most of a load (an IPv6 program takes about 20 ms, an IPv4
// one 8, on a 2-vCPU VM: a second egwct apply spent 58 ms of its 280 in
// them, one after the other). Each collection has its own copy of the
// program's variables; the maps they share are opts' replacements. On
// any error nothing stays loaded.
func loadApart(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions) ([]*ebpf.Collection, error) {
	names := slices.Sorted(maps.Keys(spec.Programs))
	colls := make([]*ebpf.Collection, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		one := spec.Copy()
		for other := range one.Programs {
			if other != name {
				delete(one.Programs, other)
			}
		}
		wg.Go(func() { colls[i], errs[i] = ebpf.NewCollectionWithOptions(one, opts) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			for _, c := range colls {
				if c != nil {
					c.Close()
				}
			}
			return nil, err
		}
	}
	return colls, nil
}

// Close releases the programs and the maps; egwct's pinned state stays.
// A second Close does nothing.
func (s *Sweeper) Close() {
	s.unload()
	for _, t := range s.targets {
		t.m.Close()
	}
	s.targets = nil
	for i, m := range s.nat {
		if m != nil {
			m.Close()
			s.nat[i] = nil
		}
	}
}

// Sweep judges every entry of the CT maps once and handles the expired
// ones by the mode.
func (s *Sweeper) Sweep() (*Result, error) {
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	start := time.Now()
	now, err := s.clock()
	if err != nil {
		return nil, err
	}
	res := &Result{Counts: map[uint32]*[4]Counts{}}
	if s.choice.Engine != Userspace {
		if err := s.fit(); err != nil {
			return nil, err
		}
	}
	if s.choice.Engine == Userspace {
		if err := s.sweepUserspace(res, now); err != nil {
			return nil, err
		}
	} else if err := s.sweepBPF(res, now); err != nil {
		return nil, err
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

// clock is the datapath's time now, in lifetime units.
func (s *Sweeper) clock() (uint32, error) {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return ctmap.Now(s.cfg.Clock)
}

// setFeatures is what a policy set holds, as the program's enum
// set_feature: pods of each family, and pods whose rules are a list. No
// set (nil) may hold anything.
func setFeatures(v *sweeperPolicySet) uint32 {
	if v == nil {
		return uint32(sweeperSetFeatureALL_FEATURES)
	}
	// The slots the program reaches: the same masks as its.
	var f uint32
	for _, p := range v.Pods4[:min(1<<(v.Bits4&31), len(v.Pods4))] {
		if p.N > 0 {
			f |= uint32(sweeperSetFeatureHAS_PODS4)
			if p.Bits == 0 {
				f |= uint32(sweeperSetFeatureHAS_LISTS4)
			}
		}
	}
	for _, p := range v.Pods6[:min(1<<(v.Bits6&31), len(v.Pods6))] {
		if p.N > 0 {
			f |= uint32(sweeperSetFeatureHAS_PODS6)
			if p.Bits == 0 {
				f |= uint32(sweeperSetFeatureHAS_LISTS6)
			}
		}
	}
	return f
}

// fit loads the BPF engine's programs again when the set in force holds
// what the loaded ones leave out (a set of the same features or fewer
// keeps them): with the features of both, so that sets taking turns load
// at most once more. Should the kernel refuse the larger programs, auto
// goes on down AutoOrder as New would have (the new choice is recorded
// and Choice says it); an explicit engine fails the sweep.
func (s *Sweeper) fit() error {
	set, err := s.state.setInForce()
	if err != nil {
		return err
	}
	if len(s.colls) > 0 && set != nil && set == s.fitted {
		return nil
	}
	need := s.features | setFeatures(set)
	if len(s.colls) > 0 && need == s.features {
		s.fitted = set
		return nil
	}
	err = s.try(s.choice.Engine, need)
	if err == nil {
		s.fitted = set
		return nil
	}
	if !s.choice.Auto {
		return fmt.Errorf("load the %s engine for the policy set in force: %w", s.choice.Engine, err)
	}
	refused := append(slices.Clone(s.choice.Refused), Refusal{Engine: s.choice.Engine, Err: err})
	for _, e := range AutoOrder[slices.Index(AutoOrder, s.choice.Engine)+1:] {
		if err := s.try(e, need); err != nil {
			refused = append(refused, Refusal{Engine: e, Err: err})
			continue
		}
		s.choice, s.fitted = Choice{Engine: e, Auto: true, Refused: refused}, set
		return s.state.setEngine(s.choice)
	}
	return fmt.Errorf("no sweep engine loads on this node for the policy set in force: %s", Choice{Auto: true, Refused: refused}.Reason())
}

// sweepBPF runs a BPF engine's program over the CT maps: it judges every
// entry and, in reclaim mode, deletes the expired ones and their SNAT
// entries inside the walk.
func (s *Sweeper) sweepBPF(res *Result, now uint32) error {
	if err := s.resetStats(); err != nil {
		return err
	}
	for _, c := range s.colls {
		if err := c.Variables["now"].Set(now); err != nil {
			return err
		}
	}
	if err := s.walk(); err != nil {
		return err
	}
	return s.collect(res)
}

// walk runs the program over every CT map.
func (s *Sweeper) walk() error {
	for _, t := range s.targets {
		var err error
		if t.each != nil {
			_, err = t.each.Run(&ebpf.RunOptions{})
		} else {
			err = s.iterate(t)
		}
		if err != nil {
			return fmt.Errorf("sweep %s: %w", t.m.Spec.Name, err)
		}
	}
	return nil
}

// iterate runs the iterator over one map to its end. A read processes at
// most about a million elements and may then report EAGAIN: read again.
func (s *Sweeper) iterate(t target) error {
	it, err := attachIter(t.iter, t.m.Map)
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
		case errors.Is(err, errAgain), errors.Is(err, os.ErrDeadlineExceeded):
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

// usedStatKeys are the statistics of slot 0 and the slots of the set in
// force: only these are reset and read (a set of 100 policies uses 404 of
// the 16,384, which made the fixed cost of a sweep 40 times smaller).
func (s *Sweeper) usedStatKeys() ([]uint32, error) {
	n, err := s.state.policySlots()
	if err != nil {
		return nil, err
	}
	return statKeys[:(n+1)*4], nil
}

// resetStats zeroes the per-sweep statistics in one batch update.
func (s *Sweeper) resetStats() error {
	keys, err := s.usedStatKeys()
	if err != nil {
		return err
	}
	zero := make([]sweeperSweepStats, len(keys))
	_, err = s.state.stats.BatchUpdate(keys, zero, nil)
	if errors.Is(err, ebpf.ErrNotSupported) {
		for _, k := range keys {
			if err := s.state.stats.Put(k, &zero[0]); err != nil {
				return err
			}
		}
		return nil
	}
	return err
}

// collect reads the statistics the program wrote.
func (s *Sweeper) collect(res *Result) error {
	used, err := s.usedStatKeys()
	if err != nil {
		return err
	}
	vals := make([]sweeperSweepStats, len(used))
	keys := make([]uint32, len(used))
	var cursor ebpf.MapBatchCursor
	count, err := s.state.stats.BatchLookup(&cursor, keys, vals, nil)
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist) || err == nil:
	case errors.Is(err, ebpf.ErrNotSupported):
		for i, k := range used {
			if err := s.state.stats.Lookup(k, &vals[i]); err != nil {
				return err
			}
		}
		keys, count = used, len(used)
	default:
		return err
	}
	for j, p := range vals[:count] {
		c := Counts{Expired: p.Expired, DeletedCT: p.DeletedCt, DeletedNAT: p.DeletedNat, Refreshed: p.Refreshed, Idle: p.Idle}
		// The program counts each entry once, in its idle bucket.
		for _, n := range c.Idle {
			c.Seen += n
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

// deleteCT deletes a CT entry judged expired (the userspace engine),
// unless its lifetime changed since it was judged (the datapath refreshed
// it); deleteNAT then deletes its SNAT egress and reverse entries.
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

func (s *Sweeper) deleteNAT(nat *ctmap.Map, ctKey []byte) (uint64, error) {
	if nat == nil {
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
	raw := make([]byte, nat.Spec.ValueSize)
	if err := nat.Lookup(ek, raw); err != nil {
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
	if err := nat.Delete(rk); err == nil {
		n++
	} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return n, err
	}
	if err := nat.Delete(ek); err == nil {
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
			if c.Expired == 0 && c.DeletedCT == 0 {
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
