package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/egwct/egwct/internal/tui"
	"github.com/egwct/egwct/internal/tui/mapsource"
	"github.com/egwct/egwct/pkg/profiles"
)

// topOptions are egwct top's flags.
type topOptions struct {
	io      *IO
	node    nodeFlags
	Refresh time.Duration
	Once    bool
	Output  string
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
	f.StringVarP(&o.Output, "output", "o", "", "print one snapshot as table, json or yaml and exit")
	f.StringVar(&o.Flows, "flows", "", `with one snapshot: list the flows of this policy (its name; "" for flows of no policy)`)
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runTop(o *topOptions) error {
	switch o.Output {
	case "", "table", "json", "yaml":
	default:
		return usageErrorf("unknown output format %q: use table, json or yaml", o.Output)
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
	if o.Once || o.Output != "" || !o.io.Terminal {
		return topOnce(o, src)
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
func topOnce(o *topOptions, src tui.Source) error {
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
	switch o.Output {
	case "json":
		enc := json.NewEncoder(o.io.Out)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	case "yaml":
		enc := yaml.NewEncoder(o.io.Out)
		enc.SetIndent(2)
		err = enc.Encode(rep)
		if err == nil {
			err = enc.Close()
		}
	default:
		fmt.Fprintf(o.io.ErrOut, "# %s, clock %s; %s\n", clean(snap.Node.Profile), snap.Node.Clock, clean(snap.Node.Sweeper))
		if o.flowsSet {
			err = topFlowsTable(o.io.Out, rep)
		} else {
			err = topPoliciesTable(o.io.Out, rep)
		}
	}
	if err != nil {
		return err
	}
	if snap.Banner != "" {
		return envError(fmt.Errorf("%s", clean(snap.Banner)))
	}
	return nil
}

// topReport is the machine-readable snapshot (docs/top.md): durations in
// seconds, states by name.
type topReport struct {
	Taken    time.Time     `json:"taken" yaml:"taken"`
	Profile  string        `json:"profile" yaml:"profile"`
	Clock    string        `json:"clock" yaml:"clock"`
	Sweeper  string        `json:"sweeper" yaml:"sweeper"`
	Banner   string        `json:"banner,omitempty" yaml:"banner,omitempty"`
	Warnings []string      `json:"warnings,omitempty" yaml:"warnings,omitempty"`
	Maps     []tui.MapFill `json:"maps" yaml:"maps"`
	Node     timeoutsRep   `json:"node_timeouts_s" yaml:"node_timeouts_s"`
	Policies []policyRep   `json:"policies" yaml:"policies"`
	FlowsOf  *string       `json:"flows_of,omitempty" yaml:"flows_of,omitempty"`
	Flows    []flowRep     `json:"flows,omitempty" yaml:"flows,omitempty"`
}

type timeoutsRep struct {
	Syn         float64 `json:"syn" yaml:"syn"`
	Established float64 `json:"established" yaml:"established"`
	Closing     float64 `json:"closing" yaml:"closing"`
	NonTCP      float64 `json:"non_tcp" yaml:"non_tcp"`
}

type policyRep struct {
	Name       string      `json:"name" yaml:"name"`
	Flows      int         `json:"flows" yaml:"flows"`
	Syn        int         `json:"syn" yaml:"syn"`
	Est        int         `json:"established" yaml:"established"`
	Closing    int         `json:"closing" yaml:"closing"`
	NonTCP     int         `json:"non_tcp" yaml:"non_tcp"`
	IdleP50    float64     `json:"idle_p50_s" yaml:"idle_p50_s"`
	IdleP99    float64     `json:"idle_p99_s" yaml:"idle_p99_s"`
	Expiring   int         `json:"expiring" yaml:"expiring"`
	Over       int         `json:"over_policy" yaml:"over_policy"`
	Expired    int         `json:"expired_uncollected" yaml:"expired_uncollected"`
	Reclaimed  uint64      `json:"reclaimed" yaml:"reclaimed"`
	Timeouts   timeoutsRep `json:"timeouts_s" yaml:"timeouts_s"`
	WorstPorts int         `json:"worst_ports" yaml:"worst_ports"`
	WorstDest  string      `json:"worst_dest,omitempty" yaml:"worst_dest,omitempty"`
}

type flowRep struct {
	Src             string   `json:"src" yaml:"src"`
	Dst             string   `json:"dst" yaml:"dst"`
	Proto           string   `json:"proto" yaml:"proto"`
	State           string   `json:"state" yaml:"state"`
	Idle            float64  `json:"idle_s" yaml:"idle_s"`
	Remaining       float64  `json:"remaining_s" yaml:"remaining_s"`
	PolicyRemaining *float64 `json:"policy_remaining_s,omitempty" yaml:"policy_remaining_s,omitempty"`
	Egress          string   `json:"egress,omitempty" yaml:"egress,omitempty"`
}

func timeoutsOf(t [4]time.Duration) timeoutsRep {
	return timeoutsRep{
		Syn: seconds(t[profiles.StateSyn]), Established: seconds(t[profiles.StateEstablished]),
		Closing: seconds(t[profiles.StateClosing]), NonTCP: seconds(t[profiles.StateNonTCP]),
	}
}

func newTopReport(s *tui.Snapshot, flows bool) *topReport {
	r := &topReport{
		Taken: s.Taken, Profile: clean(s.Node.Profile), Clock: s.Node.Clock, Sweeper: clean(s.Node.Sweeper),
		Banner: clean(s.Banner), Maps: s.Node.Maps, Node: timeoutsOf(s.Node.Timeouts), Policies: []policyRep{},
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
				Src: f.Src.String(), Dst: f.Dst.String(), Proto: protoName(f.Proto), State: f.State.String(),
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

func protoName(p uint8) string {
	switch p {
	case 1:
		return "ICMP"
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 58:
		return "ICMPv6"
	case 132:
		return "SCTP"
	}
	return "proto-" + strconv.Itoa(int(p))
}

func topPoliciesTable(w io.Writer, r *topReport) error {
	t := newTable(w, "POLICY", "FLOWS", "SYN", "EST", "CLOSING", "NON-TCP", "IDLE P50", "IDLE P99",
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
			worst = fmt.Sprintf("%d/%d %s", p.WorstPorts, tui.PortCapacity, p.WorstDest)
		}
		_ = t.Append(p.Name, p.Flows, p.Syn, p.Est, p.Closing, p.NonTCP,
			shortDur(time.Duration(p.IdleP50*float64(time.Second))), shortDur(time.Duration(p.IdleP99*float64(time.Second))),
			p.Expiring, p.Over, p.Expired, p.Reclaimed,
			secs(p.Timeouts.Established, r.Node.Established), secs(p.Timeouts.NonTCP, r.Node.NonTCP), worst)
	}
	return t.Render()
}

func topFlowsTable(w io.Writer, r *topReport) error {
	t := newTable(w, "SOURCE", "DESTINATION", "PROTO", "STATE", "IDLE", "REMAINING", "POLICY REMAINING", "EGRESS")
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
