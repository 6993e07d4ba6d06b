package profiles

import "time"

func init() {
	egwFlags := FlagNoPrealloc | FlagRdonlyProg
	register(&Profile{
		Name: "main", Major: 1, Minor: 20, Dev: true,
		Verified: v("1.20.0-dev"),
		Sources: []string{
			"main aeb2d1b68e0e0bb36fc48f262bbc75c4903c19e8 (2026-06-25)",
		},
		Parameters:    regularParameters(8000 * time.Second),
		ServiceTimers: serviceTimers(8000 * time.Second),
		Maps: append(append(mapSet([]uint32{0, FlagNoCommonLRU}, egwFlags), maps118(egwFlags)...),
			MapSpec{Name: "cilium_egress_gw_policy_v4_v2", Role: RoleEgressPolicy, Family: 4, Type: MapTypeLPMTrie,
				KeySize: 12, ValueSize: 28, Flags: []uint32{egwFlags}, DefaultMaxEntries: egressPolicies, Optional: true,
				Note: "egress policies with egress_ifindex; the datapath reads it before cilium_egress_gw_policy_v4, which goes away in 1.21"}),
		CTEntry: ctEntry(countersV119,
			Field{Name: "nat_port", Offset: 40, Size: 2, Note: "be16, CT_EGRESS DSR; 0 for gateway entries"}, "nat64", "dsr_internal"),
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
