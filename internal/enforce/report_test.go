package enforce

import (
	"strings"
	"testing"
	"time"

	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/validate"
)

func TestPolicyEvents(t *testing.T) {
	p := profiles.All()[0]
	bad := validate.Finding{Rule: "unknown-key", File: "cegp/b", Line: 7, Column: 7, Message: `unknown key "x"`, Suggestion: `did you mean "y"?`}
	r := &Resolved{Policies: []PolicyStatus{
		{Name: "a", UID: "u1", Generation: 2, Outcome: Applied, Keys: 4, Pods: 2, Nodes: 1,
			Timeouts: map[profiles.State]time.Duration{profiles.StateEstablished: 15 * time.Minute, profiles.StateNonTCP: 30 * time.Second}},
		{Name: "b", UID: "u2", Generation: 5, Outcome: Refused, Findings: []validate.Finding{bad}},
		{Name: "c", UID: "u3", Generation: 1, Outcome: Kept, Findings: []validate.Finding{bad, bad},
			Timeouts: map[profiles.State]time.Duration{profiles.StateSyn: 10 * time.Second}},
		{Name: "from-a-file", Outcome: Applied},
	}}
	evs := PolicyEvents(p, r)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3 (none for a policy from a file): %+v", len(evs), evs)
	}
	for i, want := range []struct{ reason, typ, msg string }{
		{ReasonApplied, "Normal", "bpfCtTimeoutRegularTcp=15m0s, bpfCtTimeoutRegularAny=30s in force for 4 (pod, CIDR) keys of 2 pods on 1 node;"},
		{ReasonInvalid, "Warning", `refused, its flows keep the node's timeouts: unknown-key at cegp/b:7:7: unknown key "x" (did you mean "y"?)`},
		{ReasonInvalid, "Warning", "its last valid timeouts stay in force (bpfCtTimeoutRegularTcpSyn=10s): unknown-key at cegp/b:7:7"},
	} {
		e := evs[i]
		if e.Reason != want.reason || e.Type != want.typ || !strings.Contains(e.Message, want.msg) {
			t.Errorf("event %d = %+v, want %s %s %q", i, e, want.reason, want.typ, want.msg)
		}
	}
	if evs[0].Key() == evs[1].Key() || !strings.Contains(evs[0].Key(), "/2/") {
		t.Errorf("keys %s %s", evs[0].Key(), evs[1].Key())
	}
}

func TestReach(t *testing.T) {
	for _, c := range []struct {
		st   PolicyStatus
		want string
	}{
		{PolicyStatus{Keys: 1, Pods: 1, Nodes: 1}, "1 (pod, CIDR) key of 1 pod on 1 node"},
		{PolicyStatus{Keys: 6, Pods: 3, Nodes: 2}, "6 (pod, CIDR) keys of 3 pods on 2 nodes"},
		{PolicyStatus{Keys: 2, Pods: 2}, "2 (pod, CIDR) keys of 2 pods"}, // nodes not known
		{PolicyStatus{}, "0 (pod, CIDR) keys of 0 pods"},
	} {
		if got := reach(c.st); got != c.want {
			t.Errorf("reach(%+v) = %q, want %q", c.st, got, c.want)
		}
	}
}
