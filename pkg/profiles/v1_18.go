package profiles

import "time"

func init() {
	register(&Profile{
		Name: "1.18", Major: 1, Minor: 18,
		Checked:         v("1.18.3"),
		VerifiedAgainst: []Version{v("1.18.3"), v("1.18.11")},
		Sources: []string{
			"v1.18.0 274205f001bb24b89d19f0fe7c3fb3aca20030c2",
			"v1.18.3 c16016890116f9fc6bf8d90e3ffe0f4e91ae8097",
		},
		Parameters:    regularParameters(8000 * time.Second),
		ServiceTimers: serviceTimers(8000 * time.Second),
		Maps: append(mapSet([]uint32{0, FlagNoCommonLRU}, FlagNoPrealloc),
			maps118(FlagNoPrealloc)...),
		CTEntry: ctEntry(countersV116,
			Field{Name: "reserved4", Offset: 40, Size: 2, Note: "unused since 1.18"}, "nat64", "dsr_internal"),
		Layouts:    layouts(true, false),
		GCInterval: gcInterval,
		Clock: ClockRules{
			Default:   clockDefault,
			Jiffies:   "jiffies64 >> 8 when enable-bpf-clock-probe=true (default false) and KERNEL_HZ != 1",
			Shift:     8,
			HZChoices: hzChoices,
			Where:     clockWhere,
		},
		SNATRetries:  32,
		GCDeletesNAT: "only for entries with tuple flags exactly OUT, through the GC event stream: dsr_internal entries delete the port-swapped NAT key, others the address-swapped egress key and its reverse key",
		Quirks: []Quirk{
			{
				ID:      "ct-fillup-enomem-only",
				Affects: []Range{{From: v("1.18.3")}},
				Summary: "the datapath signals CT fill-up only when an insert fails with ENOMEM, so orphan SNAT entries are purged less often",
				Source:  "bpf/lib/conntrack.h @ v1.18.3",
			},
		},
	})
}
