package printer

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestApplyViews(t *testing.T) {
	res := NewApplyResult("reclaim", "iter", "", 1200, 1500*time.Millisecond, []AppliedPolicy{
		{Policy: "payments-egress", Keys: 3, Entries: 1000, Expired: 10, DeletedCT: 10, DeletedNAT: 20, Refreshed: 1},
		{Policy: "evil\x1b[2J", Keys: 1},
	})
	plan := NewApplyPlan(4, 1, 0, []PlannedPolicy{NewPlannedPolicy("payments-egress", 3, [4]int{1, 2, 3, 4})},
		map[string]int{"192.0.2.10": 5, "192.0.2.9": 2, "2001:db8::1": 1})
	tests := []struct {
		name   string
		view   View
		output string
		want   []string // in this order
	}{
		{"result table", res.View(), "table", []string{"POLICY", "CT DELETED", "NAT DELETED", "payments-egress", "20", `evil\x1b[2J`,
			"1 expired entries saw traffic"}},
		{"result json", res.View(), "json", []string{`"kind": "ApplyResult"`, `"mode": "reclaim"`, `"durationSeconds": 1.5`, `"deletedCT": 10`, `"deletedNAT": 20`}},
		{"result name", res.View(), "name", []string{"payments-egress\n", `evil\x1b[2J` + "\n"}},
		{"plan table", plan.View(), "table", []string{"Dry run: 1 policies with timeouts, 4 keys (+1 added, -0 removed", "EXPIRE NOW", "payments-egress", "10",
			"SNAT ports a reclaim sweep would free now:", "192.0.2.9", "192.0.2.10", "2001:db8::1"}},
		{"plan json", plan.View(), "json", []string{`"kind": "ApplyPlan"`, `"expireNow": 10`, `"nonTCP": 4`, `"egressIP": "192.0.2.9"`, `"egressIP": "192.0.2.10"`}},
		{"plan jsonpath", plan.View(), "jsonpath={.portsFreed[0].egressIP}", []string{"192.0.2.9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := (&Flags{Spec: ApplySpec, Output: tt.output}).Printer()
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := p.Print(&b, tt.view); err != nil {
				t.Fatal(err)
			}
			rest := b.String()
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("no %q (in order) in\n%s", w, b.String())
				}
				rest = rest[i+len(w):]
			}
		})
	}
}
