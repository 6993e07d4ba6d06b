package profiles

import "time"

func init() {
	register(&Profile{
		Name: "1.15", Major: 1, Minor: 15,
		Checked:         v("1.15.5"),
		VerifiedAgainst: []Version{v("1.15.19")},
		Sources: []string{
			"v1.15.0 2db45c468981a863b230186ad37d44e5a7c08d61",
			"v1.15.5 8c7e442ccd48b9011a10f34a128ec98751d9a80e",
		},
		Parameters:    regularParameters(8000 * time.Second),
		ServiceTimers: serviceTimers(8000 * time.Second),
		Maps:          mapSet([]uint32{0}, FlagNoPrealloc),
		CTEntry: ctEntry(countersV114,
			Field{Name: "ifindex", Offset: 40, Size: 2}, "nat64", "dsr"),
		Layouts:    layouts(false, false),
		GCInterval: gcInterval,
		Clock: ClockRules{
			Default:   clockDefault,
			Jiffies:   "jiffies64 >> 8 when enable-bpf-clock-probe=true (default false), the kernel has jiffies64 and KERNEL_HZ != 1",
			Shift:     8,
			HZChoices: hzChoices,
			Where:     clockWhere,
		},
		SNATRetries:  128,
		GCDeletesNAT: "only for entries with tuple flags OUT: DSR entries delete the port-swapped NAT key, others the address-swapped egress key and its reverse key",
		Quirks: []Quirk{
			restartQuirk(Range{From: v("1.15.0"), To: v("1.15.1")}),
			earlyPassQuirk(Range{From: v("1.15.0"), To: v("1.15.1")}),
		},
	})
}
