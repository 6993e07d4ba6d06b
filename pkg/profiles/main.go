package profiles

import "time"

func init() {
	egwFlags := FlagNoPrealloc | FlagRdonlyProg
	// main is 1.21 in development. Cilium's main branch is not on the Go
	// module proxy, so hack/verify-profiles cannot check it: the facts are
	// 1.20's, less cilium_egress_gw_policy_v4, which cilium/cilium#46053
	// (merged 2026-07-27) removed — the datapath reads only
	// cilium_egress_gw_policy_v4_v2. egwct needs neither map to sweep (the
	// agent's policy set comes from the cluster); `list` and the lab read
	// whichever egress-policy maps the profile names.
	maps := mapSet([]uint32{0, FlagNoCommonLRU}, egwFlags)
	for i, m := range maps {
		if m.Name == "cilium_egress_gw_policy_v4" {
			maps[i] = egressPolicyV4V2(egwFlags)
		}
	}
	register(&Profile{
		Name: "main", Major: 1, Minor: 21, Dev: true,
		Sources: []string{
			"main after cilium/cilium#46053 (2026-07-27), otherwise as v1.20.2",
		},
		Parameters:    regularParameters(8000 * time.Second),
		ServiceTimers: serviceTimers(8000 * time.Second),
		Maps:          append(maps, maps118(egwFlags)...),
		CTEntry:       ctEntryV119(),
		Layouts:       layouts(true, true),
		GCInterval:    gcInterval,
		Clock: ClockRules{
			Default:   clockDefault,
			Jiffies:   "jiffies64 >> 8 when the agent's runtime config sets enable_jiffies (enable-bpf-clock-probe=true, default false)",
			Shift:     8,
			HZChoices: hzChoices,
			Where:     clockWhere,
		},
		SNATRetries:  32,
		GCDeletesNAT: "only for entries with tuple flags exactly OUT, from the GC cell: dsr_internal entries delete the port-swapped NAT key, others the address-swapped egress key and its reverse key",
	})
}
