package profiles

import "time"

func init() {
	register(&Profile{
		Name: "1.14", Major: 1, Minor: 14,
		Checked:         v("1.14.16"),
		VerifiedAgainst: []Version{v("1.14.19")},
		Sources: []string{
			"v1.14.0 b5013e1562dbfe442dd2011a5af46de9095315ff",
			"v1.14.16 c2fcf1db31b1b408662471cbe1fddd121bd9678a",
		},
		Parameters:    regularParameters(21600 * time.Second),
		ServiceTimers: serviceTimers(21600 * time.Second),
		Maps:          mapSet([]uint32{0}, FlagNoPrealloc),
		CTEntry: ctEntry(countersV114,
			Field{Name: "ifindex", Offset: 40, Size: 2}, "nat46", "dsr"),
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
		GCDeletesNAT: "for every deleted entry on a node with BPF NodePort: IN entries delete the port-swapped NAT key; others delete the address-swapped egress key and its reverse key",
		Quirks: []Quirk{
			restartQuirk(Range{From: v("1.14.0")}),
			earlyPassQuirk(Range{From: v("1.14.0")}),
			{
				ID:      "syn-reopen-keeps-lifetime",
				Affects: []Range{{From: v("1.14.0")}},
				Summary: "a SYN on a closing entry only clears the closing bits; the entry keeps the established timeout instead of restarting as a SYN entry",
				Source:  "bpf/lib/conntrack.h __ct_lookup @ v1.14.0, v1.14.16",
			},
			{
				ID:      "egw-map-size-fixed",
				Affects: []Range{{From: v("1.14.0")}},
				Summary: "the datapath hard-codes 16384 egress-policy entries whatever egress-gateway-policy-map-max says",
				Source:  "bpf/lib/maps.h @ v1.14.0",
			},
		},
	})
}
