package ctmap

import (
	"time"

	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// Times turns lifetimes into durations on one node: its clock, the current
// time in lifetime units and its timeout for each state.
type Times struct {
	Clock nodeconfig.Clock
	// Now is the datapath's current time in lifetime units (see Now).
	Now uint32
	// Node is the node's timeout per state, in lifetime units as the
	// datapath adds them (whole seconds scaled by the clock).
	Node [4]uint32
}

// NewTimes builds Times from the node's timeouts.
func NewTimes(clock nodeconfig.Clock, now uint32, node map[profiles.State]time.Duration) Times {
	t := Times{Clock: clock, Now: now}
	for s, d := range node {
		t.Node[s] = uint32(clock.Units(d))
	}
	return t
}

// signed converts a difference of u32 clock values (which wrap) to time.
func (t Times) signed(units int32) time.Duration {
	if units < 0 {
		return -t.Clock.Duration(uint64(-int64(units)))
	}
	return t.Clock.Duration(uint64(units))
}

// Remaining is the time left before the entry's lifetime passes; negative
// once it has passed (expired, waiting for a GC).
func (t Times) Remaining(lifetime uint32) time.Duration {
	return t.signed(int32(lifetime - t.Now))
}

// Idle is how long the entry has seen no packet: now − (lifetime − the
// node's timeout for its state), since every packet of a live flow sets
// lifetime = now + timeout.
func (t Times) Idle(s profiles.State, lifetime uint32) time.Duration {
	return t.signed(int32(t.Now - (lifetime - t.Node[s])))
}
