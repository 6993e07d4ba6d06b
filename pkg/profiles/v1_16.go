package profiles

import "time"

func init() {
	register(&Profile{
		Name: "1.16", Major: 1, Minor: 16,
		Checked:         v("1.16.15"),
		VerifiedAgainst: []Version{v("1.16.19")},
		Sources: []string{
			"v1.16.0 82999990bc954699cf24853ef9747d9166ee24c8",
			"v1.16.15 75130674084311ceedfc2bd6dfec511478d23105",
		},
		Parameters:    regularParameters(8000 * time.Second),
		ServiceTimers: serviceTimers(8000 * time.Second),
		Maps:          mapSet([]uint32{0}, FlagNoPrealloc),
		CTEntry: ctEntry(countersV116,
			Field{Name: "ifindex", Offset: 40, Size: 2, Note: "unused with HAVE_FIB_INDEX"}, "nat64", "dsr_internal"),
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
		GCDeletesNAT: "only for entries with tuple flags exactly OUT: dsr_internal entries delete the port-swapped NAT key, others the address-swapped egress key and its reverse key",
		Quirks: []Quirk{
			{
				ID:      "snat-stale-egress-ip",
				Affects: []Range{{From: v("1.16.0"), To: v("1.16.14")}},
				Summary: "SNAT entries keep a previous egress IP after a policy's egress IP changes (fixed in 1.16.15 and 1.17.0)",
				Source:  "bpf/lib/nat.h @ v1.16.0, v1.16.15",
			},
		},
	})
}
