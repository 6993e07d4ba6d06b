package profiles

import "time"

// egressPolicyV4V2 is cilium_egress_gw_policy_v4_v2 (1.20+): the IPv4 policy
// entries with egress_ifindex. The 1.20 datapath looks it up before
// cilium_egress_gw_policy_v4, and the agent writes every entry into both.
func egressPolicyV4V2(flags uint32) MapSpec {
	return MapSpec{Name: "cilium_egress_gw_policy_v4_v2", Role: RoleEgressPolicy, Family: 4, Type: MapTypeLPMTrie,
		KeySize: 12, ValueSize: 28, Flags: []uint32{flags}, DefaultMaxEntries: egressPolicies, Optional: true,
		Note: "IPv4 egress-gateway policy entries with egress_ifindex"}
}

// ctEntryV119 is ct_entry from 1.19: bytes 0–15 hold the DSR NAT address
// and bytes 40–41 its port.
func ctEntryV119() CTEntryLayout {
	return ctEntry(countersV119,
		Field{Name: "nat_port", Offset: 40, Size: 2, Note: "be16, CT_EGRESS DSR; 0 for gateway entries"}, "nat64", "dsr_internal")
}

func init() { register(profile120()) }

// profile120 is the 1.20 profile; main (1.21-dev) starts from it.
func profile120() *Profile {
	egwFlags := FlagNoPrealloc | FlagRdonlyProg
	return &Profile{
		Name: "1.20", Major: 1, Minor: 20,
		Sources: []string{
			"main aeb2d1b68e0e0bb36fc48f262bbc75c4903c19e8 (2026-06-25), before the v1.20 branch",
		},
		VerifiedAgainst: []Version{v("1.20.0"), v("1.20.2")},
		Parameters:      regularParameters(8000 * time.Second),
		ServiceTimers:   serviceTimers(8000 * time.Second),
		Maps: append(append(mapSet([]uint32{0, FlagNoCommonLRU}, egwFlags), maps118(egwFlags)...),
			egressPolicyV4V2(egwFlags)),
		CTEntry:    ctEntryV119(),
		Layouts:    layouts(true, true),
		GCInterval: gcInterval,
		Clock: ClockRules{
			Default:   clockDefault,
			Jiffies:   "jiffies64 >> 8 when the agent's runtime config sets enable_jiffies (enable-bpf-clock-probe=true, default false)",
			Shift:     8,
			HZChoices: hzChoices,
			Where:     clockWhere,
		},
		SNATRetries:  32,
		GCDeletesNAT: "only for entries with tuple flags exactly OUT, from the GC cell: dsr_internal entries delete the port-swapped NAT key, others the address-swapped egress key and its reverse key",
	}
}
