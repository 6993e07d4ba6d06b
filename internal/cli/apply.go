package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
	"github.com/egwct/egwct/pkg/validate"
)

type applyOptions struct {
	io      *IO
	node    nodeFlags
	Files   []string
	Mode    string
	Engine  string
	DryRun  bool
	Output  string
	cluster clusterOptions
}

func newApplyCmd(ios *IO) *cobra.Command {
	o := &applyOptions{io: ios}
	cmd := &cobra.Command{
		Use:   "apply -f FILE...",
		Short: "Apply per-policy CT timeouts on this node",
		Long: `Read CiliumEgressGatewayPolicies and CiliumEndpoints from manifests, resolve
each policy with a timeout text to its (pod IP, destination CIDR) keys the
way Cilium computes its egress policy map, validate the texts (errors refuse
the apply), swap the new policy set into egwct's pinned state under
<bpffs>/egwct atomically, and run one sweep over Cilium's CT maps.

In reclaim mode (the default), a CT entry of a policy's flow that has been
idle at least as long as the policy allows is deleted together with its
SNAT egress and reverse entries, exactly as Cilium's GC would delete them,
so its port is free at once. In mark mode only its lifetime is set in the
past, and Cilium's next GC pass collects it.

--dry-run changes nothing: it prints the difference of keys against the set
in force and what a sweep would do now: entries that would expire and SNAT
ports that would be freed per egress IP.

--from-cluster reads the policies and endpoints from the cluster instead
of (or besides) files, read-only; without --cilium-version the version is
the cilium DaemonSet's image tag (see docs/kubernetes.md).

Exit codes: 0 applied; 1 validation errors (nothing changed); 2 usage;
3 environment: no privileges, Cilium's maps missing, a Cilium map whose
name, type or sizes do not match the profile, the cluster unreachable or
a missing permission (nothing changed).`,
		Example: `  # What the cluster has, applied on this node
  sudo egwct apply --from-cluster --dry-run
  sudo egwct apply --from-cluster

  # The same from a saved copy
  kubectl get ciliumegressgatewaypolicies,ciliumendpoints -A -o yaml > state.yaml
  sudo egwct apply -f state.yaml --cilium-version 1.18.3 --dry-run
  sudo egwct apply -f state.yaml --cilium-version 1.18.3

  # On a lab node
  sudo egwct apply --bpffs /tmp/egwct-lab --cilium-state-dir /tmp/egwct-lab.state \
      --cilium-version 1.18.3 -f /tmp/egwct-lab.state/manifests/`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return runApply(o) },
	}
	o.node.register(cmd)
	f := cmd.Flags()
	f.StringArrayVarP(&o.Files, "filename", "f", nil, "manifest file or folder with policies and endpoints (repeatable; - for standard input)")
	f.StringVar(&o.Mode, "mode", "reclaim", "what to do with expired entries: reclaim (delete CT and SNAT entries) or mark (leave them to Cilium's GC)")
	registerEngine(cmd, &o.Engine)
	f.BoolVar(&o.DryRun, "dry-run", false, "change nothing; print the key diff and the impact of a sweep now")
	f.StringVarP(&o.Output, "output", "o", "table", "output format: table or json")
	o.cluster.register(cmd, "the CiliumEgressGatewayPolicies and CiliumEndpoints")
	return cmd
}

// desired is a policy set resolved from manifests.
type desired struct {
	set      []sweep.Policy
	names    []string
	warnings []string
}

func runApply(o *applyOptions) error {
	if len(o.Files) == 0 && !o.cluster.From {
		return usageErrorf("no input: give -f with manifest files or folders, or --from-cluster")
	}
	mode, engine, err := o.sweepSettings()
	if err != nil {
		return err
	}
	if o.Output != "table" && o.Output != "json" {
		return usageErrorf("-o must be table or json")
	}
	var ci *cluster.Cilium
	if o.cluster.From && o.node.CiliumVersion == "" {
		var err error
		if ci, err = o.cluster.cilium(context.Background()); err != nil {
			return err
		}
		o.node.CiliumVersion = ci.Version
		fmt.Fprintf(o.io.ErrOut, "# Cilium %s, from the %s\n", ci.Version, ci.VersionFrom)
	}
	n, err := o.node.open()
	if err != nil {
		return err
	}
	if from, err := n.useConfigMap(ci); err != nil {
		return err
	} else if from != "" {
		fmt.Fprintf(o.io.ErrOut, "# node timeouts from %s (this node has no agent-runtime-config.json)\n", from)
	}
	d, err := o.resolve(n)
	if err != nil {
		return err
	}
	for _, w := range d.warnings {
		fmt.Fprintf(o.io.ErrOut, "warning: %s\n", w)
	}
	// Check Cilium's maps before anything is written.
	maps, err := n.openMaps(o.node.BPFFS, profiles.RoleCTTCP, profiles.RoleCTAny, profiles.RoleSNAT)
	if err != nil {
		return err
	}
	closeAll(maps)
	if o.DryRun {
		return o.preview(n, d)
	}
	if err := needRoot(); err != nil {
		return err
	}
	st, err := sweep.OpenState(o.node.BPFFS, true)
	if err != nil {
		return envError(err)
	}
	defer st.Close()
	s, err := sweep.New(sweep.Config{BPFFS: o.node.BPFFS, Profile: n.Resolution.Profile, Clock: n.Clock, Node: n.Timeouts, Mode: mode, Engine: engine}, st)
	if err != nil {
		return mapError(err)
	}
	defer s.Close()
	if err := st.Replace(d.set); err != nil {
		return envError(err)
	}
	res, err := s.Sweep()
	if err != nil {
		return envError(err)
	}
	fmt.Fprintf(o.io.ErrOut, "# applied %d policies in %s mode; %s; sweep of %d entries took %s\n",
		len(d.set), mode, n.describe(), res.Entries, res.Duration.Round(1e5))
	return o.summary(d, res)
}

// registerEngine adds --engine.
func registerEngine(cmd *cobra.Command, engine *string) {
	cmd.Flags().StringVar(engine, "engine", "iterator", "how the sweeper walks the CT maps: iterator (in chunks, gentle on a busy node) or foreach (one call per map: less CPU, but it holds a CPU for the whole map)")
	_ = cmd.RegisterFlagCompletionFunc("engine", cobra.FixedCompletions([]string{"iterator", "foreach"}, cobra.ShellCompDirectiveNoFileComp))
}

// sweepSettings reads --mode and --engine.
func (o *applyOptions) sweepSettings() (sweep.Mode, sweep.Engine, error) {
	mode, engine := sweep.Reclaim, sweep.Iterator
	switch o.Mode {
	case "reclaim":
	case "mark":
		mode = sweep.Mark
	default:
		return mode, engine, usageErrorf("--mode must be reclaim or mark")
	}
	switch o.Engine {
	case "iterator", "":
	case "foreach":
		engine = sweep.ForEach
	default:
		return mode, engine, usageErrorf("--engine must be iterator or foreach")
	}
	return mode, engine, nil
}

// mapError classifies errors of opening Cilium's maps: a map of another
// shape is an environment egwct cannot work in, like a missing one.
func mapError(err error) error {
	var mm *ctmap.MismatchError
	if errors.As(err, &mm) {
		return envError(fmt.Errorf("%w (is --cilium-version the node's version?)", err))
	}
	return envError(err)
}

// resolve reads the manifests, validates the policies and resolves them to
// keys.
func (o *applyOptions) resolve(n *node) (*desired, error) {
	inputs, err := collectInputs(o.Files)
	if err != nil {
		return nil, envError(err)
	}
	if o.cluster.From {
		objs, err := o.cluster.inputs(context.Background(), true)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, objs...)
	}
	v := validate.New(validate.Options{Resolution: n.Resolution, Node: n.Config})
	var pols []*policy.Policy
	var eps []*policy.Endpoint
	var findings []validate.Finding
	for _, in := range inputs {
		data, err := in.read(o.io.In, maxManifestSize)
		if err != nil {
			return nil, envError(fmt.Errorf("%s: %w", in.name, err))
		}
		err = policy.NewSource(in.name, data).EachObject(
			func(p *policy.Policy) { pols = append(pols, p) },
			func(e *policy.Endpoint) { eps = append(eps, e) }, nil)
		var se *policy.SyntaxError
		if errors.As(err, &se) {
			findings = append(findings, validate.SyntaxFinding(se))
		}
	}
	d := &desired{}
	var errs []string
	sort.SliceStable(pols, func(i, j int) bool { return pols[i].Name < pols[j].Name })
	for _, p := range pols {
		res := v.Policy(p)
		for _, f := range res.Findings {
			if f.Severity == validate.Error {
				findings = append(findings, f)
			}
		}
		if res.Timeouts == nil {
			continue
		}
		spec, err := p.ParseSpec()
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if spec.NodeSelectors {
			d.warnings = append(d.warnings, fmt.Sprintf("policy %s selects by node too; egwct applies it to every selected pod", clean(p.DisplayName())))
		}
		var sp sweep.Policy
		sp.Name = p.DisplayName()
		for st, dur := range res.Timeouts {
			sp.Timeouts[st] = uint32(max(n.Clock.Units(dur), 1))
		}
		sp.Keys = spec.Keys(eps, sweep.Families(n.Resolution.Profile)...)
		if len(sp.Keys) == 0 {
			d.warnings = append(d.warnings, fmt.Sprintf("policy %s selects no endpoint in the manifests", clean(p.DisplayName())))
		}
		d.set = append(d.set, sp)
		d.names = append(d.names, sp.Name)
	}
	if len(findings) > 0 || len(errs) > 0 {
		rep := &report{profile: n.Resolution.Profile.Name, version: n.Resolution.Version.String(), policies: len(pols), files: len(inputs)}
		rep.add(nil, findings...)
		_ = renderText(&IO{Out: o.io.ErrOut, Color: false}, rep)
		for _, e := range errs {
			fmt.Fprintln(o.io.ErrOut, "error:", clean(e))
		}
		return nil, &exitError{Code: ExitFindings, Err: errors.New("nothing applied: fix the errors above")}
	}
	return d, nil
}

// summary prints per policy: keys, entries seen, expired, deleted.
func (o *applyOptions) summary(d *desired, res *sweep.Result) error {
	rows := [][]string{}
	type jsonRow struct {
		Policy     string `json:"policy"`
		Keys       int    `json:"keys"`
		Entries    uint64 `json:"entries"`
		Expired    uint64 `json:"expired"`
		DeletedCT  uint64 `json:"deletedCT"`
		DeletedNAT uint64 `json:"deletedNAT"`
		Refreshed  uint64 `json:"refreshed"`
		Lost       uint64 `json:"lost"`
	}
	var js []jsonRow
	for i, p := range d.set {
		var r jsonRow
		r.Policy, r.Keys = p.Name, len(p.Keys)
		if cs := res.Counts[uint32(i+1)]; cs != nil {
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
		rows = append(rows, []string{clean(r.Policy), fmt.Sprint(r.Keys), fmt.Sprint(r.Entries), fmt.Sprint(r.Expired), fmt.Sprint(r.DeletedCT), fmt.Sprint(r.DeletedNAT)})
	}
	return printStructured(o.io, map[string]string{"table": "table", "json": "json"}[o.Output], js, func(w io.Writer) error {
		t := newTable(w, "POLICY", "KEYS", "ENTRIES", "EXPIRED", "CT DELETED", "NAT DELETED")
		for _, r := range rows {
			row := make([]any, len(r))
			for i, c := range r {
				row[i] = c
			}
			_ = t.Append(row...)
		}
		if err := t.Render(); err != nil {
			return err
		}
		var refreshed, lost uint64
		for _, r := range js {
			refreshed, lost = refreshed+r.Refreshed, lost+r.Lost
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

// preview prints what applying would change and do, changing nothing.
func (o *applyOptions) preview(n *node, d *desired) error {
	w := o.io.Out
	// Keys against the set in force.
	cur := map[policy.Key]bool{}
	if _, err := os.Stat(sweep.Dir(o.node.BPFFS)); err == nil {
		st, err := sweep.OpenState(o.node.BPFFS, false)
		if err != nil {
			return envError(err)
		}
		keys, err := st.CurrentKeys()
		st.Close()
		if err != nil {
			return envError(err)
		}
		for k := range keys {
			cur[k] = true
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return envError(err)
	}
	want := map[policy.Key]bool{}
	for _, p := range d.set {
		for _, k := range p.Keys {
			want[k] = true
		}
	}
	added, removed := 0, 0
	for k := range want {
		if !cur[k] {
			added++
		}
	}
	for k := range cur {
		if !want[k] {
			removed++
		}
	}
	fmt.Fprintf(w, "Dry run: %d policies with timeouts, %d keys (+%d added, -%d removed against the set in force); nothing changed.\n\n",
		len(d.set), len(want), added, removed)

	expired, ports, err := o.impact(n, d)
	if err != nil {
		return err
	}
	t := newTable(w, "POLICY", "KEYS", "EXPIRE NOW", "SYN", "ESTABLISHED", "CLOSING", "NON-TCP")
	for i, p := range d.set {
		e := expired[i+1]
		_ = t.Append(clean(p.Name), fmt.Sprint(len(p.Keys)), fmt.Sprint(e[0]+e[1]+e[2]+e[3]), fmt.Sprint(e[0]), fmt.Sprint(e[1]), fmt.Sprint(e[2]), fmt.Sprint(e[3]))
	}
	if err := t.Render(); err != nil {
		return err
	}
	if len(ports) > 0 {
		fmt.Fprintln(w, "\nSNAT ports a reclaim sweep would free now:")
		ips := make([]string, 0, len(ports))
		for ip := range ports {
			ips = append(ips, ip)
		}
		sort.Slice(ips, func(i, j int) bool { return netip.MustParseAddr(ips[i]).Less(netip.MustParseAddr(ips[j])) })
		t := newTable(w, "EGRESS IP", "PORTS")
		for _, ip := range ips {
			_ = t.Append(ip, fmt.Sprint(ports[ip]))
		}
		return t.Render()
	}
	return nil
}

// impact judges every CT entry of the families swept against the set as
// a sweep now would:
// expired entries per policy slot and state, and the SNAT ports their
// deletion would free per egress IP.
func (o *applyOptions) impact(n *node, d *desired) ([][4]int, map[string]int, error) {
	m := sweep.NewMatcher(d.set)
	times, err := n.times()
	if err != nil {
		return nil, nil, err
	}
	expired := make([][4]int, len(d.set)+1)
	ports := map[string]int{}
	nats, err := n.openMaps(o.node.BPFFS, profiles.RoleSNAT)
	if err != nil {
		return nil, nil, err
	}
	defer closeAll(nats)
	natMaps := map[int]*ctmap.Map{}
	for _, nm := range nats {
		natMaps[nm.Spec.Family] = nm
	}
	swept := map[int]bool{}
	for _, f := range sweep.Families(n.Resolution.Profile) {
		swept[f] = true
	}
	all, err := n.openMaps(o.node.BPFFS, profiles.RoleCTTCP, profiles.RoleCTAny)
	if err != nil {
		return nil, nil, err
	}
	defer closeAll(all)
	var c ctmap.CT
	val := make([]byte, ctmap.NATEntrySize6)
	for _, ctm := range all {
		if !swept[ctm.Spec.Family] {
			continue
		}
		natMap := natMaps[ctm.Spec.Family]
		err := ctm.Walk(func(k, v []byte) error {
			c.Key, _ = ctmap.DecodeTuple(k)
			copy(c.Value[:], v)
			slot, exp := m.Judge(&c, times)
			if !exp {
				return nil
			}
			expired[slot][c.State()]++
			if natMap != nil {
				eg, _ := ctmap.NATKeysForCT(c.Key)
				buf := val[:natMap.Spec.ValueSize]
				if natMap.Lookup(eg.Bytes(), buf) == nil {
					e, _ := ctmap.DecodeNATEntry(buf)
					ports[e.Addr().String()]++
				}
			}
			return nil
		})
		if err != nil {
			return nil, nil, envError(err)
		}
	}
	return expired, ports, nil
}

func newResetCmd(ios *IO) *cobra.Command {
	var bpffsDir string
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Remove everything egwct pinned; Cilium's maps stay as they are",
		Long: `Remove egwct's pinned state under <bpffs>/egwct: the policy set, statistics
and totals. Flows then live by the node's timeouts again. Cilium's maps are
not touched: entries egwct already deleted stay deleted.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := needRoot(); err != nil {
				return err
			}
			if err := sweep.Reset(bpffsDir); err != nil {
				return envError(err)
			}
			fmt.Fprintf(ios.Out, "removed %s\n", filepath.Join(bpffsDir, "egwct"))
			return nil
		},
	}
	cmd.Flags().StringVar(&bpffsDir, "bpffs", ctmap.DefaultBPFFS, "where bpffs is mounted")
	return cmd
}
