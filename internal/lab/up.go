package lab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"time"

	"github.com/egwct/egwct/internal/bpffs"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// Config says what lab to build.
type Config struct {
	// BPFFS is where the maps go (under tc/globals); a bpffs is mounted
	// there unless one already is.
	BPFFS string
	// StateDir receives agent-runtime-config.json, lab.json and manifests/.
	StateDir string
	Version  profiles.Resolution
	Flows    int
	Policies int
	Seed     uint64
	Clock    nodeconfig.Clock
	// CTMax and NATMax size the maps; 0 picks Cilium's default or, for
	// large labs, room for every flow.
	CTMax, NATMax uint32
}

// Summary is what Up built.
type Summary struct {
	State    State
	CT       int // CT entries written
	NAT      int // SNAT entries written
	Egress   int // egress policy entries written
	Expired  int // CT entries whose lifetime has already passed
	Unpolicy int // CT entries of pods matching no policy
	CT6      int // CT entries of IPv6 flows (dual-stack labs)
}

// Up builds a lab. It refuses to overwrite any existing pin.
func Up(cfg Config) (*Summary, error) {
	p := cfg.Version.Profile
	if cfg.Flows < 0 || cfg.Policies < 1 {
		return nil, errors.New("a lab needs at least one policy and no negative flow count")
	}
	if cfg.Clock.Mode == nodeconfig.Jiffies && cfg.Clock.HZ <= 0 {
		return nil, errors.New("a jiffies lab needs the kernel's HZ")
	}
	for _, s := range p.Maps {
		if _, err := os.Lstat(ctmap.PinPath(cfg.BPFFS, s)); err == nil {
			return nil, fmt.Errorf("%s already exists; refusing to overwrite it (egwct lab down first, or use another --bpffs)", ctmap.PinPath(cfg.BPFFS, s))
		}
	}
	mounted, err := bpffs.Mount(cfg.BPFFS)
	if err != nil {
		return nil, err
	}
	st := State{
		Version: cfg.Version.Version.String(), Profile: p.Name, BPFFS: cfg.BPFFS, Mounted: mounted,
		Clock: cfg.Clock.Mode.String(), HZ: cfg.Clock.HZ, Seed: cfg.Seed, Flows: cfg.Flows, Policies: cfg.Policies,
		IPv6: DualStack(p),
	}
	ok := false
	defer func() {
		if !ok {
			_ = Down(cfg.StateDir, &st)
		}
	}()

	ctMax := sized(cfg.CTMax, 524288, cfg.Flows*2)
	anyMax := sized(cfg.CTMax, 262144, cfg.Flows)
	natMax := sized(cfg.NATMax, 524288, cfg.Flows*3)
	maps := map[string]*ctmap.Map{}
	defer func() {
		for _, m := range maps {
			m.Close()
		}
	}()
	for _, s := range p.Maps {
		max := s.DefaultMaxEntries
		switch s.Role {
		case profiles.RoleCTTCP:
			max = ctMax
		case profiles.RoleCTAny:
			max = anyMax
		case profiles.RoleSNAT:
			max = natMax
		}
		m, err := ctmap.Create(cfg.BPFFS, s, max)
		if err != nil {
			return nil, err
		}
		maps[s.Name] = m
		st.Maps = append(st.Maps, s.Name)
	}
	st.CTMax, st.CTAnyMax, st.NATMax = ctMax, anyMax, natMax
	// Record the lab before filling it, so that `lab down` can clean up
	// after an interrupted `lab up`.
	if err := saveState(cfg.StateDir, &st); err != nil {
		return nil, err
	}

	now, err := clockNow(cfg.Clock)
	if err != nil {
		return nil, err
	}
	w := worldFor(cfg.Seed, cfg.Policies, st.IPv6)
	g := newGen(rand.New(rand.NewPCG(cfg.Seed, 0x666c6f7773)), p, cfg.Clock, now, w) // "flows"
	sum := &Summary{}
	if err := g.flows(cfg.Flows, maps, sum); err != nil {
		return nil, err
	}
	if sum.Egress, err = writeEgress(p, w, maps); err != nil {
		return nil, err
	}
	if err := writeState(cfg, &st, w, g.timeouts); err != nil {
		return nil, err
	}
	ok = true
	sum.State = st
	return sum, nil
}

// DualStack reports whether a lab of profile p is dual-stack: Cilium
// versions with IPv6 egress gateway (1.18+, an IPv6 egress-policy map)
// give pods IPv6 addresses too, and about a fifth of the flows are IPv6.
func DualStack(p *profiles.Profile) bool {
	_, ok := p.Map(profiles.RoleEgressPolicy, 6)
	return ok
}

// clockNow reads the datapath's clock; tests fix it.
var clockNow = ctmap.Now

// sized picks a map size: the explicit one, else Cilium's default, grown
// to hold need entries (a power of two, at most 1<<24).
func sized(explicit, def uint32, need int) uint32 {
	if explicit > 0 {
		return explicit
	}
	n := def
	for int(n) < need && n < 1<<24 {
		n <<= 1
	}
	return n
}

// gen generates flows.
type gen struct {
	rng      *rand.Rand
	p        *profiles.Profile
	clock    nodeconfig.Clock
	now      uint32
	w        *world
	timeouts map[profiles.State]time.Duration
	units    [4]uint32
	ports    map[portKey]map[uint16]bool // SNAT ports used per (egress IP, dest, proto)
	created  keySet
}

// keySet is a set of CT keys of both families.
type keySet struct {
	v4 map[[ctmap.TupleSize4]byte]bool
	v6 map[[ctmap.TupleSize6]byte]bool
}

func newKeySet() keySet {
	return keySet{v4: map[[ctmap.TupleSize4]byte]bool{}, v6: map[[ctmap.TupleSize6]byte]bool{}}
}

func (s keySet) has(k []byte) bool {
	if len(k) == ctmap.TupleSize4 {
		return s.v4[[ctmap.TupleSize4]byte(k)]
	}
	return s.v6[[ctmap.TupleSize6]byte(k)]
}

func (s keySet) add(k []byte) {
	if len(k) == ctmap.TupleSize4 {
		s.v4[[ctmap.TupleSize4]byte(k)] = true
	} else {
		s.v6[[ctmap.TupleSize6]byte(k)] = true
	}
}

type portKey struct {
	egress netip.Addr
	dst    netip.AddrPort
	proto  uint8
}

func newGen(rng *rand.Rand, p *profiles.Profile, clock nodeconfig.Clock, now uint32, w *world) *gen {
	g := &gen{rng: rng, p: p, clock: clock, now: now, w: w, timeouts: map[profiles.State]time.Duration{},
		ports: map[portKey]map[uint16]bool{}, created: newKeySet()}
	for _, prm := range p.Parameters {
		g.timeouts[prm.State] = prm.Default
		g.units[prm.State] = uint32(clock.Units(prm.Default))
	}
	return g
}

// SNAT port range: above the default node-port range 30000-32767.
const portMin, portMax = 32768, 65535

// flow is one generated connection.
type flow struct {
	ct          ctmap.CT
	egress      netip.Addr // SNAT address (egress IP, or the node IP)
	snatPort    uint16
	identity    uint32
	related     bool // a bpf_lxc flow of a local pod: has an ICMP RELATED entry
	idle, total uint32
}

func (g *gen) flows(n int, maps map[string]*ctmap.Map, sum *Summary) error {
	b := newBatches(g.p, maps)
	for i := 0; i < n; i++ {
		f, ok := g.flow()
		if !ok {
			continue
		}
		if err := b.addFlow(g, f); err != nil {
			return err
		}
		sum.CT++
		if f.related {
			sum.CT++
			sum.Unpolicy++
		}
		if f.snatPort != 0 {
			sum.NAT += 2
		}
		if f.idle > f.total {
			sum.Expired++
		}
		if f.ct.Key.Family() == 6 {
			sum.CT6++
			if f.related {
				sum.CT6++
			}
		}
	}
	return b.flush()
}

// flow makes one new connection, or reports false when its SNAT ports ran
// out (the hot destination is full).
func (g *gen) flow() (flow, bool) {
	var f flow
	var pod netip.Addr
	var dst netip.AddrPort
	r := g.rng.Float64()
	proto := ctmap.ProtoTCP
	switch {
	case r < 0.17:
		proto = ctmap.ProtoUDP
	case r < 0.20:
		proto = ctmap.ProtoICMP
	}
	// A fifth of a dual-stack lab's flows are IPv6. (An IPv4-only lab
	// draws nothing here: its flows stay what its seed always gave.)
	v6 := g.w.dual && g.rng.IntN(5) == 0
	if v6 && proto == ctmap.ProtoICMP {
		proto = ctmap.ProtoICMPv6
	}
	if g.rng.IntN(10) == 0 {
		// A local pod matching no policy, masqueraded to the node IP.
		pods, node, anywhere, excluded := g.w.localPods, NodeIP, anyV4, localExcluded
		if v6 {
			pods, node, anywhere, excluded = g.w.localPods6, NodeIP6, anyV6, localExcluded6
		}
		pod = pods[g.rng.IntN(len(pods))]
		dst = netip.AddrPortFrom(randomIn(g.rng, anywhere, excluded), g.port(proto))
		f.egress, f.related, f.identity = node, true, 2
	} else {
		p := &g.w.policies[g.rng.IntN(len(g.w.policies))]
		pods, dests, excluded, hot, egress := p.Pods, p.Dests, p.Excluded, p.Hot, p.EgressIP
		if v6 {
			pods, dests, excluded, hot, egress = p.Pods6, p.Dests6, p.Excluded6, p.Hot6, p.EgressIP6
		}
		pod = pods[g.rng.IntN(len(pods))]
		if proto == ctmap.ProtoTCP && g.rng.IntN(10) < 3 {
			dst = hot
		} else {
			d := dests[g.rng.IntN(len(dests))]
			dst = netip.AddrPortFrom(randomIn(g.rng, d, excluded), g.port(proto))
		}
		f.egress, f.identity = egress, p.Identity
	}
	sport := uint16(32768 + g.rng.IntN(60999-32768))
	if proto == ctmap.ProtoICMP || proto == ctmap.ProtoICMPv6 {
		dst, sport = netip.AddrPortFrom(dst.Addr(), 0), uint16(g.rng.IntN(65536))
	}
	f.ct.Key = ctmap.Tuple{DAddr: pod, SAddr: dst.Addr(), DPort: dst.Port(), SPort: sport, NextHdr: proto, Flags: ctmap.TupleOut}
	k := f.ct.Key.Bytes()
	if g.created.has(k) {
		return f, false
	}
	f.snatPort = g.snatPort(f.egress, dst, proto, sport)
	if f.snatPort == 0 {
		return f, false
	}
	g.created.add(k)
	g.fillEntry(&f)
	return f, true
}

// Where local pods' flows go: anywhere but the cluster, the egress IPs and
// special ranges.
var (
	anyV4         = netip.MustParsePrefix("0.0.0.0/0")
	anyV6         = netip.MustParsePrefix("::/0")
	localExcluded = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("224.0.0.0/3"), netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("0.0.0.0/8")}
	localExcluded6 = []netip.Prefix{netip.MustParsePrefix("fd00::/8"), egressNet6}
)

func (g *gen) port(proto uint8) uint16 {
	if proto == ctmap.ProtoUDP {
		return []uint16{53, 123, 443, 514}[g.rng.IntN(4)]
	}
	return []uint16{443, 443, 443, 443, 80, 5432, 6379, 22, 8443}[g.rng.IntN(9)]
}

// snatPort allocates a port as the datapath does: the pod's own port if it
// is free and in range, else random ports; 0 when the range is full.
func (g *gen) snatPort(egress netip.Addr, dst netip.AddrPort, proto uint8, sport uint16) uint16 {
	key := portKey{egress, dst, proto}
	used := g.ports[key]
	if used == nil {
		used = map[uint16]bool{}
		g.ports[key] = used
	}
	if len(used) >= portMax-portMin+1 {
		return 0
	}
	p := sport
	for p < portMin || used[p] {
		p = uint16(portMin + g.rng.IntN(portMax-portMin+1))
	}
	used[p] = true
	return p
}

// TCP flag bits as in the tcp header.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpPSH = 0x08
	tcpACK = 0x10
)

// fillEntry gives the entry a state, an idle time and the fields the
// datapath maintains.
func (g *gen) fillEntry(f *flow) {
	state := profiles.StateNonTCP
	var flags uint16
	var tx, rx uint8
	if f.ct.Key.NextHdr == ctmap.ProtoTCP {
		switch r := g.rng.IntN(100); {
		case r < 5:
			state, tx = profiles.StateSyn, tcpSYN
		case r < 12:
			state, flags = profiles.StateClosing, ctmap.FlagSeenNonSyn|ctmap.FlagRxClosing|ctmap.FlagTxClosing
			tx, rx = tcpSYN|tcpACK|tcpPSH|tcpFIN, tcpSYN|tcpACK|tcpPSH|tcpFIN
		default:
			state, flags = profiles.StateEstablished, ctmap.FlagSeenNonSyn
			tx, rx = tcpSYN|tcpACK|tcpPSH, tcpSYN|tcpACK|tcpPSH
		}
	}
	f.total = g.units[state]
	// Idle times spread over the timeout, a fifth of them past it: expired
	// but not yet collected by Cilium's GC.
	// (No flow is older than the clock: with ktime, not older than the
	// node's uptime.)
	f.idle = uint32(g.rng.Float64() * min(1.25*float64(f.total), float64(g.now-1)))
	g.setEntry(&f.ct.Value, state, flags, tx, rx, f.identity, f.idle)
}

func (g *gen) setEntry(e *ctmap.CTEntry, state profiles.State, flags uint16, tx, rx uint8, identity, idle uint32) {
	*e = ctmap.CTEntry{}
	e.SetLifetime(g.now + g.units[state] - idle)
	e.SetFlags(flags)
	e[42], e[43] = tx, rx
	setField(g.p, e, "src_sec_id", uint64(identity))
	setField(g.p, e, "last_tx_report", uint64(g.now-idle))
	setField(g.p, e, "last_rx_report", uint64(g.now-idle))
	pk := uint64(2 + g.rng.IntN(5000))
	for _, name := range []string{"packets", "tx_packets"} {
		setField(g.p, e, name, pk)
	}
	for _, name := range []string{"bytes", "tx_bytes"} {
		setField(g.p, e, name, pk*uint64(80+g.rng.IntN(1200)))
	}
}

func setField(p *profiles.Profile, e *ctmap.CTEntry, name string, v uint64) {
	if f, ok := p.CTEntry.Field(name); ok {
		e.SetField(f, v)
	}
}
