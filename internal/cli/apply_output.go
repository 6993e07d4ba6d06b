package cli

import (
	"github.com/egwct/egwct/internal/enforce"
	"github.com/egwct/egwct/internal/printer"
	"github.com/egwct/egwct/pkg/sweep"
)

// resultDoc is apply's document of what it did, per policy of the set.
func resultDoc(res *enforce.Resolved, ar *enforce.ApplyResult) *printer.ApplyResult {
	var rows []printer.AppliedPolicy
	for i, p := range res.Set {
		r := printer.AppliedPolicy{Policy: p.Name, Keys: len(p.Keys)}
		cs := ar.Sweep.Counts[uint32(i+1)]
		if cs == nil {
			cs = new([4]sweep.Counts) // a policy of no entries
		}
		for _, c := range cs {
			r.Entries += c.Seen
			r.Expired += c.Expired
			r.DeletedCT += c.DeletedCT
			r.DeletedNAT += c.DeletedNAT
			r.Refreshed += c.Refreshed
		}
		rows = append(rows, r)
	}
	return printer.NewApplyResult(ar.Mode.String(), ar.Engine.Engine.String(), ar.Engine.Reason(), ar.Sweep.Entries, ar.Sweep.Duration, rows)
}

// planDoc is the dry run's document.
func planDoc(p *enforce.Plan) *printer.ApplyPlan {
	var pols []printer.PlannedPolicy
	for _, pp := range p.Policies {
		pols = append(pols, printer.NewPlannedPolicy(pp.Name, pp.Keys, pp.Expire))
	}
	ports := map[string]int{}
	for _, f := range p.PortsFreed {
		ports[f.Egress.String()] = f.Ports
	}
	return printer.NewApplyPlan(p.Keys, p.Added, p.Removed, pols, ports)
}
