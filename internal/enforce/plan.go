package enforce

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"sort"

	"github.com/egwct/egwct/pkg/ctstats"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

// Plan is what putting a set in force would change and do now.
type Plan struct {
	// Keys of the new set, and how many are added and removed against
	// the set in force.
	Keys, Added, Removed int
	// Policies are the set's policies with the entries a sweep would
	// expire now, per state.
	Policies []PlannedPolicy
	// PortsFreed are the SNAT ports a reclaim sweep would free now, per
	// egress IP, in address order.
	PortsFreed []PortsFreed
}

// PlannedPolicy is one policy of a plan.
type PlannedPolicy struct {
	Name string
	Keys int
	// Expire counts the entries a sweep would expire now, by state.
	Expire [4]int
}

// ExpireTotal is the number of entries a sweep would expire now.
func (p PlannedPolicy) ExpireTotal() int {
	n := 0
	for _, e := range p.Expire {
		n += e
	}
	return n
}

// PortsFreed is the number of SNAT ports of one egress IP a reclaim sweep
// would free.
type PortsFreed struct {
	Egress netip.Addr
	Ports  int
}

// MakePlan previews set against the node's maps and egwct's state in
// force, reading only: it takes no lock and creates nothing, so it runs
// beside a running agent.
func MakePlan(env *Env, set []sweep.Policy) (*Plan, error) {
	cur, err := currentKeys(env.BPFFS)
	if err != nil {
		return nil, err
	}
	p := &Plan{}
	want := map[policy.Key]bool{}
	for _, sp := range set {
		for _, k := range sp.Keys {
			want[k] = true
		}
	}
	p.Keys = len(want)
	for k := range want {
		if !cur[k] {
			p.Added++
		}
	}
	for k := range cur {
		if !want[k] {
			p.Removed++
		}
	}
	expired, ports, err := impact(env, set)
	if err != nil {
		return nil, err
	}
	for i, sp := range set {
		p.Policies = append(p.Policies, PlannedPolicy{Name: sp.Name, Keys: len(sp.Keys), Expire: expired[i+1]})
	}
	for ip, n := range ports {
		p.PortsFreed = append(p.PortsFreed, PortsFreed{Egress: ip, Ports: n})
	}
	sort.Slice(p.PortsFreed, func(i, j int) bool { return p.PortsFreed[i].Egress.Less(p.PortsFreed[j].Egress) })
	return p, nil
}

// currentKeys reads the keys of the set in force, none when egwct has no
// state on the node.
func currentKeys(bpffs string) (map[policy.Key]bool, error) {
	out := map[policy.Key]bool{}
	if _, err := os.Stat(sweep.Dir(bpffs)); errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	st, err := sweep.OpenStateReadOnly(bpffs)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	keys, err := st.CurrentKeys()
	if err != nil {
		return nil, err
	}
	for k := range keys {
		out[k] = true
	}
	return out, nil
}

// impact judges every CT entry of the families swept against the set as
// a sweep now would (ctstats.ImpactNow, the aggregation top uses too):
// expired entries per policy slot and state, and the SNAT ports their
// deletion would free per egress IP.
func impact(env *Env, set []sweep.Policy) ([][4]int, map[netip.Addr]int, error) {
	times, err := env.Times()
	if err != nil {
		return nil, nil, err
	}
	nats, err := env.OpenMaps(profiles.RoleSNAT)
	if err != nil {
		return nil, nil, err
	}
	defer CloseMaps(nats)
	cts, err := env.OpenMaps(profiles.RoleCTTCP, profiles.RoleCTAny)
	if err != nil {
		return nil, nil, err
	}
	defer CloseMaps(cts)
	im, err := ctstats.ImpactNow(ctstats.NewJudge(set, times), cts, nats, sweep.Families(env.Resolution.Profile))
	if err != nil {
		return nil, nil, err
	}
	return im.Expired, im.Freed, nil
}
