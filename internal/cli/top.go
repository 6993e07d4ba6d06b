package cli

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"

	"github.com/egwct/egwct/internal/printer"
	"github.com/egwct/egwct/internal/tui"
	"github.com/egwct/egwct/internal/tui/mapsource"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
)

// topOptions are egwct top's flags.
type topOptions struct {
	io      *IO
	node    nodeFlags
	Refresh time.Duration
	Once    bool
	print   printer.Flags
	Flows   string
	// flowsSet says --flows was given (its value may be "" for no policy).
	flowsSet bool
	// source replaces the maps in tests.
	source tui.Source
}

func newTopCmd(ios *IO) *cobra.Command {
	o := &topOptions{io: ios}
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Live view of CT entries per egress policy, and SNAT port pressure",
		Long: `A terminal UI of the node's live CT entries grouped by egress policy:
how many flows in each state, how idle, how many expire within the next
refresh, how many are idle past their policy's timeout (egwct's next sweep
expires them), how many have expired and wait for Cilium's GC, how many
egwct has reclaimed, and how close each (egress IP, destination) is to
running out of SNAT ports.

Views: 1 policies, 2 flows of one policy (Enter on a policy), 3 SNAT ports.
Keys: j/k or arrows, Enter, Esc, / filter, s sort (S reverse), Tab,
p pause, r refresh, ? help, q quit. See docs/top.md.

Without a terminal, with --once or with -o, top prints one snapshot of
the policies view (or, with --flows, of one policy's flows) and exits.
Exit codes: 0 ok, 2 usage, 3 maps missing or unreadable.`,
		Example: `  # Live, on a gateway node
  sudo egwct top --cilium-version 1.18.3

  # One snapshot for a bug report
  sudo egwct top --cilium-version 1.18.3 -o yaml > top.yaml

  # The flows of one policy, as a table
  sudo egwct top --cilium-version 1.18.3 --once --flows payments-egress`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.flowsSet = cmd.Flags().Changed("flows")
			return runTop(o)
		},
	}
	o.node.register(cmd)
	f := cmd.Flags()
	f.DurationVar(&o.Refresh, "refresh", time.Second, "interval between refreshes")
	f.BoolVar(&o.Once, "once", false, "print one snapshot and exit")
	o.print = *printer.NewFlags(topSpec)
	o.print.Register(cmd)
	f.StringVar(&o.Flows, "flows", "", `with one snapshot: list the flows of this policy (its name; "" for flows of no policy)`)
	return cmd
}

// topSpec are top's -o formats: any of them prints one snapshot.
var topSpec = printer.Spec{
	Formats: []string{printer.Table, printer.JSON, printer.YAML, printer.Name, printer.JSONPath, printer.GoTemplate},
	Help:    "print one snapshot and exit: table, json, yaml, name (the policies), jsonpath=TEMPLATE or go-template=TEMPLATE (docs/schemas/top-snapshot.json)",
}

func runTop(o *topOptions) error {
	pr, err := newPrinter(&o.print)
	if err != nil {
		return err
	}
	if o.Refresh < 100*time.Millisecond {
		return usageErrorf("--refresh must be at least 100ms")
	}
	src := o.source
	if src == nil {
		n, err := o.node.open()
		if err != nil {
			return err
		}
		ms := &mapsource.Source{
			BPFFS: o.node.BPFFS, Profile: n.Resolution.Profile,
			Describe: fmt.Sprintf("profile %s (--cilium-version %s)", n.Resolution.Profile.Name, o.node.CiliumVersion),
			Clock:    n.Clock, Timeouts: n.Timeouts,
		}
		// The ports above the node-port range of agent-runtime-config.json;
		// where it has none (Cilium 1.18 and later), the agent's.
		ms.PortCapacity, _ = n.Config.PortCapacity(0)
		if n.Resolution.Unverified {
			ms.Warnings = append(ms.Warnings, n.Resolution.Reason()+": this release was not checked, its maps may differ")
		}
		if c := n.Config; c != nil {
			switch {
			case c.GCInterval != nil && *c.GCInterval > 0:
				ms.GCInterval = *c.GCInterval
			case c.GCMaxInterval != nil && *c.GCMaxInterval > 0:
				ms.GCInterval = *c.GCMaxInterval
			}
		}
		src = ms
	}
	if o.Once || o.print.Output != "" || !o.io.Terminal {
		return topOnce(o, pr, src)
	}
	if o.flowsSet {
		return usageErrorf("--flows needs --once or -o")
	}
	m := tui.New(tui.Options{Source: src, Refresh: o.Refresh})
	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithInput(o.io.In), tea.WithOutput(o.io.Out))
	if _, err := p.Run(); err != nil {
		return envError(fmt.Errorf("top: %w", err))
	}
	return nil
}

// topOnce prints one snapshot.
func topOnce(o *topOptions, pr *printer.Printer, src tui.Source) error {
	q := tui.Query{FlowsOf: o.Flows, Flows: o.flowsSet, Window: o.Refresh}
	if q.FlowsOf == tui.NoPolicy {
		q.FlowsOf = ""
	}
	snap, err := src.Snapshot(q)
	if err != nil {
		return envError(err)
	}
	if o.flowsSet && !slices.ContainsFunc(snap.Policies, func(p tui.Policy) bool {
		return p.Name == o.Flows || (q.FlowsOf == "" && p.Name == tui.NoPolicy)
	}) {
		return usageErrorf("--flows: no policy %q in force", o.Flows)
	}
	rep := newTopReport(snap, o.flowsSet)
	err = pr.Print(o.io.Out, printer.View{
		Doc: rep,
		Names: func() []string {
			var n []string
			for _, p := range rep.Policies {
				n = append(n, p.Name)
			}
			return n
		},
		Table: func(w io.Writer, to printer.TableOptions) error {
			fmt.Fprintf(o.io.ErrOut, "# %s, clock %s; %s\n", clean(snap.Node.Profile), snap.Node.Clock, clean(snap.Node.Sweeper))
			if o.flowsSet {
				return topFlowsTable(w, rep, to.NoHeaders)
			}
			return topPoliciesTable(w, rep, to.NoHeaders)
		},
	})
	if err != nil {
		return printErr(err)
	}
	if snap.Banner != "" {
		return envError(fmt.Errorf("%s", clean(snap.Banner)))
	}
	return nil
}

// topReport is the machine-readable snapshot (docs/schemas/top-snapshot.json):
// durations in seconds, states by name.
type topReport struct {
	printer.Header
	Taken    time.Time     `json:"taken"`
	Profile  string        `json:"profile"`
	Clock    string        `json:"clock"`
	Sweeper  string        `json:"sweeper"`
	Banner   string        `json:"banner,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
	Maps     []tui.MapFill `json:"maps"`
	Node     timeoutsRep   `json:"nodeTimeoutsSeconds"`
	// PortCapacity is the SNAT ports an egress IP has per destination
	// on the node, against which worstPorts is measured.
	PortCapacity int         `json:"portCapacity"`
	Policies     []policyRep `json:"policies"`
	FlowsOf      *string     `json:"flowsOf,omitempty"`
	Flows        []flowRep   `json:"flows,omitempty"`
}

type timeoutsRep struct {
	Syn         float64 `json:"syn"`
	Established float64 `json:"established"`
	Closing     float64 `json:"closing"`
	NonTCP      float64 `json:"nonTCP"`
}

type policyRep struct {
	Name       string      `json:"name"`
	Flows      int         `json:"flows"`
	Syn        int         `json:"syn"`
	Est        int         `json:"established"`
	Closing    int         `json:"closing"`
	NonTCP     int         `json:"nonTCP"`
	IdleP50    float64     `json:"idleP50Seconds"`
	IdleP99    float64     `json:"idleP99Seconds"`
	Expiring   int         `json:"expiring"`
	Over       int         `json:"overPolicy"`
	Expired    int         `json:"expiredUncollected"`
	Reclaimed  uint64      `json:"reclaimed"`
	Timeouts   timeoutsRep `json:"timeoutsSeconds"`
	WorstPorts int         `json:"worstPorts"`
	WorstDest  string      `json:"worstDest,omitempty"`
}

type flowRep struct {
	Src             string   `json:"src"`
	Dst             string   `json:"dst"`
	Proto           string   `json:"proto"`
	State           string   `json:"state"`
	Idle            float64  `json:"idleSeconds"`
	Remaining       float64  `json:"remainingSeconds"`
	PolicyRemaining *float64 `json:"policyRemainingSeconds,omitempty"`
	Egress          string   `json:"egress,omitempty"`
}

func timeoutsOf(t [4]time.Duration) timeoutsRep {
	return timeoutsRep{
		Syn: seconds(t[profiles.StateSyn]), Established: seconds(t[profiles.StateEstablished]),
		Closing: seconds(t[profiles.StateClosing]), NonTCP: seconds(t[profiles.StateNonTCP]),
	}
}

func newTopReport(s *tui.Snapshot, flows bool) *topReport {
	r := &topReport{
		Header: printer.NewHeader("TopSnapshot"), Taken: s.Taken, Profile: clean(s.Node.Profile), Clock: s.Node.Clock, Sweeper: clean(s.Node.Sweeper),
		Banner: clean(s.Banner), Maps: s.Node.Maps, Node: timeoutsOf(s.Node.Timeouts), PortCapacity: s.Node.Ports(), Policies: []policyRep{},
	}
	for _, w := range s.Node.Warnings {
		r.Warnings = append(r.Warnings, clean(w))
	}
	for _, p := range s.Policies {
		r.Policies = append(r.Policies, policyRep{
			Name: clean(p.Name), Flows: p.Total,
			Syn: p.Flows[profiles.StateSyn], Est: p.Flows[profiles.StateEstablished],
			Closing: p.Flows[profiles.StateClosing], NonTCP: p.Flows[profiles.StateNonTCP],
			IdleP50: seconds(p.IdleP50), IdleP99: seconds(p.IdleP99),
			Expiring: p.Expiring, Over: p.Over, Expired: p.Expired, Reclaimed: p.Reclaimed,
			Timeouts: timeoutsOf(p.Timeouts), WorstPorts: p.WorstPorts, WorstDest: p.WorstDest,
		})
	}
	if flows {
		of := clean(s.FlowsOf)
		r.FlowsOf = &of
		r.Flows = []flowRep{}
		for _, f := range s.Flows {
			fr := flowRep{
				Src: f.Src.String(), Dst: f.Dst.String(), Proto: ctmap.ProtoName(f.Proto), State: f.State.String(),
				Idle: seconds(f.Idle), Remaining: seconds(f.Remaining),
			}
			if f.HasPolicy {
				v := seconds(f.PolicyRemaining)
				fr.PolicyRemaining = &v
			}
			if f.Egress.IsValid() {
				fr.Egress = f.Egress.String()
			}
			r.Flows = append(r.Flows, fr)
		}
		// The longest idle first, as the flows view sorts them.
		slices.SortStableFunc(r.Flows, func(a, b flowRep) int { return cmp.Compare(b.Idle, a.Idle) })
	}
	return r
}

func topPoliciesTable(w io.Writer, r *topReport, noHeaders bool) error {
	t := printer.NewTable(w, noHeaders, "POLICY", "FLOWS", "SYN", "EST", "CLOSING", "NON-TCP", "IDLE P50", "IDLE P99",
		"EXPIRING", "OVER POLICY", "EXPIRED", "RECLAIMED", "TCP TIMEOUT", "NON-TCP TIMEOUT", "WORST PORTS")
	secs := func(pol, node float64) string {
		n := shortDur(time.Duration(node * float64(time.Second)))
		if pol == 0 {
			return "node " + n
		}
		return shortDur(time.Duration(pol*float64(time.Second))) + " (node " + n + ")"
	}
	for _, p := range r.Policies {
		worst := "-"
		if p.WorstPorts > 0 {
			worst = fmt.Sprintf("%d/%d %s", p.WorstPorts, r.PortCapacity, p.WorstDest)
		}
		_ = t.Append(p.Name, p.Flows, p.Syn, p.Est, p.Closing, p.NonTCP,
			shortDur(time.Duration(p.IdleP50*float64(time.Second))), shortDur(time.Duration(p.IdleP99*float64(time.Second))),
			p.Expiring, p.Over, p.Expired, p.Reclaimed,
			secs(p.Timeouts.Established, r.Node.Established), secs(p.Timeouts.NonTCP, r.Node.NonTCP), worst)
	}
	return t.Render()
}

func topFlowsTable(w io.Writer, r *topReport, noHeaders bool) error {
	t := printer.NewTable(w, noHeaders, "SOURCE", "DESTINATION", "PROTO", "STATE", "IDLE", "REMAINING", "POLICY REMAINING", "EGRESS")
	for _, f := range r.Flows {
		pol, egress := "-", "-"
		if f.PolicyRemaining != nil {
			pol = fmtRemaining(time.Duration(*f.PolicyRemaining * float64(time.Second)))
		}
		if f.Egress != "" {
			egress = f.Egress
		}
		_ = t.Append(f.Src, f.Dst, f.Proto, f.State, shortDur(time.Duration(f.Idle*float64(time.Second))),
			fmtRemaining(time.Duration(f.Remaining*float64(time.Second))), pol, egress)
	}
	return t.Render()
}
