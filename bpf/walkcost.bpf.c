// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Test-only programs that price a bpf_for_each_map_elem callback over
 * Cilium's IPv4 TCP CT map (pkg/sweep's BenchmarkWalkCost): the reads any
 * judgement makes, then those reads followed by n rounds of arithmetic,
 * on one dependent chain (WORK) or four (WIDE). Against the empty walk
 * (sweep.bpf.c's walk_only) they say what an instruction of a callback
 * costs per entry, and so how many a judgement may spend for a given
 * ratio to the floor. Never shipped: the object is bpf2go output of
 * pkg/sweep's tests only. Each program NAME walks the map with the
 * callback NAME_cb (WALK), which the benchmark counts the instructions
 * of.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual BSD/GPL";

struct bpf_map;

#include "ct.h"

/* Replaced at load by the benchmark's CT map. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct ct_key4));
	__uint(value_size, sizeof(struct ct_entry));
} ct_tcp4 SEC(".maps");

/* The reads every judgement makes: the key's pod and flags, the entry's
 * lifetime and flags (the value lies on another cache line than the
 * element's list node, all the walk itself reads). */
static __always_inline __u64 reads(struct ct_key4 *k, struct ct_entry *v)
{
	return *(__u32 *)k + k->flags + v->lifetime + v->flags;
}

/* WALK(name): the program that walks the map with name##_cb, summing
 * what the callbacks compute (returned, so that nothing is left out). */
#define WALK(name)                                                     \
	SEC("raw_tp")                                                  \
	int name(void *ctx)                                            \
	{                                                              \
		__u64 sum = 0;                                         \
		bpf_for_each_map_elem(&ct_tcp4, name##_cb, &sum, 0);   \
		return sum == 1;                                       \
	}

static long read_only_cb(struct bpf_map *map, struct ct_key4 *k, struct ct_entry *v, __u64 *sum)
{
	*sum += reads(k, v);
	return 0;
}
WALK(read_only)

/* WORK(n): the reads, then n rounds of a multiply-xorshift on what they
 * read, each round depending on the one before (nothing to fold or to
 * run side by side), five instructions a round. */
#define WORK(n)                                                                           \
	static long work##n##_cb(struct bpf_map *map, struct ct_key4 *k, struct ct_entry *v, \
				 __u64 *sum)                                               \
	{                                                                                  \
		__u64 x = reads(k, v);                                                     \
		_Pragma("unroll") for (int i = 0; i < n; i++)                              \
		{                                                                          \
			x ^= x >> 29;                                                      \
			x *= 0x9e3779b97f4a7c15ull;                                        \
			x += i;                                                            \
		}                                                                          \
		*sum += x;                                                                 \
		return 0;                                                                  \
	}                                                                                  \
	WALK(work##n)

WORK(4)
WORK(8)
WORK(16)
WORK(32)

/* WIDE(n): the same n rounds as WORK(n), on four independent chains of
 * n / 4 rounds each (seeded from the same reads): as many instructions,
 * a quarter of the latency. */
#define WIDE(n)                                                                           \
	static long wide##n##_cb(struct bpf_map *map, struct ct_key4 *k, struct ct_entry *v, \
				 __u64 *sum)                                               \
	{                                                                                  \
		__u64 r = reads(k, v);                                                     \
		__u64 x0 = r, x1 = r + 1, x2 = r + 2, x3 = r + 3;                          \
		_Pragma("unroll") for (int i = 0; i < n / 4; i++)                          \
		{                                                                          \
			x0 ^= x0 >> 29;                                                    \
			x1 ^= x1 >> 29;                                                    \
			x2 ^= x2 >> 29;                                                    \
			x3 ^= x3 >> 29;                                                    \
			x0 *= 0x9e3779b97f4a7c15ull;                                       \
			x1 *= 0x9e3779b97f4a7c15ull;                                       \
			x2 *= 0x9e3779b97f4a7c15ull;                                       \
			x3 *= 0x9e3779b97f4a7c15ull;                                       \
			x0 += i;                                                           \
			x1 += i;                                                           \
			x2 += i;                                                           \
			x3 += i;                                                           \
		}                                                                          \
		*sum += x0 ^ x1 ^ x2 ^ x3;                                                 \
		return 0;                                                                  \
	}                                                                                  \
	WALK(wide##n)

WIDE(16)
WIDE(32)
