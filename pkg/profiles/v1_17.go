package profiles

import "time"

func init() {
	register(&Profile{
		Name: "1.17", Major: 1, Minor: 17,
		Checked:         v("1.17.8"),
		VerifiedAgainst: []Version{v("1.17.16")},
		Sources: []string{
			"v1.17.0 c2bbf787eab9b7f728fcc861904d9bcf17e4ba9b",
			"v1.17.8 03b5572f35bba14971c5ce049de3842b8ff4fa6a",
		},
		Parameters:    regularParameters(8000 * time.Second),
		ServiceTimers: serviceTimers(8000 * time.Second),
		// bpf-distributed-lru (from 1.17.16) creates the CT and SNAT maps
		// with BPF_F_NO_COMMON_LRU; hack/verify-profiles found it on 1.17.16.
		Maps: mapSet([]uint32{0, FlagNoCommonLRU}, FlagNoPrealloc),
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
		GCDeletesNAT: "only for entries with tuple flags exactly OUT, through the GC event stream: dsr_internal entries delete the port-swapped NAT key, others the address-swapped egress key and its reverse key",
	})
}
