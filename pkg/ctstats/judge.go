package ctstats

import (
	"time"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

// PortCapacity is how many SNAT source ports one egress IP has towards one
// destination (IP, port, protocol) with Cilium's default node-port range,
// 30000-32767: the ports above it. A node with another range has
// nodeconfig.Config.PortCapacity.
const PortCapacity = 32768

// DefaultTopN is how many destinations a bounded port-pressure reading
// keeps, as Cilium's own nat-stats shows the top 30.
const DefaultTopN = 30

// Judge is a policy set on one node at one moment: how every walk of this
// package judges an entry. Slot i+1 is policy i of the set, as
// sweep.(*State).Replace assigns them; slot 0 is no policy.
type Judge struct {
	times    ctmap.Times
	matcher  *sweep.Matcher
	timeouts [][4]time.Duration
}

// NewJudge indexes set for judging entries with the clock, current time
// and node timeouts of t.
func NewJudge(set []sweep.Policy, t ctmap.Times) *Judge {
	j := &Judge{times: t, matcher: sweep.NewMatcher(set), timeouts: make([][4]time.Duration, len(set)+1)}
	for i, p := range set {
		for st, u := range p.Timeouts {
			if u != 0 {
				j.timeouts[i+1][st] = t.Clock.Duration(uint64(u))
			}
		}
	}
	return j
}

// Slots is the number of policy slots, no policy's included.
func (j *Judge) Slots() int { return len(j.timeouts) }

// Times are the clock and node timeouts the judge uses.
func (j *Judge) Times() ctmap.Times { return j.times }

// Timeout is the policy's timeout of slot for state st; 0 means the
// node's (and for slot 0 or a slot out of range).
func (j *Judge) Timeout(slot uint32, st profiles.State) time.Duration {
	if int(slot) >= len(j.timeouts) || int(st) >= 4 {
		return 0
	}
	return j.timeouts[slot][st]
}

// Judge returns the entry's policy slot and whether a sweep now expires it
// (see sweep.Matcher.Judge).
func (j *Judge) Judge(c *ctmap.CT) (slot uint32, over bool) {
	return j.matcher.Judge(c, j.times)
}
