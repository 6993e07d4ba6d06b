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
	keys  [][14]byte // known CT keys (TCP and others)
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
	now, err := ctmap.Now(clock)
	if err != nil {
		d.Close()
		return nil, err
	}
	d.g = newGen(d.rng, res.Profile, clock, now, worldFor(st.Seed, st.Policies))
	d.b = newBatches(res.Profile, d.maps)
	if err := d.learn(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// learn reads the flows and SNAT ports already in the maps.
func (d *Driver) learn() error {
	for _, m := range d.maps {
		if m.Spec.Family != 4 {
			continue
		}
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
				d.keys = append(d.keys, [14]byte(k))
				d.g.created[[14]byte(k)] = true
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
func (d *Driver) Flows() int { return len(d.keys) }

// Step refreshes refresh random flows, opens open new ones and closes
// close established ones, at the datapath's current time.
func (d *Driver) Step(refresh, open, close int) (Stats, error) {
	var s Stats
	now, err := ctmap.Now(d.clock)
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
		d.keys = append(d.keys, [14]byte(f.ct.Key.Bytes()))
		s.Opened++
	}
	if err := d.b.flush(); err != nil {
		return s, err
	}
	for i := 0; i < refresh+close && len(d.keys) > 0; i++ {
		j := d.rng.IntN(len(d.keys))
		ok, err := d.touch(d.keys[j], now, i >= refresh, &s)
		if err != nil {
			return s, err
		}
		if !ok {
			// Evicted or collected: forget it.
			d.keys[j] = d.keys[len(d.keys)-1]
			d.keys = d.keys[:len(d.keys)-1]
			s.Gone++
		}
	}
	return s, nil
}

// touch plays one packet of a flow: a refresh, or with close a FIN from
// both sides. It reports false when the entry is gone.
func (d *Driver) touch(key [14]byte, now uint32, close bool, s *Stats) (bool, error) {
	m := d.b.ct
	if key[12] != ctmap.ProtoTCP {
		m = d.b.ctAny
	}
	var v ctmap.CTEntry
	if err := m.Lookup(key[:], v[:]); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return false, nil
		}
		return false, err
	}
	c := ctmap.CT{Value: v}
	c.Key, _ = ctmap.DecodeTuple(key[:])
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
	if err := m.Update(key[:], v[:], ebpf.UpdateExist); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
