package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"github.com/spf13/cobra"

	"github.com/egwct/egwct/internal/lab"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

func newLabCmd(ios *IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A simulated Cilium egress-gateway node to try egwct without a cluster",
		Long: `A lab is a simulated Cilium gateway node: Cilium's CT, SNAT and egress-policy
maps with the exact layout of a Cilium version, in a bpffs of your choosing,
filled with realistic egress-gateway traffic, plus the agent's
agent-runtime-config.json and the CiliumEgressGatewayPolicy and
CiliumEndpoint manifests that would have produced it. From Cilium 1.18
(IPv6 egress gateway) the node is dual-stack: pods have IPv6 addresses too,
policies IPv6 CIDRs, and about a fifth of the flows are IPv6 (docs/lab.md).

The lab only touches the bpffs you name with --bpffs (it mounts a private
one there if none is mounted) and its state directory. Needs root.`,
	}
	cmd.AddCommand(newLabUpCmd(ios), newLabDriveCmd(ios), newLabDownCmd(ios))
	return cmd
}

type labFlags struct {
	BPFFS    string
	StateDir string
}

func (f *labFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.BPFFS, "bpffs", "", "where the lab's bpffs is (required; never the host's /sys/fs/bpf unless you mean it)")
	cmd.Flags().StringVar(&f.StateDir, "state-dir", "", "the lab's agent state and manifests (default <bpffs>.state)")
	_ = cmd.MarkFlagRequired("bpffs")
}

func (f *labFlags) stateDir() string {
	if f.StateDir != "" {
		return f.StateDir
	}
	return filepath.Clean(f.BPFFS) + ".state"
}

type labUpOptions struct {
	io    *IO
	flags labFlags
	lab.Config
	version string
	clock   string
	hz      int
}

func newLabUpCmd(ios *IO) *cobra.Command {
	o := &labUpOptions{io: ios}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create a simulated gateway node",
		Example: `  sudo egwct lab up --bpffs /tmp/egwct-lab --cilium-version 1.18.3 --flows 20000
  sudo egwct ct list --bpffs /tmp/egwct-lab --cilium-state-dir /tmp/egwct-lab.state --cilium-version 1.18.3
  sudo egwct lab down --bpffs /tmp/egwct-lab`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return runLabUp(o) },
	}
	o.flags.register(cmd)
	f := cmd.Flags()
	f.StringVar(&o.version, "cilium-version", "", "Cilium version whose maps to simulate (required)")
	f.IntVar(&o.Flows, "flows", 10000, "connections to create")
	f.IntVar(&o.Policies, "policies", 8, "egress gateway policies")
	f.Uint64Var(&o.Seed, "seed", 1, "random seed: the same seed gives the same lab")
	f.StringVar(&o.clock, "clock", "ktime", "datapath clock to simulate: ktime or jiffies")
	f.IntVar(&o.hz, "hz", 0, "HZ for --clock jiffies (default: the kernel's, measured)")
	f.Uint32Var(&o.CTMax, "ct-max", 0, "max entries of the CT maps (default: Cilium's, grown to fit --flows)")
	f.Uint32Var(&o.NATMax, "nat-max", 0, "max entries of the SNAT maps (default: Cilium's, grown to fit --flows)")
	_ = cmd.RegisterFlagCompletionFunc("cilium-version", completeProfiles)
	return cmd
}

func runLabUp(o *labUpOptions) error {
	if o.version == "" {
		return usageErrorf("--cilium-version is required")
	}
	res, err := profiles.Resolve(o.version)
	if err != nil {
		return usageErrorf("--cilium-version: %v", err)
	}
	o.Version = res
	switch o.clock {
	case "ktime":
		o.Clock = nodeconfig.Clock{Mode: nodeconfig.Ktime}
	case "jiffies":
		o.Clock = nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: o.hz}
		if o.hz <= 0 {
			if o.Clock.HZ, err = ctmap.KernelHZ(); err != nil {
				return envError(err)
			}
		}
	default:
		return usageErrorf("--clock must be ktime or jiffies")
	}
	if o.Flows < 0 || o.Policies < 1 || o.Flows > 1<<24 {
		return usageErrorf("--flows must be 0..16777216 and --policies at least 1")
	}
	if err := needRoot(); err != nil {
		return err
	}
	o.BPFFS, o.StateDir = o.flags.BPFFS, o.flags.stateDir()
	start := time.Now()
	sum, err := lab.Up(o.Config)
	if err != nil {
		return envError(err)
	}
	st := sum.State
	w := o.io.Out
	mounted := ""
	if st.Mounted {
		mounted = " (a private bpffs mounted there)"
	}
	fmt.Fprintf(w, "Lab up in %s: Cilium %s (profile %s), clock %s\n", time.Since(start).Round(time.Millisecond), st.Version, st.Profile, o.Clock)
	fmt.Fprintf(w, "  maps        %s/%s%s\n", st.BPFFS, ctmap.GlobalsDir, mounted)
	fmt.Fprintf(w, "  CT          %d entries (%d expired, waiting for Cilium's GC; %d of pods matching no policy)\n", sum.CT, sum.Expired, sum.Unpolicy)
	if st.IPv6 {
		fmt.Fprintf(w, "  IPv6        dual-stack pods; %d of the CT entries are IPv6\n", sum.CT6)
	}
	fmt.Fprintf(w, "  SNAT        %d entries\n", sum.NAT)
	fmt.Fprintf(w, "  egress      %d policy entries for %d policies\n", sum.Egress, st.Policies)
	fmt.Fprintf(w, "  state       %s (agent-runtime-config.json, %s, %s)\n", o.StateDir, lab.PoliciesFile, lab.EndpointsFile)
	common := fmt.Sprintf("--bpffs %s --cilium-state-dir %s --cilium-version %s", st.BPFFS, o.StateDir, st.Version)
	fmt.Fprintf(w, "\nNext:\n  egwct ct list %s --idle-over 5m\n  egwct nat list %s\n  egwct egress list %s\n  egwct validate --cilium-version %s %s\n  egwct lab drive --bpffs %s\n  egwct lab down --bpffs %s\n",
		common, common, common, st.Version, filepath.Join(o.StateDir, lab.PoliciesFile), st.BPFFS, st.BPFFS)
	return nil
}

func newLabDriveCmd(ios *IO) *cobra.Command {
	var f labFlags
	var rate int
	var duration, interval time.Duration
	cmd := &cobra.Command{
		Use:   "drive",
		Short: "Keep a lab node's traffic going until interrupted",
		Long: `Play the datapath of a lab node: every interval, packets of random active
flows refresh their lifetime (now + the timeout of their state), new flows
arrive with new SNAT mappings (a tenth of --rate per second) and some flows
close (a twentieth). Stops on Ctrl-C or after --duration.`,
		Example: `  sudo egwct lab drive --bpffs /tmp/egwct-lab --rate 5000 --duration 1m`,
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if rate < 0 || interval <= 0 {
				return usageErrorf("--rate must not be negative and --interval must be positive")
			}
			if err := needRoot(); err != nil {
				return err
			}
			d, err := lab.NewDriver(f.stateDir())
			if err != nil {
				return envError(err)
			}
			defer d.Close()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			fmt.Fprintf(ios.ErrOut, "driving %d flows at %d packets/s; Ctrl-C to stop\n", d.Flows(), rate)
			per := func(n int) int { return int(float64(n) * interval.Seconds()) }
			tick := time.NewTicker(interval)
			defer tick.Stop()
			var total lab.Stats
			for {
				s, err := d.Step(per(rate), per(rate/10), per(rate/20))
				if err != nil {
					return envError(err)
				}
				total.Refreshed += s.Refreshed
				total.Opened += s.Opened
				total.Closed += s.Closed
				total.Gone += s.Gone
				select {
				case <-ctx.Done():
					fmt.Fprintf(ios.Out, "refreshed %d, opened %d, closed %d, %d gone (evicted or collected); %d flows known\n",
						total.Refreshed, total.Opened, total.Closed, total.Gone, d.Flows())
					return nil
				case <-tick.C:
				}
			}
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&rate, "rate", 1000, "packets per second refreshing random flows")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: until interrupted)")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often to act")
	return cmd
}

func newLabDownCmd(ios *IO) *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove a lab: its pins, its bpffs mount and its state files",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := needRoot(); err != nil {
				return err
			}
			if err := lab.Down(f.stateDir(), nil); err != nil {
				return envError(err)
			}
			fmt.Fprintf(ios.Out, "lab at %s removed\n", f.BPFFS)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

// needRoot checks the privileges BPF maps and mounts need.
func needRoot() error {
	if os.Geteuid() != 0 {
		return envError(errors.New("this needs root (CAP_BPF and CAP_SYS_ADMIN for bpffs mounts)"))
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return envError(err)
	}
	return nil
}
