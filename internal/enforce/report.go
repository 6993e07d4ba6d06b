package enforce

import (
	"fmt"
	"strings"

	"github.com/egwct/egwct/pkg/profiles"
)

// The reasons of the Events on a CiliumEgressGatewayPolicy, as `kubectl
// describe cegp NAME` shows them.
const (
	// ReasonApplied: the policy's timeouts are in force.
	ReasonApplied = "TimeoutsApplied"
	// ReasonInvalid: the policy's timeout text is refused, with the
	// finding.
	ReasonInvalid = "InvalidTimeouts"
)

// PolicyEvent is what one policy's current generation warrants telling
// its author. Agents that resolve the same generation make the same
// PolicyEvent, so one writer for all of them suffices.
type PolicyEvent struct {
	Policy, UID string
	Generation  int64
	// Reason is ReasonApplied or ReasonInvalid; Type is Normal or
	// Warning, as Kubernetes Events have it.
	Reason, Type string
	Message      string
	// Outcome is what the Event is about: the timeouts in force, or the
	// findings. A change of the annotation keeps the generation (it is
	// metadata), so the outcome tells one text from the next.
	Outcome string
}

// Key names the (policy, generation, outcome) an Event is written once
// for.
func (e PolicyEvent) Key() string {
	return fmt.Sprintf("%s/%s/%d/%s/%s", e.Policy, e.UID, e.Generation, e.Reason, e.Outcome)
}

// Reporter receives, after each resolve, the events of every policy read
// from a cluster; it decides what is new. It must not block.
type Reporter interface {
	Report([]PolicyEvent)
}

// PolicyEvents are the events of a resolved set: one per policy with a
// timeout text that was read from a cluster (has a UID).
func PolicyEvents(p *profiles.Profile, r *Resolved) []PolicyEvent {
	var out []PolicyEvent
	for _, st := range r.Policies {
		if st.UID == "" {
			continue
		}
		e := PolicyEvent{Policy: st.Name, UID: st.UID, Generation: st.Generation}
		switch st.Outcome {
		case Applied:
			e.Reason, e.Type, e.Outcome = ReasonApplied, "Normal", keysText(p, st)
			e.Message = fmt.Sprintf("egwct: %s in force for %s; every egwct agent (one per node) sweeps with them",
				keysText(p, st), reach(st))
		default:
			e.Reason, e.Type, e.Outcome = ReasonInvalid, "Warning", Summary(st.Findings)
			what := "its flows keep the node's timeouts"
			if st.Outcome == Kept {
				what = fmt.Sprintf("its last valid timeouts stay in force (%s)", keysText(p, st))
			}
			e.Message = fmt.Sprintf("egwct: timeout text refused, %s: %s", what, Summary(st.Findings))
		}
		// An Event's message is at most 1 KiB.
		if len(e.Message) > 1024 {
			e.Message = e.Message[:1021] + "..."
		}
		out = append(out, e)
	}
	return out
}

// reach is "12 (pod, CIDR) keys of 6 pods on 3 nodes": what the
// policy selects, as its CiliumEndpoints say.
func reach(st PolicyStatus) string {
	s := fmt.Sprintf("%d (pod, CIDR) %s of %d %s", st.Keys, plural(st.Keys, "key"), st.Pods, plural(st.Pods, "pod"))
	if st.Nodes > 0 {
		s += fmt.Sprintf(" on %d %s", st.Nodes, plural(st.Nodes, "node"))
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// keysText is "bpfCtTimeoutRegularTcp=15m0s, bpfCtTimeoutRegularAny=30s".
func keysText(p *profiles.Profile, st PolicyStatus) string {
	var parts []string
	for _, s := range profiles.States {
		if d, ok := st.Timeouts[s]; ok {
			parts = append(parts, p.ParameterFor(s).Key+"="+d.String())
		}
	}
	return strings.Join(parts, ", ")
}
