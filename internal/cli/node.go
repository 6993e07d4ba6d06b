package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/egwct/egwct/internal/enforce"
	"github.com/egwct/egwct/internal/manifest"
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
type node struct{ *enforce.Env }

// open resolves the profile, the node's configuration and its clock.
func (f *nodeFlags) open() (*node, error) {
	if f.CiliumVersion == "" {
		return nil, usageErrorf("--cilium-version is required (e.g. --cilium-version 1.18.3)")
	}
	res, err := profiles.Resolve(f.CiliumVersion)
	if err != nil {
		return nil, usageErrorf("--cilium-version: %v", err)
	}
	return f.openAs(res)
}

// openAs reads the node's configuration and clock for Cilium of res.
func (f *nodeFlags) openAs(res profiles.Resolution) (*node, error) {
	n := &node{&enforce.Env{BPFFS: f.BPFFS, Resolution: res}}
	path := filepath.Join(f.StateDir, "agent-runtime-config.json")
	data, err := manifest.ReadLimited(path, nil, nodeconfig.MaxSize)
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
	t, err := n.Times()
	if err != nil {
		return t, envError(err)
	}
	return t, nil
}

// describe is the one line that says which profile and clock are used.
func (n *node) describe() string { return n.Describe() }

// openMaps opens the profile's maps of the given roles (see
// enforce.Env.OpenMaps); bpffs is the env's.
func (n *node) openMaps(_ string, roles ...profiles.MapRole) ([]*ctmap.Map, error) {
	ms, err := n.OpenMaps(roles...)
	if err != nil {
		return nil, envError(err)
	}
	return ms, nil
}

func closeAll(ms []*ctmap.Map) { enforce.CloseMaps(ms) }
