package enforce

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

// Env is what egwct knows about the node whose maps it reads and changes.
type Env struct {
	// BPFFS is where bpffs is mounted: Cilium's maps are under
	// <BPFFS>/tc/globals, egwct's state under <BPFFS>/egwct.
	BPFFS      string
	Resolution profiles.Resolution
	// Config is the node's agent-runtime-config.json (or the cluster's
	// cilium-config), nil when there is none.
	Config *nodeconfig.Config
	Clock  nodeconfig.Clock
	// ClockFrom says where the clock came from, for people.
	ClockFrom string
	// Timeouts are the node's CT timeouts per state.
	Timeouts map[profiles.State]time.Duration
}

// Profile is the profile of the node's Cilium version.
func (e *Env) Profile() *profiles.Profile { return e.Resolution.Profile }

// Describe is the one line that says which profile and clock are used.
func (e *Env) Describe() string {
	return fmt.Sprintf("profile %s, clock %s from %s", e.Resolution.Profile.Name, e.Clock, e.ClockFrom)
}

// Times reads the datapath's clock now.
func (e *Env) Times() (ctmap.Times, error) {
	now, err := ctmap.Now(e.Clock)
	if err != nil {
		return ctmap.Times{}, err
	}
	return ctmap.NewTimes(e.Clock, now, e.Timeouts), nil
}

// SweepConfig is the sweeper's configuration on this node.
func (e *Env) SweepConfig(mode sweep.Mode, engine sweep.Engine) sweep.Config {
	return sweep.Config{BPFFS: e.BPFFS, Profile: e.Resolution.Profile, Clock: e.Clock, Node: e.Timeouts, Mode: mode, Engine: engine}
}

// OpenMaps opens the profile's maps of the given roles read-only, in the
// order of the roles and then of the profile. A missing optional map is
// skipped; a missing required one or one whose shape differs from the
// profile is an error (a *MapError).
func (e *Env) OpenMaps(roles ...profiles.MapRole) ([]*ctmap.Map, error) {
	var specs []profiles.MapSpec
	for _, role := range roles {
		for _, spec := range e.Resolution.Profile.Maps {
			if spec.Role == role {
				specs = append(specs, spec)
			}
		}
	}
	var out []*ctmap.Map
	for _, spec := range specs {
		m, err := ctmap.Open(e.BPFFS, spec, false)
		if errors.Is(err, ctmap.ErrMapMissing) && spec.Optional {
			continue
		}
		if err != nil {
			CloseMaps(out)
			return nil, MapErr(err)
		}
		out = append(out, m)
	}
	return out, nil
}

// CloseMaps closes every map of ms.
func CloseMaps(ms []*ctmap.Map) {
	for _, m := range ms {
		m.Close()
	}
}

// MapErr explains an error of opening Cilium's maps: a map of another
// shape hints at a wrong Cilium version, a permission error at missing
// privileges.
func MapErr(err error) error {
	var mm *ctmap.MismatchError
	switch {
	case errors.As(err, &mm):
		return fmt.Errorf("%w (is --cilium-version the node's version?)", err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w (reading BPF maps needs root or CAP_BPF)", err)
	}
	return err
}

// swept are the families the sweeper handles on the env's profile.
func (e *Env) swept() map[int]bool {
	out := map[int]bool{}
	for _, f := range sweep.Families(e.Resolution.Profile) {
		out[f] = true
	}
	return out
}
