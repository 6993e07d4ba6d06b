// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * egwct's sweeper: BPF programs that walk one of Cilium's CT maps (IPv4 or
 * IPv6), with a map-element iterator (chunked) or with
 * bpf_for_each_map_elem run by BPF_PROG_RUN (one call per map). For every
 * entry it finds the egwct policy of the flow (pod address exact,
 * destination by longest prefix, as Cilium's egress policy map matches),
 * classifies the entry's CT state, computes how long the flow has
 * been idle, and counts it. An entry idle for at least its policy's timeout
 * has expired:
 *   - mark mode: its lifetime is set to now - 1 (compare-and-swap against
 *     the lifetime read, so a concurrent refresh by the datapath wins), for
 *     Cilium's next GC pass to collect it. Nothing else changes.
 *   - reclaim mode: the program deletes the entry inside the walk, unless
 *     its lifetime changed since it was read (the datapath refreshed it),
 *     then its SNAT egress and reverse entries: the set Cilium's GC
 *     deletes for an outbound entry. docs/sweeper.md says why deleting
 *     during the walk is safe on these (LRU) hash maps.
 * Layouts: cilium-datapath.md §2 (key), §3 (ct_entry), both in ct.h; §5 (states).
 *
 * The structs and enums userspace shares with this program reach Go as
 * bpf2go -type output (pkg/sweep/gen.go); pkg/sweep's tests read this
 * object's BTF and check each of them, and the ct_entry layout against
 * every Cilium profile. The _Static_asserts pin Cilium's layouts and the
 * sizes masked with SIZE - 1.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#define POW2(x) ((x) > 0 && ((x) & ((x) - 1)) == 0)

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

#include "ct.h"

/* Cilium's values the program tests: a tuple's flags and protocol, and
 * bits of ct_entry.flags. */
enum ct_const {
	TUPLE_F_OUT = 0,
	TUPLE_F_IN = 1,
	IPPROTO_TCP = 6,
	CT_RX_CLOSING = 1 << 0,
	CT_TX_CLOSING = 1 << 1,
	CT_SEEN_NON_SYN = 1 << 4,
};

/* The CT states, in the order of profiles.State. */
enum ct_state { STATE_SYN, STATE_ESTABLISHED, STATE_CLOSING, STATE_NONTCP, NSTATES };
_Static_assert(POW2(NSTATES), "states are masked with NSTATES - 1");

/* What happens to an expired entry, as sweep.Mode. */
enum sweep_mode { MODE_RECLAIM, MODE_MARK };

/* The policy set: for each address family an open-addressing table of the
 * pods that have rules (linear probing from a multiplicative hash of the
 * address), and each pod's block of rules in the rules array. The pod's
 * policy for a flow is its rule of the longest destination prefix that
 * holds the destination: the longest-prefix match Cilium's egress policy
 * map makes (§8.1). A block is one of two kinds:
 *   - a table (bits > 0): the masks of the pod's prefix lengths, longest
 *     first (lens entries, only their mask is used), then an
 *     open-addressing table of 1 << bits rules (linear probing from a
 *     hash of the prefix and its mask; policy 0: an empty slot). For each
 *     length in turn the destination's prefix is looked up. The longest
 *     length is also in the pod's entry (top), so a flow of it (or of a
 *     pod with one length) reads one cache line of the block however many
 *     rules the pod has.
 *   - a list (bits == 0): the pod's n rules, longest prefix first; the
 *     first whose prefix holds the destination is the match. Userspace
 *     builds a list for a pod of more than MAX_LENS prefix lengths (the
 *     bound keeps the verifier's work small), and where the tables of a
 *     large set do not fit.
 * A table hit costs a multiply and a load or two, far less than a helper
 * call into a hash map or an LPM trie. The whole set is one array value:
 * swapping it is one update. Userspace (set.go) builds it with the same
 * hashes and guarantees every pod and every rule of a table lies within
 * MAX_PROBE slots of its home. */
enum set_limit {
	MAX_POLICIES = 4096,
	MAX_RULES = 256,       /* rules of one pod */
	PODS4 = 1 << 16,       /* table slots */
	RULES4 = 1 << 16,
	PODS6 = 1 << 15,
	RULES6 = 1 << 15,
	MAX_PROBE = 16,
	MAX_LENS = 4,          /* prefix lengths of a pod's table (more: a list) */
	RULE_EXCLUDED = 1 << 0, /* a flag of struct rule4 and rule6 */
};
_Static_assert(POW2(PODS4) && POW2(RULES4) && POW2(PODS6) && POW2(RULES6),
	       "table indexes are masked with SIZE - 1");
#define GOLDEN 0x9e3779b1u

struct pod4 {
	__u32 addr;
	__u16 first;            /* index of its block's first entry */
	__u16 n;                /* its block's entries; 0: an empty slot */
	__u8 lens;              /* a table: its prefix lengths */
	__u8 bits;              /* a table: 1 << bits slots; 0: a list */
	__u8 top;               /* a table: its longest prefix length */
	__u8 pad;
};

struct pod6 {
	__u32 addr[4];
	__u16 first;
	__u16 n;
	__u8 lens;
	__u8 bits;
	__u8 top;
	__u8 pad;
};

struct rule4 {
	__u32 net;              /* destination prefix, network order */
	__u32 mask;
	__u16 policy;           /* slot of the policy, 1..MAX_POLICIES-1 */
	__u16 flags;            /* RULE_EXCLUDED: an excludedCIDR */
};
_Static_assert(sizeof(struct pod4) == 12 && sizeof(struct rule4) == 12, "IPv4 table entries");

struct rule6 {
	__u32 net[4];
	__u32 mask[4];
	__u16 policy;
	__u16 flags;
};

struct policy_set {
	__u32 bits4, bits6;                  /* the tables use 1 << bits slots */
	__u32 policies, pad;                 /* slots 1..policies are in use */
	__u32 timeout[MAX_POLICIES][NSTATES];     /* per policy and state, lifetime units; 0 = the node's */
	struct pod4 pods4[PODS4];
	struct pod6 pods6[PODS6];
	struct rule4 rules4[RULES4];
	struct rule6 rules6[RULES6];
};
_Static_assert(sizeof(struct pod6) == 24 && sizeof(struct rule6) == 36, "IPv6 table entries");
_Static_assert(sizeof(struct policy_set) == 16 + sizeof(__u32) * MAX_POLICIES * NSTATES +
	       sizeof(struct pod4) * PODS4 + sizeof(struct pod6) * PODS6 +
	       sizeof(struct rule4) * RULES4 + sizeof(struct rule6) * RULES6,
	       "struct policy_set has no padding");

#define NBUCKETS 8
_Static_assert(POW2(NBUCKETS), "buckets are masked with NBUCKETS - 1");

/* Per policy and state, reset by userspace before each sweep. The entries
 * seen are the sum of the idle histogram: one counter written per entry. */
struct sweep_stats {
	__u64 expired;
	__u64 deleted_ct;  /* reclaim: CT entries deleted */
	__u64 deleted_nat; /* reclaim: SNAT entries deleted with them */
	__u64 refreshed;   /* reclaim: expired when judged, refreshed before deletion: kept */
	__u64 idle[NBUCKETS];
};
_Static_assert(sizeof(struct sweep_stats) == 8 * (4 + NBUCKETS), "struct sweep_stats");

/* The SNAT entries of Cilium (struct ipv4_nat_entry, ipv6_nat_entry): the
 * translated address and port after created, needs_ct and two pads. */
struct nat_entry4 {
	__u64 pad0[4];
	__u32 to_addr;
	__u16 to_port;
	__u16 pad1;
};
_Static_assert(sizeof(struct nat_entry4) == 40 && __builtin_offsetof(struct nat_entry4, to_addr) == 32,
	       "struct ipv4_nat_entry is 40 bytes, to_saddr at 32");

struct nat_entry6 {
	__u64 pad0[4];
	__u32 to_addr[4];
	__u16 to_port;
	__u16 pad1[3];
};
_Static_assert(sizeof(struct nat_entry6) == 56 && __builtin_offsetof(struct nat_entry6, to_port) == 48,
	       "struct ipv6_nat_entry is 56 bytes, to_sport at 48");

/* One slot holding the current policy set: swapping it is atomic. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_ARRAY);
		__uint(max_entries, 1);
		/* Sizes, not types: clang-14 emits types only reached from
		 * an inner map definition as forward declarations. */
		__uint(key_size, sizeof(__u32));
		__uint(value_size, sizeof(struct policy_set));
	});
} egwct_policies SEC(".maps");

/* The statistics of the running sweep. One sweep at a time writes them
 * (the state's lock allows one egwct, which sweeps one map at a time), so
 * a plain array: a per-CPU one held 1.5 MiB for each CPU the node may
 * have (288 MiB on a 192-CPU node, charged to egwct's memory limit). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_POLICIES * NSTATES);
	__type(key, __u32);
	__type(value, struct sweep_stats);
} egwct_sweep SEC(".maps");

/* What a policy set holds: pods of each family, and pods whose rules are
 * a list. */
enum set_feature {
	HAS_PODS4 = 1 << 0,
	HAS_LISTS4 = 1 << 1,
	HAS_PODS6 = 1 << 2,
	HAS_LISTS6 = 1 << 3,
	ALL_FEATURES = (1 << 4) - 1,
};

/* The shared types no map or function signature names, so that their BTF
 * is in the object for bpf2go and the tests (clang emits the target of a
 * pointer member only as a declaration): never read or written. */
struct shared_types {
	enum ct_const ct;
	enum ct_state state;
	enum sweep_mode mode;
	enum set_limit limit;
	enum set_feature feature;
	struct policy_set set[];
};
struct shared_types shared_types __attribute__((unused));

/* Set before load. */
/* What the sets this program judges with may hold (enum set_feature): the
 * code of anything else is never run, and the verifier, which reads this
 * constant, leaves it out of its walk; the bounded loops of a list and of
 * a family without pods are most of its work. Userspace loads the program
 * again when a new set holds more. */
volatile const __u32 features = ALL_FEATURES;
volatile const __u32 node_timeout[NSTATES]; /* the node's, in lifetime units */
volatile const __u32 idle_bucket[NBUCKETS - 1]; /* first idle time of buckets 1.., lifetime units */

/* Set before each sweep: the datapath's current time in lifetime units. */
volatile __u32 now;

static __always_inline __u32 classify(__u8 nexthdr, __u16 flags)
{
	if (nexthdr != IPPROTO_TCP)
		return STATE_NONTCP;
	if ((flags & CT_RX_CLOSING) && (flags & CT_TX_CLOSING))
		return STATE_CLOSING;
	if (!(flags & CT_SEEN_NON_SYN))
		return STATE_SYN;
	return STATE_ESTABLISHED;
}

static __always_inline struct policy_set *current_set(void)
{
	__u32 zero = 0;
	void *inner = bpf_map_lookup_elem(&egwct_policies, &zero);
	return inner ? bpf_map_lookup_elem(inner, &zero) : NULL;
}

/* home is the first table slot of a pod's address (hashed to 32 bits). */
static __always_inline __u32 home(__u32 h, __u32 bits)
{
	return ((__u64)(__u32)(h * GOLDEN) << (bits & 31)) >> 32;
}

/* mask is the mask of a prefix length (0 to 32) as a 32-bit word of an
 * address in network order is loaded: the top len bits, byte-swapped. */
static __always_inline __u32 mask(__u32 len)
{
	return __builtin_bswap32((__u32)(0xffffffff00000000ull >> (len & 63)));
}

/* mask6 is the mask of the i-th word of an IPv6 prefix length. */
static __always_inline __u32 mask6(__u32 len, __u32 i)
{
	__u32 l = len > 32 * i ? len - 32 * i : 0;
	return mask(l > 32 ? 32 : l);
}

/* policy4 returns the policy slot of an outbound IPv4 flow, 0 for none. */
static __always_inline __u32 policy4(struct policy_set *set, __u32 pod, __u32 dest)
{
	if (!(features & HAS_PODS4))
		return 0;
	__u32 bits = set->bits4, h = home(pod, bits), m = (1u << (bits & 31)) - 1;
	struct pod4 *p = NULL;
	for (int i = 0; i < MAX_PROBE; i++) {
		struct pod4 *q = &set->pods4[((h + i) & m) & (PODS4 - 1)];
		if (!q->n)
			return 0;
		if (q->addr == pod) {
			p = q;
			break;
		}
	}
	if (!p)
		return 0;
	__u32 first = p->first, n = p->n, tbits = p->bits;
	if (!tbits) {
		if (!(features & HAS_LISTS4))
			return 0;
		for (int j = 0; j < MAX_RULES; j++) {
			if (j >= n)
				return 0;
			struct rule4 *r = &set->rules4[(first + j) & (RULES4 - 1)];
			if ((dest & r->mask) == r->net)
				return r->flags & RULE_EXCLUDED ? 0 : r->policy;
		}
		return 0;
	}
	__u32 lens = p->lens, table = first + lens, tm = (1u << (tbits & 31)) - 1;
	for (int l = 0; l < MAX_LENS; l++) {
		if (l >= lens)
			return 0;
		__u32 m = l ? set->rules4[(first + l) & (RULES4 - 1)].mask : mask(p->top);
		__u32 net = dest & m, th = home(net ^ m, tbits);
		for (int i = 0; i < MAX_PROBE; i++) {
			struct rule4 *r = &set->rules4[(table + ((th + i) & tm)) & (RULES4 - 1)];
			if (!r->policy)
				break;
			if (r->net == net && r->mask == m)
				return r->flags & RULE_EXCLUDED ? 0 : r->policy;
		}
	}
	return 0;
}

/* policy6 is policy4 for IPv6. Addresses are compared whole, with one
 * branch instead of one per word: the verifier walks every iteration of
 * the bounded loops, and the branches of a word-by-word compare tripled
 * its work (and the programs' load time). */
static __always_inline __u32 policy6(struct policy_set *set, const __u32 *pod, const __u32 *dest)
{
	if (!(features & HAS_PODS6))
		return 0;
	__u32 p0 = pod[0], p1 = pod[1], p2 = pod[2], p3 = pod[3];
	__u32 d0 = dest[0], d1 = dest[1], d2 = dest[2], d3 = dest[3];
	__u32 bits = set->bits6, h = home(p0 ^ p1 ^ p2 ^ p3, bits), m = (1u << (bits & 31)) - 1;
	struct pod6 *p = NULL;
	for (int i = 0; i < MAX_PROBE; i++) {
		struct pod6 *q = &set->pods6[((h + i) & m) & (PODS6 - 1)];
		if (!q->n)
			return 0;
		if (!((q->addr[0] ^ p0) | (q->addr[1] ^ p1) | (q->addr[2] ^ p2) | (q->addr[3] ^ p3))) {
			p = q;
			break;
		}
	}
	if (!p)
		return 0;
	__u32 first = p->first, n = p->n, tbits = p->bits;
	if (!tbits) {
		if (!(features & HAS_LISTS6))
			return 0;
		for (int j = 0; j < MAX_RULES; j++) {
			if (j >= n)
				return 0;
			struct rule6 *r = &set->rules6[(first + j) & (RULES6 - 1)];
			if (!(((d0 & r->mask[0]) ^ r->net[0]) | ((d1 & r->mask[1]) ^ r->net[1]) |
			      ((d2 & r->mask[2]) ^ r->net[2]) | ((d3 & r->mask[3]) ^ r->net[3])))
				return r->flags & RULE_EXCLUDED ? 0 : r->policy;
		}
		return 0;
	}
	__u32 lens = p->lens, table = first + lens, tm = (1u << (tbits & 31)) - 1;
	for (int l = 0; l < MAX_LENS; l++) {
		if (l >= lens)
			return 0;
		__u32 m0, m1, m2, m3;
		if (l) {
			struct rule6 *len = &set->rules6[(first + l) & (RULES6 - 1)];
			m0 = len->mask[0], m1 = len->mask[1], m2 = len->mask[2], m3 = len->mask[3];
		} else {
			__u32 top = p->top;
			m0 = mask6(top, 0), m1 = mask6(top, 1), m2 = mask6(top, 2), m3 = mask6(top, 3);
		}
		__u32 n0 = d0 & m0, n1 = d1 & m1, n2 = d2 & m2, n3 = d3 & m3;
		__u32 th = home(n0 ^ n1 ^ n2 ^ n3 ^ m0 ^ m1 ^ m2 ^ m3, tbits);
		for (int i = 0; i < MAX_PROBE; i++) {
			struct rule6 *r = &set->rules6[(table + ((th + i) & tm)) & (RULES6 - 1)];
			if (!r->policy)
				break;
			if (!((r->net[0] ^ n0) | (r->net[1] ^ n1) | (r->net[2] ^ n2) | (r->net[3] ^ n3) |
			      (r->mask[0] ^ m0) | (r->mask[1] ^ m1) | (r->mask[2] ^ m2) | (r->mask[3] ^ m3)))
				return r->flags & RULE_EXCLUDED ? 0 : r->policy;
		}
	}
	return 0;
}

/* Cilium's CT and SNAT maps, bound at load time (userspace replaces these
 * one-entry placeholders with the pinned maps, their exact size and
 * flags): a program can delete only from a map it was loaded with. A node
 * without a SNAT map keeps its empty placeholder: lookups miss. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct ct_key4));
	__uint(value_size, sizeof(struct ct_entry));
} ct_tcp4 SEC(".maps"), ct_any4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct ct_key6));
	__uint(value_size, sizeof(struct ct_entry));
} ct_tcp6 SEC(".maps"), ct_any6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct ct_key4));
	__uint(value_size, sizeof(struct nat_entry4));
} snat4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct ct_key6));
	__uint(value_size, sizeof(struct nat_entry6));
} snat6 SEC(".maps");

/* account counts an entry of a policy slot (0: none) and returns the
 * statistics to charge when it has expired and must be handled (NULL
 * otherwise); *read is the lifetime it judged. mode is a constant of each
 * program (enum sweep_mode). */
static __always_inline struct sweep_stats *account(struct policy_set *set, __u32 slot, __u32 state,
						   struct ct_entry *v, __u32 *read, const __u32 mode)
{
	__u32 t = now;
	__u32 lifetime = v->lifetime;
	if (slot >= MAX_POLICIES)
		slot = 0;
	__u32 idx = slot * NSTATES + state;
	struct sweep_stats *s = bpf_map_lookup_elem(&egwct_sweep, &idx);
	if (!s)
		return NULL;

	/* Every packet sets lifetime = now + node timeout: the last one was
	 * at lifetime - node timeout. */
	__s32 idle = (__s32)(t - (lifetime - node_timeout[state & (NSTATES - 1)]));
	/* The bucket is the number of buckets whose first idle time (a
	 * bound plus one: a bound belongs to the bucket below it, as
	 * Prometheus' le says) idle has reached, counted without a branch:
	 * idle times are in no order, and a mispredicted branch per bound
	 * cost more than the arithmetic (64-bit, so that no difference of
	 * two 32-bit values overflows). */
	__u64 b = 0;
#pragma unroll
	for (int i = 0; i < NBUCKETS - 1; i++)
		b += 1 ^ ((__u64)((__s64)idle - (__s64)(__s32)idle_bucket[i]) >> 63);
	s->idle[b & (NBUCKETS - 1)]++;

	if (!slot || !set)
		return NULL;
	__u32 limit = set->timeout[slot][state & (NSTATES - 1)];
	if (!limit || idle < (__s32)limit)
		return NULL;

	if (mode == MODE_MARK && (__s32)(lifetime - t) < 0)
		return NULL; /* already expired: Cilium's GC collects it anyway */
	s->expired++;
	if (mode == MODE_MARK) {
		/* Expire it for Cilium's GC (lifetime < now), unless the
		 * datapath refreshed it since we read it. */
		__sync_val_compare_and_swap(&v->lifetime, lifetime, t - 1);
		return NULL;
	}
	*read = lifetime;
	return s;
}

/* reclaim4 deletes an expired IPv4 entry of map ct, unless the datapath
 * refreshed it since it was judged, then its SNAT egress entry (the CT key
 * with the addresses swapped) and reverse entry (built from the egress
 * entry's translated address and port). The key is copied first: once
 * deleted, an LRU element may be reused at once by another CPU. */
static __always_inline void reclaim4(void *ct, const struct ct_key4 *k, struct ct_entry *v,
				     __u32 lifetime, struct sweep_stats *s)
{
	struct ct_key4 key = *k;
	if (v->lifetime != lifetime || bpf_map_delete_elem(ct, &key)) {
		s->refreshed++;
		return;
	}
	s->deleted_ct++;
	struct ct_key4 egress = key;
	egress.pod = key.dest;
	egress.dest = key.pod;
	struct nat_entry4 *e = bpf_map_lookup_elem(&snat4, &egress);
	if (!e)
		return;
	struct ct_key4 rev = {
		.pod = e->to_addr, .dest = key.dest, .dport = e->to_port, .sport = key.dport,
		.nexthdr = key.nexthdr, .flags = TUPLE_F_IN,
	};
	if (!bpf_map_delete_elem(&snat4, &rev))
		s->deleted_nat++;
	if (!bpf_map_delete_elem(&snat4, &egress))
		s->deleted_nat++;
}

/* reclaim6 is reclaim4 for IPv6. */
static __always_inline void reclaim6(void *ct, const struct ct_key6 *k, struct ct_entry *v,
				     __u32 lifetime, struct sweep_stats *s)
{
	struct ct_key6 key = *k;
	if (v->lifetime != lifetime || bpf_map_delete_elem(ct, &key)) {
		s->refreshed++;
		return;
	}
	s->deleted_ct++;
	struct ct_key6 egress = key;
	__builtin_memcpy(egress.pod, key.dest, sizeof(egress.pod));
	__builtin_memcpy(egress.dest, key.pod, sizeof(egress.dest));
	struct nat_entry6 *e = bpf_map_lookup_elem(&snat6, &egress);
	if (!e)
		return;
	struct ct_key6 rev = {};
	__builtin_memcpy(rev.pod, e->to_addr, sizeof(rev.pod));
	__builtin_memcpy(rev.dest, key.dest, sizeof(rev.dest));
	rev.dport = e->to_port;
	rev.sport = key.dport;
	rev.nexthdr = key.nexthdr;
	rev.flags = TUPLE_F_IN;
	if (!bpf_map_delete_elem(&snat6, &rev))
		s->deleted_nat++;
	if (!bpf_map_delete_elem(&snat6, &egress))
		s->deleted_nat++;
}

/* word is the i-th 32-bit word of a CT key. The keys are packed structs,
 * whose members the compiler loads a byte at a time; in the map's element
 * (and the iterator's buffer) a key is 8-byte aligned, so its address
 * words are loaded whole. */
static __always_inline __u32 word(const void *k, int i)
{
	return ((const __u32 *)k)[i];
}

/* judge4 judges one entry of the IPv4 CT map ct with the policy set in
 * force (NULL: none) and handles it. */
static __always_inline void judge4(void *ct, struct policy_set *set, struct ct_key4 *k, struct ct_entry *v,
				   const __u32 mode)
{
	__u32 slot = 0, lifetime = 0;
	if (set && k->flags == TUPLE_F_OUT)
		slot = policy4(set, word(k, 0), word(k, 1));
	struct sweep_stats *s = account(set, slot, classify(k->nexthdr, v->flags), v, &lifetime, mode);
	if (s)
		reclaim4(ct, k, v, lifetime, s);
}

static __always_inline void judge6(void *ct, struct policy_set *set, struct ct_key6 *k, struct ct_entry *v,
				   const __u32 mode)
{
	__u32 slot = 0, lifetime = 0;
	if (set && k->flags == TUPLE_F_OUT) {
		__u32 pod[4] = {word(k, 0), word(k, 1), word(k, 2), word(k, 3)};
		__u32 dest[4] = {word(k, 4), word(k, 5), word(k, 6), word(k, 7)};
		slot = policy6(set, pod, dest);
	}
	struct sweep_stats *s = account(set, slot, classify(k->nexthdr, v->flags), v, &lifetime, mode);
	if (s)
		reclaim6(ct, k, v, lifetime, s);
}

/* One iterator program and one bpf_for_each_map_elem program per CT map
 * and mode: a program deletes only from the map it was loaded with, and a
 * call site of bpf_for_each_map_elem must always see the same map (older
 * verifiers reject a merged call). Mark mode's compare-and-swap
 * (BPF_CMPXCHG, kernel 5.12) is only in the mark programs: kernels before
 * 5.12 refuse a program whose text holds it even where a constant makes
 * it unreachable ("BPF_STX uses reserved fields"), and the reclaim
 * programs still load there. The iterator engine attaches
 * iter_[mark_]<map> to the map; the foreach engine runs
 * sweep_all_[mark_]<map> with BPF_PROG_RUN: cheaper per entry than the
 * iterator, but it holds the CPU for the whole map. sweep_all looks the
 * policy set up once and hands it to every callback (the whole run holds
 * the RCU read lock, so the set a concurrent swap replaces stays valid to
 * its end, and the sweep judges every entry with one set); the iterator
 * looks it up per element. */
struct walk {
	struct policy_set *set;
};

#define ENGINE(name, fam, mode, prefix)                                           \
	SEC("iter/bpf_map_elem")                                                  \
	int iter_##prefix##name(struct bpf_iter__bpf_map_elem *ctx)               \
	{                                                                         \
		struct ct_key##fam *k = ctx->key;                                 \
		struct ct_entry *v = ctx->value;                                  \
		if (k && v)                                                       \
			judge##fam(&ct_##name, current_set(), k, v, mode);        \
		return 0;                                                         \
	}                                                                         \
	static long visit_##prefix##name(struct bpf_map *map, struct ct_key##fam *k, \
					 struct ct_entry *v, struct walk *w)      \
	{                                                                         \
		judge##fam(&ct_##name, w->set, k, v, mode);                       \
		return 0;                                                         \
	}                                                                         \
	SEC("raw_tp")                                                             \
	int sweep_all_##prefix##name(void *ctx)                                   \
	{                                                                         \
		struct walk w = {.set = current_set()};                           \
		bpf_for_each_map_elem(&ct_##name, visit_##prefix##name, &w, 0);   \
		return 0;                                                         \
	}

#define ENGINES(name, fam)                   \
	ENGINE(name, fam, MODE_RECLAIM, )    \
	ENGINE(name, fam, MODE_MARK, mark_)

ENGINES(tcp4, 4)
ENGINES(any4, 4)
ENGINES(tcp6, 6)
ENGINES(any6, 6)

/* The cost of the walk alone: bpf_for_each_map_elem over the TCP map with
 * a callback that does nothing. The benchmarks report it beside the
 * sweep's, as the floor no judgement can go below (what a callback's
 * instructions add to it: bpf/walkcost.bpf.c, a test-only object). */
static long nothing(struct bpf_map *map, void *k, void *v, void *ctx)
{
	return 0;
}

SEC("raw_tp")
int walk_only(void *ctx)
{
	bpf_for_each_map_elem(&ct_tcp4, nothing, NULL, 0);
	return 0;
}
