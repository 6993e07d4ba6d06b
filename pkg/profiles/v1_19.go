package profiles

import "time"

func init() {
	register(&Profile{
		Name: "1.19", Major: 1, Minor: 19,
		Sources: []string{
			"v1.19 branch point 2ba24a2a3d8df04c0921f2029ca2b68003b97900",
		},
		VerifiedAgainst: []Version{v("1.19.0"), v("1.19.5"), v("1.19.7")},
		Parameters:      regularParameters(8000 * time.Second),
		ServiceTimers:   serviceTimers(8000 * time.Second),
		Maps: append(mapSet([]uint32{0, FlagNoCommonLRU}, FlagNoPrealloc),
			maps118(FlagNoPrealloc)...),
		CTEntry:    ctEntryV119(),
		Layouts:    layouts(true, false),
		GCInterval: gcInterval,
		Clock: ClockRules{
			Default:   clockDefault,
			Jiffies:   "jiffies64 >> 8 when the agent's runtime config sets enable_jiffies (enable-bpf-clock-probe=true, default false)",
			Shift:     8,
			HZChoices: hzChoices,
			Where:     clockWhere,
		},
		SNATRetries:  32,
		GCDeletesNAT: "only for entries with tuple flags exactly OUT, through the GC event stream: dsr_internal entries delete the port-swapped NAT key, others the address-swapped egress key and its reverse key",
	})
}
