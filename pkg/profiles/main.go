package profiles

func init() {
	// main is 1.21 in development. Cilium's main branch is not on the Go
	// module proxy, so hack/verify-profiles cannot check it: the facts are
	// 1.20's, less cilium_egress_gw_policy_v4, which cilium/cilium#46053
	// (merged 2026-07-27) removed — the datapath reads only
	// cilium_egress_gw_policy_v4_v2. egwct needs neither map to sweep (the
	// agent's policy set comes from the cluster); `list` and the lab read
	// whichever egress-policy maps the profile names.
	p := profile120()
	p.Name, p.Minor, p.Dev = "main", 21, true
	p.Sources = []string{"main after cilium/cilium#46053 (2026-07-27), otherwise as v1.20.2"}
	p.VerifiedAgainst = nil
	maps := p.Maps[:0]
	for _, m := range p.Maps {
		if m.Name != "cilium_egress_gw_policy_v4" {
			maps = append(maps, m)
		}
	}
	p.Maps = maps
	register(p)
}
