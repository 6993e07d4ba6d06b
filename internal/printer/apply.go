package printer

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// The kinds of apply's documents.
const (
	KindApplyResult = "ApplyResult"
	KindApplyPlan   = "ApplyPlan"
)

// ApplySpec is the -o of egwct apply (with and without --dry-run).
var ApplySpec = Spec{Default: Table, Formats: []string{Table, JSON, YAML, Name, JSONPath, GoTemplate}}

// ApplyResult is what one `egwct apply` did (docs/schemas/apply-result.json).
type ApplyResult struct {
	Header
	// Mode is the sweeper's mode (reclaim or mark).
	Mode string `json:"mode"`
	// Engine is how the sweep walked the CT maps (foreach, iterator or
	// userspace), and EngineReason why: chosen with --engine, or auto and
	// the engines the kernel refused before it.
	Engine       string `json:"engine"`
	EngineReason string `json:"engineReason,omitempty"`
	// Sweep is the sweep that applied the set.
	Sweep SweepSummary `json:"sweep"`
	// Policies are the policies with timeouts, in set order.
	Policies []AppliedPolicy `json:"policies"`
}

// SweepSummary is one sweep over the CT maps.
type SweepSummary struct {
	// Entries is how many CT entries the sweep visited.
	Entries uint64 `json:"entries"`
	// DurationSeconds is how long it took.
	DurationSeconds float64 `json:"durationSeconds"`
}

// AppliedPolicy is one policy's part of a sweep.
type AppliedPolicy struct {
	// Policy is the policy's display name (namespace/name or name).
	Policy string `json:"policy"`
	// Keys is how many (source, CIDR) keys the policy resolved to.
	Keys int `json:"keys"`
	// Entries counts the CT entries of the policy the sweep saw, and
	// Expired those it expired.
	Entries uint64 `json:"entries"`
	Expired uint64 `json:"expired"`
	// DeletedCT and DeletedNAT count the CT and SNAT entries removed.
	DeletedCT  uint64 `json:"deletedCT"`
	DeletedNAT uint64 `json:"deletedNAT"`
	// Refreshed counts expired entries that saw traffic before their
	// deletion and were kept.
	Refreshed uint64 `json:"refreshed"`
}

// NewApplyResult returns the document with its header and the duration
// in seconds.
func NewApplyResult(mode, engine, reason string, entries uint64, took time.Duration, policies []AppliedPolicy) *ApplyResult {
	if policies == nil {
		policies = []AppliedPolicy{}
	}
	return &ApplyResult{Header: NewHeader(KindApplyResult), Mode: mode, Engine: engine, EngineReason: reason,
		Sweep: SweepSummary{Entries: entries, DurationSeconds: Seconds(took)}, Policies: policies}
}

// View prints the result: the table is apply's per-policy table and the
// note on refreshed entries.
func (r *ApplyResult) View() View {
	return View{
		Doc: r,
		Names: func() []string {
			var n []string
			for _, p := range r.Policies {
				n = append(n, Clean(p.Policy))
			}
			return n
		},
		Table: func(w io.Writer, o TableOptions) error {
			t := NewTable(w, o.NoHeaders, "POLICY", "KEYS", "ENTRIES", "EXPIRED", "CT DELETED", "NAT DELETED")
			var refreshed uint64
			for _, p := range r.Policies {
				_ = t.Append(Clean(p.Policy), p.Keys, p.Entries, p.Expired, p.DeletedCT, p.DeletedNAT)
				refreshed += p.Refreshed
			}
			if err := t.Render(); err != nil {
				return err
			}
			if refreshed > 0 {
				fmt.Fprintf(w, "%d expired entries saw traffic before their deletion and were kept\n", refreshed)
			}
			return nil
		},
	}
}

// ApplyPlan is what `egwct apply --dry-run` would change and do
// (docs/schemas/apply-plan.json).
type ApplyPlan struct {
	Header
	// Keys is how many (source, CIDR) keys the set holds; Added and
	// Removed compare them with the set in force.
	Keys    int `json:"keys"`
	Added   int `json:"added"`
	Removed int `json:"removed"`
	// Policies are the policies with timeouts, in set order.
	Policies []PlannedPolicy `json:"policies"`
	// PortsFreed are the SNAT ports a reclaim sweep would free now, by
	// egress IP in address order.
	PortsFreed []PortsFreed `json:"portsFreed"`
}

// PlannedPolicy is what a sweep now would do to one policy's entries.
type PlannedPolicy struct {
	// Policy and Keys are as in AppliedPolicy.
	Policy string `json:"policy"`
	Keys   int    `json:"keys"`
	// ExpireNow is how many entries a sweep now would expire, in all and
	// by state.
	ExpireNow        int         `json:"expireNow"`
	ExpireNowByState StateCounts `json:"expireNowByState"`
}

// StateCounts are counts by CT state.
type StateCounts struct {
	// Syn, Established, Closing and NonTCP are the states of profiles.State.
	Syn         int `json:"syn"`
	Established int `json:"established"`
	Closing     int `json:"closing"`
	NonTCP      int `json:"nonTCP"`
}

// NewStateCounts converts counts in profiles.State order (syn,
// established, closing, non-tcp).
func NewStateCounts(c [4]int) StateCounts {
	return StateCounts{Syn: c[0], Established: c[1], Closing: c[2], NonTCP: c[3]}
}

// Total is the sum over the states.
func (c StateCounts) Total() int { return c.Syn + c.Established + c.Closing + c.NonTCP }

// NewPlannedPolicy returns one policy's line of the plan.
func NewPlannedPolicy(name string, keys int, expire [4]int) PlannedPolicy {
	s := NewStateCounts(expire)
	return PlannedPolicy{Policy: name, Keys: keys, ExpireNow: s.Total(), ExpireNowByState: s}
}

// PortsFreed is the SNAT ports freed on one egress IP.
type PortsFreed struct {
	// EgressIP is the SNAT address; Ports how many of its ports a reclaim
	// sweep would free.
	EgressIP string `json:"egressIP"`
	Ports    int    `json:"ports"`
}

// NewApplyPlan returns the plan with its header; ports (egress IP → ports
// freed) are sorted by address.
func NewApplyPlan(keys, added, removed int, policies []PlannedPolicy, ports map[string]int) *ApplyPlan {
	p := &ApplyPlan{Header: NewHeader(KindApplyPlan), Keys: keys, Added: added, Removed: removed,
		Policies: policies, PortsFreed: []PortsFreed{}}
	if p.Policies == nil {
		p.Policies = []PlannedPolicy{}
	}
	for ip, n := range ports {
		p.PortsFreed = append(p.PortsFreed, PortsFreed{EgressIP: ip, Ports: n})
	}
	slices.SortFunc(p.PortsFreed, func(a, b PortsFreed) int {
		x, errX := netip.ParseAddr(a.EgressIP)
		y, errY := netip.ParseAddr(b.EgressIP)
		if errX != nil || errY != nil {
			return strings.Compare(a.EgressIP, b.EgressIP)
		}
		return x.Compare(y)
	})
	return p
}

// View prints the plan: the table is the dry run's summary line, the
// per-policy table of expirations by state and the ports freed per
// egress IP.
func (p *ApplyPlan) View() View {
	return View{
		Doc: p,
		Names: func() []string {
			var n []string
			for _, q := range p.Policies {
				n = append(n, Clean(q.Policy))
			}
			return n
		},
		Table: func(w io.Writer, o TableOptions) error {
			fmt.Fprintf(w, "Dry run: %d policies with timeouts, %d keys (+%d added, -%d removed against the set in force); nothing changed.\n\n",
				len(p.Policies), p.Keys, p.Added, p.Removed)
			t := NewTable(w, o.NoHeaders, "POLICY", "KEYS", "EXPIRE NOW", "SYN", "ESTABLISHED", "CLOSING", "NON-TCP")
			for _, q := range p.Policies {
				e := q.ExpireNowByState
				_ = t.Append(Clean(q.Policy), q.Keys, q.ExpireNow, e.Syn, e.Established, e.Closing, e.NonTCP)
			}
			if err := t.Render(); err != nil {
				return err
			}
			if len(p.PortsFreed) == 0 {
				return nil
			}
			fmt.Fprintln(w, "\nSNAT ports a reclaim sweep would free now:")
			t = NewTable(w, o.NoHeaders, "EGRESS IP", "PORTS")
			for _, f := range p.PortsFreed {
				_ = t.Append(f.EgressIP, f.Ports)
			}
			return t.Render()
		},
	}
}
