package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// DefaultStateDir is the agent's state directory on a node.
const DefaultStateDir = "/var/run/cilium/state"

// nodeFlags are the flags of every command that reads a node's maps.
type nodeFlags struct {
	BPFFS         string
	CiliumVersion string
	StateDir      string
	Clock         string
	HZ            int
}

func (f *nodeFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.BPFFS, "bpffs", ctmap.DefaultBPFFS, "where bpffs is mounted; maps are read from <bpffs>/tc/globals")
	fl.StringVar(&f.CiliumVersion, "cilium-version", "", "Cilium version of the node, e.g. 1.18.3 (required)")
	fl.StringVar(&f.StateDir, "cilium-state-dir", DefaultStateDir, "the agent's state directory, holding agent-runtime-config.json")
	fl.StringVar(&f.Clock, "clock", "", "datapath clock: ktime or jiffies (default: from agent-runtime-config.json, else ktime)")
	fl.IntVar(&f.HZ, "hz", 0, "kernel HZ for --clock jiffies (default: from agent-runtime-config.json, else measured)")
	_ = cmd.RegisterFlagCompletionFunc("cilium-version", completeProfiles)
	_ = cmd.RegisterFlagCompletionFunc("clock", cobra.FixedCompletions([]string{"ktime", "jiffies"}, cobra.ShellCompDirectiveNoFileComp))
}

// node is what a command knows about the node whose maps it reads.
type node struct {
	Resolution profiles.Resolution
	Config     *nodeconfig.Config // nil when there is no agent-runtime-config.json
	Clock      nodeconfig.Clock
	// ClockFrom says where the clock came from, for people.
	ClockFrom string
	Timeouts  map[profiles.State]time.Duration
}

// open resolves the profile, the node's configuration and its clock.
func (f *nodeFlags) open() (*node, error) {
	if f.CiliumVersion == "" {
		return nil, usageErrorf("--cilium-version is required (e.g. --cilium-version 1.18.3)")
	}
	res, err := profiles.Resolve(f.CiliumVersion)
	if err != nil {
		return nil, usageErrorf("--cilium-version: %v", err)
	}
	n := &node{Resolution: res}
	path := filepath.Join(f.StateDir, "agent-runtime-config.json")
	data, err := readLimited(path, nil, nodeconfig.MaxSize)
	switch {
	case err == nil:
		if n.Config, err = nodeconfig.Parse(path, data); err != nil {
			return nil, envError(err)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, envError(err)
	}
	n.Timeouts = n.Config.NodeTimeouts(res.Profile)

	switch {
	case f.Clock != "":
		switch f.Clock {
		case "ktime":
			n.Clock = nodeconfig.Clock{Mode: nodeconfig.Ktime}
		case "jiffies":
			n.Clock = nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: f.HZ}
		default:
			return nil, usageErrorf("--clock must be ktime or jiffies, not %q", f.Clock)
		}
		n.ClockFrom = "--clock"
		if f.HZ == 0 && n.Config != nil && n.Config.Clock.Mode == nodeconfig.Jiffies {
			n.Clock.HZ = n.Config.Clock.HZ
		}
	case n.Config != nil && n.Config.ClockKnown:
		n.Clock, n.ClockFrom = n.Config.Clock, path
	default:
		n.Clock, n.ClockFrom = nodeconfig.Clock{Mode: nodeconfig.Ktime}, "Cilium's default (no "+path+")"
	}
	if f.HZ < 0 || (f.HZ > 0 && n.Clock.Mode != nodeconfig.Jiffies) {
		return nil, usageErrorf("--hz needs --clock jiffies and a positive value")
	}
	if f.HZ > 0 {
		n.Clock.HZ = f.HZ
	}
	if n.Clock.Mode == nodeconfig.Jiffies && n.Clock.HZ == 0 {
		hz, err := ctmap.KernelHZ()
		if err != nil {
			return nil, envError(fmt.Errorf("measure the kernel's HZ: %w (pass --hz)", err))
		}
		n.Clock.HZ = hz
		n.ClockFrom += ", HZ measured"
	}
	return n, nil
}

// times reads the datapath's current time.
func (n *node) times() (ctmap.Times, error) {
	now, err := ctmap.Now(n.Clock)
	if err != nil {
		return ctmap.Times{}, envError(err)
	}
	return ctmap.NewTimes(n.Clock, now, n.Timeouts), nil
}

// describe is the one line that says which profile and clock are used.
func (n *node) describe() string {
	return fmt.Sprintf("profile %s, clock %s from %s", n.Resolution.Profile.Name, n.Clock, n.ClockFrom)
}

// openMaps opens the profile's maps of the given roles, in the order of
// the roles and then of the profile. A missing optional map is skipped; a
// missing required one or a mismatching one is an error.
func (n *node) openMaps(bpffs string, roles ...profiles.MapRole) ([]*ctmap.Map, error) {
	var specs []profiles.MapSpec
	for _, role := range roles {
		for _, spec := range n.Resolution.Profile.Maps {
			if spec.Role == role {
				specs = append(specs, spec)
			}
		}
	}
	var out []*ctmap.Map
	for _, spec := range specs {
		m, err := ctmap.Open(bpffs, spec, false)
		if errors.Is(err, ctmap.ErrMapMissing) && spec.Optional {
			continue
		}
		if err != nil {
			closeAll(out)
			if errors.Is(err, fs.ErrPermission) {
				return nil, envError(fmt.Errorf("%w (reading BPF maps needs root or CAP_BPF)", err))
			}
			return nil, mapError(err)
		}
		out = append(out, m)
	}
	return out, nil
}

func closeAll(ms []*ctmap.Map) {
	for _, m := range ms {
		m.Close()
	}
}
