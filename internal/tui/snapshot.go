package tui

import (
	"net/netip"
	"strings"
	"time"
	"unicode"

	"github.com/egwct/egwct/pkg/ctstats"
	"github.com/egwct/egwct/pkg/profiles"
)

// NoPolicy is the display name of the row of flows that match no policy.
const NoPolicy = "(no policy)"

// Query says what a Source should gather besides the policies view.
type Query struct {
	// FlowsOf names the policy whose flows to list ("" with Flows: the
	// flows of no policy).
	FlowsOf string
	// Flows asks for the flows of FlowsOf.
	Flows bool
	// Window is the refresh interval: flows whose remaining lifetime ends
	// within it count as expiring.
	Window time.Duration
	// Quick asks for a first frame fast: what is slow to read (the SNAT
	// maps, the biggest on a gateway) may be left out, and the snapshot
	// says so with Node.PortsPending.
	Quick bool
}

// Source provides snapshots of a node. Implementations must be safe to call
// from a goroutine other than the one that created them, one call at a time.
type Source interface {
	Snapshot(q Query) (*Snapshot, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(q Query) (*Snapshot, error)

// Snapshot implements Source.
func (f SourceFunc) Snapshot(q Query) (*Snapshot, error) { return f(q) }

// Snapshot is what top shows at one moment. It is not printed as is:
// `top -o json` prints a TopSnapshot document built from it (durations in
// seconds). Its JSON tags follow the same camelCase; its durations are
// Go's, in nanoseconds, named so.
type Snapshot struct {
	// Taken is when the snapshot was read.
	Taken time.Time `json:"taken"`
	// Cost is how long reading and aggregating took.
	Cost time.Duration `json:"costNanoseconds"`
	Node Node          `json:"node"`
	// Banner is a problem to show above everything (maps missing, …);
	// the rest of the snapshot may be empty.
	Banner   string   `json:"banner,omitempty"`
	Policies []Policy `json:"policies"`
	// FlowsOf is the policy whose flows Flows holds (Query.FlowsOf).
	FlowsOf string `json:"flowsOf,omitempty"`
	Flows   []Flow `json:"flows,omitempty"`
	Ports   []Port `json:"ports,omitempty"`
}

// Node are facts about the node for the header.
type Node struct {
	Profile string    `json:"profile"`
	Clock   string    `json:"clock"`
	Maps    []MapFill `json:"maps"`
	// Sweeper says whether egwct's state is present and what it holds.
	Sweeper  string   `json:"sweeper"`
	Warnings []string `json:"warnings,omitempty"`
	// Timeouts are the node's CT timeouts per state.
	Timeouts [4]time.Duration `json:"timeoutsNanoseconds"`
	// PortsAge is how old the SNAT reading behind the ports is, when it
	// was not read for this snapshot (big nodes read it less often).
	PortsAge time.Duration `json:"portsAgeNanoseconds,omitempty"`
	// PortsPending says the SNAT maps were not read for this snapshot (a
	// quick first frame): ports and egress addresses come with the next.
	PortsPending bool `json:"portsPending,omitempty"`
	// PortCapacity is how many SNAT source ports one egress IP has
	// towards one destination (IP, port, protocol) on the node: the ports
	// above its node-port range; 0: ctstats.PortCapacity, with Cilium's
	// default range.
	PortCapacity int `json:"portCapacity,omitempty"`
}

// Ports is the node's PortCapacity, or Cilium's default when it is 0.
func (n Node) Ports() int {
	if n.PortCapacity > 0 {
		return n.PortCapacity
	}
	return ctstats.PortCapacity
}

// MapFill is a map's fill level.
type MapFill struct {
	Name    string `json:"name"`
	Entries int    `json:"entries"`
	Max     int    `json:"maxEntries"`
}

// Policy is one row of the policies view.
type Policy struct {
	// Name is namespace/name, or NoPolicy.
	Name string `json:"name"`
	// Flows counts CT entries by state (profiles.State order).
	Flows [4]int `json:"flows"`
	Total int    `json:"total"`
	// IdleP50 and IdleP99 are percentiles of idle time (about 5 % precise).
	IdleP50 time.Duration `json:"idleP50Nanoseconds"`
	IdleP99 time.Duration `json:"idleP99Nanoseconds"`
	// Expiring counts flows whose effective remaining lifetime (the
	// smaller of the node's and the policy's) ends within the window.
	Expiring int `json:"expiring"`
	// Over counts flows idle longer than the policy allows: egwct's next
	// sweep expires them.
	Over int `json:"overPolicy"`
	// Expired counts flows whose lifetime has passed: waiting for Cilium's GC.
	Expired int `json:"expiredUncollected"`
	// Reclaimed is egwct's running total of CT entries it deleted.
	Reclaimed uint64 `json:"reclaimed"`
	// Timeouts are the policy's per state; 0 means the node's.
	Timeouts [4]time.Duration `json:"timeoutsNanoseconds"`
	// WorstPorts is the most SNAT ports in use towards one destination
	// among the policy's destinations, and WorstDest that destination.
	WorstPorts int    `json:"worstPorts"`
	WorstDest  string `json:"worstDest,omitempty"`
}

// Flow is one CT entry in the flows view.
type Flow struct {
	Src   netip.AddrPort `json:"src"`
	Dst   netip.AddrPort `json:"dst"`
	Proto uint8          `json:"proto"`
	State profiles.State `json:"state"`
	Idle  time.Duration  `json:"idleNanoseconds"`
	// Remaining is under the node's timeout (negative: expired, waiting
	// for Cilium's GC).
	Remaining time.Duration `json:"remainingNanoseconds"`
	// PolicyRemaining is under the policy's timeout, when HasPolicy.
	PolicyRemaining time.Duration `json:"policyRemainingNanoseconds"`
	HasPolicy       bool          `json:"hasPolicyTimeout"`
	// Egress is the SNAT address and port, when a SNAT entry exists.
	Egress netip.AddrPort `json:"egress"`
}

// Port is one (egress IP, destination, protocol) in the ports view.
type Port struct {
	Egress   netip.Addr `json:"egressIP"`
	Dst      netip.Addr `json:"dstIP"`
	DstPort  uint16     `json:"dstPort"`
	Proto    uint8      `json:"proto"`
	Used     int        `json:"used"`
	Policies []string   `json:"policies"`
}

// Clean makes text from a cluster object or a file safe for a terminal:
// control characters (C0, DEL, C1, and Unicode format characters such as
// bidirectional overrides) become '?'.
func Clean(s string) string {
	ok := true
	for _, r := range s {
		if unsafeRune(r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unsafeRune(r) {
			return '?'
		}
		return r
	}, s)
}

func unsafeRune(r rune) bool {
	return r == unicode.ReplacementChar || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}
