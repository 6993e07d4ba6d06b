package cli

import (
	"fmt"
	"io"

	"github.com/egwct/egwct/internal/enforce"
)

// applyRow is one policy of apply's summary.
type applyRow struct {
	Policy     string `json:"policy"`
	Keys       int    `json:"keys"`
	Entries    uint64 `json:"entries"`
	Expired    uint64 `json:"expired"`
	DeletedCT  uint64 `json:"deletedCT"`
	DeletedNAT uint64 `json:"deletedNAT"`
	Refreshed  uint64 `json:"refreshed"`
	Lost       uint64 `json:"lost"`
}

// printResult prints per policy: keys, entries seen, expired, deleted.
func (o *applyOptions) printResult(res *enforce.Resolved, ar *enforce.ApplyResult) error {
	var js []applyRow
	for i, p := range res.Set {
		r := applyRow{Policy: p.Name, Keys: len(p.Keys)}
		if cs := ar.Sweep.Counts[uint32(i+1)]; cs != nil {
			for _, c := range cs {
				r.Entries += c.Seen
				r.Expired += c.Expired
				r.DeletedCT += c.DeletedCT
				r.DeletedNAT += c.DeletedNAT
				r.Refreshed += c.Refreshed
				r.Lost += c.Lost
			}
		}
		js = append(js, r)
	}
	return printStructured(o.io, o.Output, js, func(w io.Writer) error {
		t := newTable(w, "POLICY", "KEYS", "ENTRIES", "EXPIRED", "CT DELETED", "NAT DELETED")
		var refreshed, lost uint64
		for _, r := range js {
			_ = t.Append(clean(r.Policy), fmt.Sprint(r.Keys), fmt.Sprint(r.Entries), fmt.Sprint(r.Expired), fmt.Sprint(r.DeletedCT), fmt.Sprint(r.DeletedNAT))
			refreshed, lost = refreshed+r.Refreshed, lost+r.Lost
		}
		if err := t.Render(); err != nil {
			return err
		}
		if refreshed > 0 {
			fmt.Fprintf(w, "%d expired entries saw traffic before their deletion and were kept\n", refreshed)
		}
		if lost > 0 {
			fmt.Fprintf(w, "%d expired entries were not deleted (more than the sweeper reports in one sweep): the next sweep deletes them\n", lost)
		}
		return nil
	})
}

// printPlan prints what applying would change and do.
func (o *applyOptions) printPlan(p *enforce.Plan) error {
	w := o.io.Out
	fmt.Fprintf(w, "Dry run: %d policies with timeouts, %d keys (+%d added, -%d removed against the set in force); nothing changed.\n\n",
		len(p.Policies), p.Keys, p.Added, p.Removed)
	t := newTable(w, "POLICY", "KEYS", "EXPIRE NOW", "SYN", "ESTABLISHED", "CLOSING", "NON-TCP")
	for _, pp := range p.Policies {
		e := pp.Expire
		_ = t.Append(clean(pp.Name), fmt.Sprint(pp.Keys), fmt.Sprint(pp.ExpireTotal()), fmt.Sprint(e[0]), fmt.Sprint(e[1]), fmt.Sprint(e[2]), fmt.Sprint(e[3]))
	}
	if err := t.Render(); err != nil {
		return err
	}
	if len(p.PortsFreed) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nSNAT ports a reclaim sweep would free now:")
	t = newTable(w, "EGRESS IP", "PORTS")
	for _, f := range p.PortsFreed {
		_ = t.Append(f.Egress.String(), fmt.Sprint(f.Ports))
	}
	return t.Render()
}
