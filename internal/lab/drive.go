package lab

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/cilium/ebpf"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// Driver keeps a lab node alive like a datapath would: packets of active
// flows refresh their lifetime (now + timeout of the state), new flows
// arrive with new SNAT mappings, and some flows close.
type Driver struct {
	st    *State
	g     *gen
	maps  map[string]*ctmap.Map
	b     *batches
	keys  keyList // known CT keys (TCP and others, both families)
	rng   *rand.Rand
	clock nodeconfig.Clock
}

// Stats counts what one Step did.
type Stats struct {
	Refreshed, Opened, Closed, Gone int
}

// NewDriver opens the lab described by the state directory.
func NewDriver(stateDir string) (*Driver, error) {
	st, err := LoadState(stateDir)
	if err != nil {
		return nil, fmt.Errorf("no lab in %s: %w", stateDir, err)
	}
	res, err := profiles.Resolve(st.Version)
	if err != nil {
		return nil, err
	}
	clock := nodeconfig.Clock{Mode: nodeconfig.Ktime}
	if st.Clock == "jiffies" {
		clock = nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: st.HZ}
	}
	d := &Driver{st: st, maps: map[string]*ctmap.Map{}, clock: clock,
		rng: rand.New(rand.NewPCG(st.Seed, 0x64726976))} // "driv"
	for _, s := range res.Profile.Maps {
		if s.Role != profiles.RoleCTTCP && s.Role != profiles.RoleCTAny && s.Role != profiles.RoleSNAT {
			continue
		}
		m, err := ctmap.Open(st.BPFFS, s, true)
		if errors.Is(err, ctmap.ErrMapMissing) && s.Family == 6 {
			continue
		}
		if err != nil {
			d.Close()
			return nil, err
		}
		d.maps[s.Name] = m
	}
	now, err := clockNow(clock)
	if err != nil {
		d.Close()
		return nil, err
	}
	d.g = newGen(d.rng, res.Profile, clock, now, worldFor(st.Seed, st.Policies, st.IPv6))
	d.b = newBatches(res.Profile, d.maps)
	if st.IPv6 && (d.b.ct[1] == nil || d.b.ctAny[1] == nil) {
		d.Close()
		return nil, fmt.Errorf("the lab in %s is dual-stack but its IPv6 CT maps are missing", stateDir)
	}
	if err := d.learn(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// learn reads the flows and SNAT ports already in the maps.
func (d *Driver) learn() error {
	for _, m := range d.maps {
		err := m.Walk(func(k, v []byte) error {
			switch m.Spec.Role {
			case profiles.RoleSNAT:
				t, _ := ctmap.DecodeTuple(k)
				e, _ := ctmap.DecodeNATEntry(v)
				if t.Flags == ctmap.TupleOut {
					key := portKey{e.Addr(), netipAddrPort(t.DAddr, t.DPort), t.NextHdr}
					if d.g.ports[key] == nil {
						d.g.ports[key] = map[uint16]bool{}
					}
					d.g.ports[key][e.Port()] = true
				}
			default:
				d.keys.add(k)
				d.g.created.add(k)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Close closes the maps.
func (d *Driver) Close() {
	for _, m := range d.maps {
		m.Close()
	}
}

// Flows is the number of CT entries the driver knows.
func (d *Driver) Flows() int { return d.keys.len() }

// keyList is a list of CT keys of both families to pick from at random.
type keyList struct {
	v4 [][ctmap.TupleSize4]byte
	v6 [][ctmap.TupleSize6]byte
}

func (l *keyList) len() int { return len(l.v4) + len(l.v6) }

// add appends a copy of k.
func (l *keyList) add(k []byte) {
	if len(k) == ctmap.TupleSize4 {
		l.v4 = append(l.v4, [ctmap.TupleSize4]byte(k))
	} else {
		l.v6 = append(l.v6, [ctmap.TupleSize6]byte(k))
	}
}

// get returns key i: the IPv4 keys come first.
func (l *keyList) get(i int) []byte {
	if i < len(l.v4) {
		return l.v4[i][:]
	}
	return l.v6[i-len(l.v4)][:]
}

// remove drops key i, moving the last key of its family in its place.
func (l *keyList) remove(i int) {
	if i < len(l.v4) {
		l.v4[i] = l.v4[len(l.v4)-1]
		l.v4 = l.v4[:len(l.v4)-1]
		return
	}
	i -= len(l.v4)
	l.v6[i] = l.v6[len(l.v6)-1]
	l.v6 = l.v6[:len(l.v6)-1]
}

// Step refreshes refresh random flows, opens open new ones and closes
// close established ones, at the datapath's current time.
func (d *Driver) Step(refresh, open, close int) (Stats, error) {
	var s Stats
	now, err := clockNow(d.clock)
	if err != nil {
		return s, err
	}
	d.g.now = now
	for i := 0; i < open; i++ {
		f, ok := d.g.flow()
		if !ok {
			continue
		}
		d.g.setEntry(&f.ct.Value, f.ct.State(), f.ct.Value.Flags(), f.ct.Value[42], f.ct.Value[43], f.identity, 0)
		f.idle = 0
		if err := d.b.addFlow(d.g, f); err != nil {
			return s, err
		}
		d.keys.add(f.ct.Key.Bytes())
		s.Opened++
	}
	if err := d.b.flush(); err != nil {
		return s, err
	}
	for i := 0; i < refresh+close && d.keys.len() > 0; i++ {
		j := d.rng.IntN(d.keys.len())
		ok, err := d.touch(d.keys.get(j), now, i >= refresh, &s)
		if err != nil {
			return s, err
		}
		if !ok {
			// Evicted or collected: forget it.
			d.keys.remove(j)
			s.Gone++
		}
	}
	return s, nil
}

// touch plays one packet of a flow: a refresh, or with close a FIN from
// both sides. It reports false when the entry is gone.
func (d *Driver) touch(key []byte, now uint32, close bool, s *Stats) (bool, error) {
	c := ctmap.CT{}
	var err error
	if c.Key, err = ctmap.DecodeTuple(key); err != nil {
		return false, err
	}
	m, err := d.b.ctMap(c.Key)
	if err != nil {
		return false, err
	}
	var v ctmap.CTEntry
	if err := m.Lookup(key, v[:]); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return false, nil
		}
		return false, err
	}
	c.Value = v
	if c.Closing() {
		return true, nil // closed entries are not refreshed
	}
	state := c.State()
	switch {
	case close && state == profiles.StateEstablished:
		v.SetFlags(v.Flags() | ctmap.FlagRxClosing | ctmap.FlagTxClosing)
		v[42] |= tcpFIN
		v[43] |= tcpFIN
		state = profiles.StateClosing
		s.Closed++
	case close:
		return true, nil
	case state == profiles.StateSyn && d.rng.IntN(2) == 0:
		v.SetFlags(v.Flags() | ctmap.FlagSeenNonSyn)
		v[42] |= tcpACK
		v[43] |= tcpSYN | tcpACK
		state = profiles.StateEstablished
		s.Refreshed++
	default:
		s.Refreshed++
	}
	v.SetLifetime(now + d.g.units[state])
	setField(d.g.p, &v, "last_tx_report", uint64(now))
	if err := m.Update(key, v[:], ebpf.UpdateExist); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
