// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * egwct's sweeper: BPF programs that walk one of Cilium's IPv4 CT maps, a
 * map-element iterator (chunked, the default) or bpf_for_each_map_elem run
 * with BPF_PROG_RUN (one call per map). For every entry it finds the egwct policy of the flow (pod address
 * exact, destination by longest prefix, as Cilium's egress policy map
 * matches), classifies the entry's CT state, computes how long the flow has
 * been idle, and counts it. An entry idle for at least its policy's timeout
 * has expired:
 *   - mark mode: its lifetime is set to now - 1 (compare-and-swap against
 *     the lifetime read, so a concurrent refresh by the datapath wins), for
 *     Cilium's next GC pass to collect it. Nothing else changes.
 *   - reclaim mode: the key and the lifetime read are sent to userspace,
 *     which deletes the entry and its two SNAT entries unless the entry was
 *     refreshed meanwhile.
 * Layouts: cilium-datapath.md §2 (key), §3 (ct_entry), §5 (states).
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual BSD/GPL";

/* The iterator's context, declared here so no vmlinux.h is needed. */
struct seq_file;
struct bpf_map;
struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));
struct bpf_iter__bpf_map_elem {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
	void *key;
	void *value;
} __attribute__((preserve_access_index));

/* struct ipv4_ct_tuple: the pod at offset 0, the destination at 4. */
struct ct_key4 {
	__u32 pod;   /* daddr */
	__u32 dest;  /* saddr */
	__u16 dport;
	__u16 sport;
	__u8 nexthdr;
	__u8 flags;
} __attribute__((packed));

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

#define TUPLE_F_OUT 0
#define IPPROTO_TCP 6
#define CT_RX_CLOSING (1 << 0)
#define CT_TX_CLOSING (1 << 1)
#define CT_SEEN_NON_SYN (1 << 4)

enum { STATE_SYN, STATE_ESTABLISHED, STATE_CLOSING, STATE_NONTCP, NSTATES };
enum { MODE_RECLAIM, MODE_MARK };

/* The policy rules of one pod, longest destination prefix first: the first
 * rule whose prefix holds the destination is the pod's policy for the flow,
 * the longest-prefix match Cilium's egress policy map makes (§8.1). A hash
 * of pods with a short scan costs a fraction of an LPM-trie lookup. */
#define MAX_RULES 32
#define POLICY_EXCLUDED (1 << 0)

struct rule {
	__u32 net;              /* destination prefix, network order */
	__u32 mask;             /* its mask, network order */
	__u32 id;               /* slot of the policy, 1..MAX_POLICIES-1 */
	__u32 flags;            /* POLICY_EXCLUDED: an excludedCIDR */
	__u32 timeout[4];       /* in lifetime units; 0 = the node's */
};

struct pod_rules {
	__u32 n;
	struct rule r[MAX_RULES];
};

#define MAX_POLICIES 4096
#define MAX_PODS (1 << 16)
#define NBUCKETS 8

/* Per policy and state, reset by userspace before each sweep. */
struct sweep_stats {
	__u64 seen;
	__u64 expired;
	__u64 lost; /* expired but not reported: the ring buffer was full */
	__u64 idle[NBUCKETS];
};

/* An expired entry, for userspace to delete (reclaim mode). */
struct candidate {
	struct ct_key4 key;
	__u8 state;
	__u8 pad;
	__u32 lifetime;
	__u32 policy;
};

/* One slot holding the current policy set (pod → rules): swapping it is
 * atomic. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, MAX_PODS);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		/* Sizes, not types: clang-14 emits types only reached from
		 * an inner map definition as forward declarations. */
		__uint(key_size, sizeof(__u32));
		__uint(value_size, sizeof(struct pod_rules));
	});
} egwct_policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_POLICIES * NSTATES);
	__type(key, __u32);
	__type(value, struct sweep_stats);
} egwct_sweep SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} egwct_expired SEC(".maps");

/* Set before load. */
volatile const __u32 mode = MODE_RECLAIM;
volatile const __u32 node_timeout[NSTATES]; /* the node's, in lifetime units */
volatile const __u32 idle_bucket[NBUCKETS - 1]; /* histogram bounds, lifetime units */

/* Set before each sweep: the datapath's current time in lifetime units. */
volatile __u32 now;

static __always_inline __u32 classify(const struct ct_key4 *k, __u16 flags)
{
	if (k->nexthdr != IPPROTO_TCP)
		return STATE_NONTCP;
	if ((flags & CT_RX_CLOSING) && (flags & CT_TX_CLOSING))
		return STATE_CLOSING;
	if (!(flags & CT_SEEN_NON_SYN))
		return STATE_SYN;
	return STATE_ESTABLISHED;
}

/* judge handles one CT entry (see the comment at the top). */
static __always_inline int judge(struct ct_key4 *k, struct ct_entry *v)
{
	__u32 t = now;
	__u32 lifetime = v->lifetime;
	__u32 state = classify(k, v->flags);
	struct rule *p = NULL;

	if (k->flags == TUPLE_F_OUT) {
		__u32 zero = 0;
		void *pods = bpf_map_lookup_elem(&egwct_policies, &zero);
		__u32 pod = k->pod; /* map keys cannot point into the iterator's buffer */
		struct pod_rules *pr = pods ? bpf_map_lookup_elem(pods, &pod) : NULL;
		if (pr) {
			__u32 dest = k->dest;
			for (int i = 0; i < MAX_RULES; i++) {
				if (i >= pr->n)
					break;
				if ((dest & pr->r[i].mask) == pr->r[i].net) {
					p = &pr->r[i];
					break;
				}
			}
			if (p && (p->flags & POLICY_EXCLUDED))
				p = NULL;
		}
	}
	__u32 slot = p ? p->id : 0;
	if (slot >= MAX_POLICIES)
		slot = 0;
	__u32 idx = slot * NSTATES + state;
	struct sweep_stats *s = bpf_map_lookup_elem(&egwct_sweep, &idx);
	if (!s)
		return 0;

	/* Every packet sets lifetime = now + node timeout: the last one was
	 * at lifetime - node timeout. */
	__s32 idle = (__s32)(t - (lifetime - node_timeout[state]));
	s->seen++;
	__u32 b = 0;
#pragma unroll
	for (int i = 0; i < NBUCKETS - 1; i++)
		if (idle >= (__s32)idle_bucket[i])
			b = i + 1;
	s->idle[b & (NBUCKETS - 1)]++;

	if (!p || state >= NSTATES)
		return 0;
	__u32 limit = p->timeout[state];
	if (!limit || idle < (__s32)limit)
		return 0;

	if (mode == MODE_MARK && (__s32)(lifetime - t) < 0)
		return 0; /* already expired: Cilium's GC collects it anyway */
	s->expired++;
	if (mode == MODE_MARK) {
		/* Expire it for Cilium's GC (lifetime < now), unless the
		 * datapath refreshed it since we read it. */
		__sync_val_compare_and_swap(&v->lifetime, lifetime, t - 1);
		return 0;
	}
	struct candidate *c = bpf_ringbuf_reserve(&egwct_expired, sizeof(*c), 0);
	if (!c) {
		s->lost++;
		return 0;
	}
	__builtin_memcpy(&c->key, k, sizeof(c->key));
	c->state = state;
	c->pad = 0;
	c->lifetime = lifetime;
	c->policy = slot;
	bpf_ringbuf_submit(c, 0);
	return 0;
}

SEC("iter/bpf_map_elem")
int sweep(struct bpf_iter__bpf_map_elem *ctx)
{
	struct ct_key4 *k = ctx->key;
	struct ct_entry *v = ctx->value;
	if (!k || !v)
		return 0;
	return judge(k, v);
}

/* The same judgement over a whole map in one call, for BPF_PROG_RUN:
 * cheaper per entry than the iterator, but it holds the CPU for the whole
 * map. The CT maps are bound at load time. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct ct_key4));
	__uint(value_size, sizeof(struct ct_entry));
} ct_tcp SEC(".maps"), ct_any SEC(".maps");

static long visit(struct bpf_map *map, struct ct_key4 *k, struct ct_entry *v, void *ctx)
{
	judge(k, v);
	return 0;
}

/* One program per map: a call site of bpf_for_each_map_elem must always
 * see the same map (older verifiers reject a merged call). */
SEC("raw_tp")
int sweep_all_tcp(struct bpf_raw_tracepoint_args *ctx)
{
	bpf_for_each_map_elem(&ct_tcp, visit, NULL, 0);
	return 0;
}

SEC("raw_tp")
int sweep_all_any(struct bpf_raw_tracepoint_args *ctx)
{
	bpf_for_each_map_elem(&ct_any, visit, NULL, 0);
	return 0;
}
