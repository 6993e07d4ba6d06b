package enforce

import (
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

// ApplyResult is what one apply did: the set put in force and the sweep
// that followed.
type ApplyResult struct {
	Mode sweep.Mode
	// Engine is the engine that swept and why.
	Engine sweep.Choice
	// Sweep is the sweep run right after the swap; its counts are per
	// slot of the set (slot i+1 is set[i]).
	Sweep *sweep.Result
}

// Apply checks Cilium's maps, puts set in force in egwct's pinned state
// (creating it when needed, under its lock) and sweeps once. Cilium's maps
// are checked before anything is written: a missing or mismatched map
// leaves egwct's state as it was.
func Apply(env *Env, set []sweep.Policy, mode sweep.Mode, engine sweep.Engine) (*ApplyResult, error) {
	if err := CheckMaps(env); err != nil {
		return nil, err
	}
	st, err := sweep.OpenState(env.BPFFS, true)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	cfg := env.SweepConfig(mode, engine)
	cfg.Next = set
	s, err := sweep.New(cfg, st)
	if err != nil {
		return nil, MapErr(err)
	}
	defer s.Close()
	if err := st.Replace(set); err != nil {
		return nil, err
	}
	// Every policy of a one-shot apply is applied as written.
	if err := st.SetOutcomes(nil); err != nil {
		return nil, err
	}
	res, err := s.Sweep()
	if err != nil {
		return nil, err
	}
	return &ApplyResult{Mode: mode, Engine: s.Choice(), Sweep: res}, nil
}

// CheckMaps opens Cilium's CT and SNAT maps once and closes them: an
// error names a missing map or one whose shape differs from the profile.
func CheckMaps(env *Env) error {
	maps, err := env.OpenMaps(profiles.RoleCTTCP, profiles.RoleCTAny, profiles.RoleSNAT)
	if err != nil {
		return err
	}
	CloseMaps(maps)
	return nil
}
