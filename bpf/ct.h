/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The layouts of Cilium's CT maps that egwct's programs read: the key
 * (struct ipv4_ct_tuple, ipv6_ct_tuple) and the fields of struct ct_entry
 * (cilium-datapath.md §2, §3; the same in every Cilium version egwct
 * supports). pkg/sweep's tests check ct_entry against every profile.
 */
#ifndef EGWCT_CT_H
#define EGWCT_CT_H

#include <linux/types.h>

/* struct ipv4_ct_tuple and ipv6_ct_tuple: the pod first, then the
 * destination. */
struct ct_key4 {
	__u32 pod;   /* daddr */
	__u32 dest;  /* saddr */
	__u16 dport;
	__u16 sport;
	__u8 nexthdr;
	__u8 flags;
} __attribute__((packed));
_Static_assert(sizeof(struct ct_key4) == 14, "struct ipv4_ct_tuple is 14 bytes");

struct ct_key6 {
	__u32 pod[4];  /* daddr */
	__u32 dest[4]; /* saddr */
	__u16 dport;
	__u16 sport;
	__u8 nexthdr;
	__u8 flags;
} __attribute__((packed));
_Static_assert(sizeof(struct ct_key6) == 38, "struct ipv6_ct_tuple is 38 bytes");

/* The fields of struct ct_entry the sweeper reads (same in every version). */
struct ct_entry {
	__u64 pad0[4];
	__u32 lifetime;
	__u16 flags;
	__u16 rev_nat_index;
	__u16 pad40;
	__u8 tx_flags_seen;
	__u8 rx_flags_seen;
	__u32 src_sec_id;
	__u32 last_tx_report;
	__u32 last_rx_report;
};
_Static_assert(sizeof(struct ct_entry) == 56, "struct ct_entry is 56 bytes");
_Static_assert(__builtin_offsetof(struct ct_entry, lifetime) == 32, "ct_entry.lifetime");
_Static_assert(__builtin_offsetof(struct ct_entry, flags) == 36, "ct_entry.flags");

#endif
