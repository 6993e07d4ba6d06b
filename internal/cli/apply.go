package cli

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/enforce"
	"github.com/egwct/egwct/internal/manifest"
	"github.com/egwct/egwct/internal/printer"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/sweep"
)

type applyOptions struct {
	io      *IO
	node    nodeFlags
	Files   []string
	Mode    string
	Engine  string
	DryRun  bool
	print   printer.Flags
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
	o.print = *printer.NewFlags(printer.ApplySpec)
	o.print.Register(cmd)
	o.cluster.register(cmd, "the CiliumEgressGatewayPolicies and CiliumEndpoints")
	return cmd
}

func runApply(o *applyOptions) error {
	if len(o.Files) == 0 && !o.cluster.From {
		return usageErrorf("no input: give -f with manifest files or folders, or --from-cluster")
	}
	mode, engine, err := o.sweepSettings()
	if err != nil {
		return err
	}
	p, err := newPrinter(&o.print)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var ci *cluster.Cilium
	if o.cluster.From && o.node.CiliumVersion == "" {
		if ci, err = o.cluster.cilium(ctx); err != nil {
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
	objs, err := o.objects(ctx)
	if err != nil {
		return err
	}
	res := enforce.NewResolver(n.Env).Resolve(objs)
	for _, w := range res.Warnings {
		fmt.Fprintf(o.io.ErrOut, "warning: policy %s: %s\n", clean(w.Policy), w.Message)
	}
	if err := res.Err(); err != nil {
		rep := &report{profile: n.Resolution.Profile.Name, version: n.Resolution.Version.String(), policies: len(objs.Policies)}
		rep.add(nil, res.Findings...)
		_ = renderText(&IO{Out: o.io.ErrOut, Color: false}, rep)
		return err
	}
	// Cilium's maps are checked before anything is read or written.
	if err := enforce.CheckMaps(n.Env); err != nil {
		return err
	}
	if o.DryRun {
		plan, err := enforce.MakePlan(n.Env, res.Set)
		if err != nil {
			return err
		}
		return printErr(p.Print(o.io.Out, planDoc(plan).View()))
	}
	if err := needRoot(); err != nil {
		return err
	}
	ar, err := enforce.Apply(n.Env, res.Set, mode, engine)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.io.ErrOut, "# applied %d policies in %s mode; %s; sweep of %d entries took %s with the %s engine (%s)\n",
		len(res.Set), mode, n.describe(), ar.Sweep.Entries, ar.Sweep.Duration.Round(1e5), ar.Engine.Engine, ar.Engine.Reason())
	return printErr(p.Print(o.io.Out, resultDoc(res, ar).View()))
}

// objects reads the manifests and, with --from-cluster, the cluster's
// policies and endpoints.
func (o *applyOptions) objects(ctx context.Context) (enforce.Objects, error) {
	inputs, err := manifest.Collect(o.Files)
	if err != nil {
		return enforce.Objects{}, err
	}
	objs, err := enforce.Parse(inputs, o.io.In)
	if err != nil {
		return enforce.Objects{}, err
	}
	if o.cluster.From {
		more, err := o.cluster.objects(ctx)
		if err != nil {
			return enforce.Objects{}, err
		}
		objs.Add(more)
	}
	return objs, nil
}

// registerEngine adds --engine.
func registerEngine(cmd *cobra.Command, engine *string) {
	cmd.Flags().StringVar(engine, "engine", "auto", "how the sweeper walks the CT maps: auto (the first of foreach, iterator, userspace that this node loads), foreach (bpf_for_each_map_elem: the least CPU, holds a CPU for a whole map), iterator (BPF map-element iterator, in chunks) or userspace (batch reads, no BPF program)")
	_ = cmd.RegisterFlagCompletionFunc("engine", cobra.FixedCompletions(sweep.Engines(), cobra.ShellCompDirectiveNoFileComp))
}

// sweepSettings reads --mode and --engine.
func (o *applyOptions) sweepSettings() (sweep.Mode, sweep.Engine, error) {
	mode := sweep.Reclaim
	switch o.Mode {
	case "reclaim":
	case "mark":
		mode = sweep.Mark
	default:
		return mode, sweep.Auto, usageErrorf("--mode must be reclaim or mark")
	}
	engine, err := sweep.ParseEngine(o.Engine)
	if err != nil {
		return mode, engine, usageErrorf("--engine: %v", err)
	}
	return mode, engine, nil
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
