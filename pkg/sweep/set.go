package sweep

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"sort"
	"unsafe"
)

// The policy set as the sweeper reads it: struct policy_set of
// bpf/sweep.bpf.c (sweeperPolicySet, generated from the program's BTF),
// one array value swapped in with one update. For each address family an
// open-addressing table of the pods with rules (linear probing from a
// multiplicative hash of the address) and each pod's block of rules: a
// table of its rules by prefix (its prefix lengths, then an
// open-addressing table), or where that does not fit a list of its rules,
// longest destination prefix first (the program's comment on struct
// policy_set says why). The limits are the
// program's enum set_limit; they stay untyped constants here, and a
// difference from the program does not compile (below).
const (
	MaxPolicies = 4096    // policy slots, 0 is "no policy"
	MaxRules    = 256     // destination CIDRs of one pod, over all policies
	MaxKeys     = 1 << 16 // IPv4 (pod, destination CIDR) keys
	MaxKeys6    = 1 << 15 // IPv6 keys
	MaxPods     = 1 << 15 // IPv4 pods with rules: half the table's slots
	MaxPods6    = 1 << 14 // IPv6 pods with rules

	maxProbe     = uint32(sweeperSetLimitMAX_PROBE) // a pod, or a rule of a pod's table, lies at most this many slots from its home
	maxLens      = uint32(sweeperSetLimitMAX_LENS)  // prefix lengths of a pod's table
	ruleExcluded = uint32(sweeperSetLimitRULE_EXCLUDED)
	golden       = 0x9e3779b1 // GOLDEN
)

// Each index is 0 exactly when the constant is the program's.
var _ = [1]struct{}{}[MaxPolicies-int(sweeperSetLimitMAX_POLICIES)]
var _ = [1]struct{}{}[MaxRules-int(sweeperSetLimitMAX_RULES)]
var _ = [1]struct{}{}[MaxKeys-len(sweeperPolicySet{}.Rules4)]
var _ = [1]struct{}{}[MaxKeys6-len(sweeperPolicySet{}.Rules6)]
var _ = [1]struct{}{}[2*MaxPods-len(sweeperPolicySet{}.Pods4)]
var _ = [1]struct{}{}[2*MaxPods6-len(sweeperPolicySet{}.Pods6)]
var _ = [1]struct{}{}[MaxPolicies-len(sweeperPolicySet{}.Timeout)]

var le = binary.LittleEndian

// maxTableBits bounds a pod's table to 1 << maxTableBits slots; a pod
// whose rules no such table places gets a list. Tests set it to 0 to
// build lists only.
var maxTableBits = uint(10)

// home is the first table slot of a hashed address in a table of 1<<bits
// slots, as the program computes it.
func home(h uint32, bits uint) uint32 { return uint32(uint64(h*golden) << bits >> 32) }

// addrHash is what the program hashes: the address's first 32-bit word,
// or the four words xored for IPv6.
func addrHash(words []uint32) uint32 {
	h := uint32(0)
	for _, w := range words {
		h ^= w
	}
	return h
}

// words are an address (or a mask) in network order as the program loads
// it: 32-bit little-endian words.
func words(b []byte) []uint32 {
	w := make([]uint32, len(b)/4)
	for i := range w {
		w[i] = le.Uint32(b[4*i:])
	}
	return w
}

// wordBytes is the inverse of words.
func wordBytes(w []uint32) []byte {
	b := make([]byte, 4*len(w))
	for i, x := range w {
		le.PutUint32(b[4*i:], x)
	}
	return b
}

// family is one address family's part of the set: its limits and its
// fields of sweeperPolicySet.
type family struct {
	name             string
	slots            int // pod table slots
	maxKeys, maxPods int
	bits             func(*sweeperPolicySet) *uint32
	clearPods        func(*sweeperPolicySet)
	// pod and rule are the fields of a table slot and of a rule; an
	// address or mask is its 32-bit words.
	pod  func(s *sweeperPolicySet, i int) (addr []uint32, first, n *uint16, lens, bits, top *uint8)
	rule func(s *sweeperPolicySet, i int) (net, mask []uint32, policy, flags *uint16)
}

var (
	fam4 = family{
		name: "IPv4", slots: len(sweeperPolicySet{}.Pods4), maxKeys: MaxKeys, maxPods: MaxPods,
		bits:      func(s *sweeperPolicySet) *uint32 { return &s.Bits4 },
		clearPods: func(s *sweeperPolicySet) { clear(s.Pods4[:]) },
		pod: func(s *sweeperPolicySet, i int) ([]uint32, *uint16, *uint16, *uint8, *uint8, *uint8) {
			p := &s.Pods4[i]
			return unsafe.Slice(&p.Addr, 1), &p.First, &p.N, &p.Lens, &p.Bits, &p.Top
		},
		rule: func(s *sweeperPolicySet, i int) ([]uint32, []uint32, *uint16, *uint16) {
			r := &s.Rules4[i]
			return unsafe.Slice(&r.Net, 1), unsafe.Slice(&r.Mask, 1), &r.Policy, &r.Flags
		},
	}
	fam6 = family{
		name: "IPv6", slots: len(sweeperPolicySet{}.Pods6), maxKeys: MaxKeys6, maxPods: MaxPods6,
		bits:      func(s *sweeperPolicySet) *uint32 { return &s.Bits6 },
		clearPods: func(s *sweeperPolicySet) { clear(s.Pods6[:]) },
		pod: func(s *sweeperPolicySet, i int) ([]uint32, *uint16, *uint16, *uint8, *uint8, *uint8) {
			p := &s.Pods6[i]
			return p.Addr[:], &p.First, &p.N, &p.Lens, &p.Bits, &p.Top
		},
		rule: func(s *sweeperPolicySet, i int) ([]uint32, []uint32, *uint16, *uint16) {
			r := &s.Rules6[i]
			return r.Net[:], r.Mask[:], &r.Policy, &r.Flags
		},
	}
)

func familyOf(a netip.Addr) *family {
	if a.Is4() {
		return &fam4
	}
	return &fam6
}

func addrBytes(a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return b[:]
	}
	b := a.As16()
	return b[:]
}

// maskBytes is the prefix's mask in network order.
func maskBytes(bits, n int) []byte {
	m := make([]byte, n)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// setRule is one rule of a pod: a destination prefix of a policy slot.
type setRule struct {
	dest     netip.Prefix
	slot     uint16
	excluded bool
}

// encodeSet builds the value of struct policy_set for a policy set
// (slots 1..len(set) in order). Keys whose pod and destination are of
// different families never match a flow and are left out.
func encodeSet(set []Policy) (*sweeperPolicySet, error) {
	if len(set) >= MaxPolicies {
		return nil, fmt.Errorf("%d policies; egwct holds at most %d", len(set), MaxPolicies-1)
	}
	byPod := map[netip.Addr][]setRule{}
	keys := map[*family]int{}
	for i, p := range set {
		for _, k := range p.Keys {
			if k.Pod.Is4() != k.Dest.Addr().Is4() {
				continue
			}
			byPod[k.Pod] = append(byPod[k.Pod], setRule{k.Dest.Masked(), uint16(i + 1), k.Excluded})
			keys[familyOf(k.Pod)]++
		}
	}
	pods := map[*family][]netip.Addr{}
	for pod := range byPod {
		f := familyOf(pod)
		pods[f] = append(pods[f], pod)
	}
	for _, f := range []*family{&fam4, &fam6} {
		if keys[f] > f.maxKeys {
			return nil, fmt.Errorf("%d %s (pod, CIDR) keys; egwct holds at most %d", keys[f], f.name, f.maxKeys)
		}
		if len(pods[f]) > f.maxPods {
			return nil, fmt.Errorf("%d %s pods; egwct holds at most %d", len(pods[f]), f.name, f.maxPods)
		}
	}

	v := new(sweeperPolicySet)
	v.Policies = uint32(len(set))
	for i, p := range set {
		v.Timeout[i+1] = p.Timeouts
	}
	for _, f := range []*family{&fam4, &fam6} {
		ps := pods[f]
		sort.Slice(ps, func(i, j int) bool { return ps[i].Less(ps[j]) })
		blocks := make(map[netip.Addr]block, len(ps))
		next, rest := 0, keys[f]
		for _, pod := range ps {
			rs := byPod[pod]
			if len(rs) > MaxRules {
				return nil, fmt.Errorf("pod %s has %d destination CIDRs over all its policies; egwct holds at most %d per pod", pod, len(rs), MaxRules)
			}
			// Longest prefix first: a list's first rule that holds the
			// destination is the match, a table's lengths are tried in
			// this order.
			sort.SliceStable(rs, func(i, j int) bool { return rs[i].dest.Bits() > rs[j].dest.Bits() })
			rest -= len(rs)
			// A table where it fits beside the lists of the pods still
			// to place (a list takes one entry per rule: they always fit).
			b := f.table(rs)
			if b.bits == 0 || next+len(b.entries)+rest > f.maxKeys {
				b = block{entries: rs}
			}
			b.first = next
			for _, r := range b.entries {
				if r.slot != 0 || b.bits == 0 {
					f.putRule(v, next, r)
				} else {
					// An empty table slot, or a length: only its mask.
					_, mask, _, _ := f.rule(v, next)
					copy(mask, words(maskBytes(r.dest.Bits(), len(addrBytes(r.dest.Addr())))))
				}
				next++
			}
			blocks[pod] = b
		}
		if err := f.place(v, ps, blocks); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// block is a pod's entries in the rules array: a table (bits > 0) or a
// list (bits == 0) of rules, from index first.
type block struct {
	first   int
	bits    uint
	lens    int
	entries []setRule // a table: its lengths (only dest.Bits() used), then its slots (slot 0: empty)
}

// putRule writes a rule at index i of the family's rules.
func (f *family) putRule(v *sweeperPolicySet, i int, r setRule) {
	net, mask, policy, flags := f.rule(v, i)
	a := addrBytes(r.dest.Addr())
	copy(net, words(a))
	copy(mask, words(maskBytes(r.dest.Bits(), len(a))))
	*policy = r.slot
	if r.excluded {
		*flags = uint16(ruleExcluded)
	}
}

// lenMask is the i-th word of the mask of a prefix length, as the
// program computes it for a table's longest length.
func lenMask(bits, i int) uint32 {
	l := min(max(bits-32*i, 0), 32)
	return words(maskBytes(l, 4))[0]
}

// tableHome is the home slot of a prefix in a pod's table of 1<<bits
// slots, as the program computes it: the hash of the prefix's and the
// mask's words.
func tableHome(net, mask []uint32, bits uint) uint32 {
	return home(addrHash(net)^addrHash(mask), bits)
}

// table builds a pod's table for its rules (longest prefix first): the
// masks of its prefix lengths, longest first, then the smallest table at
// most half full in which every rule lies within maxProbe slots of its
// home. Of two rules of the same prefix the first is kept, as a list's
// scan would match it first. bits is 0 when the pod has more than
// maxLens prefix lengths or no table up to 1 << maxTableBits slots places
// every rule.
func (f *family) table(rs []setRule) block {
	var b block
	var uniq []setRule
	seen := map[netip.Prefix]bool{}
	for _, r := range rs {
		if seen[r.dest] {
			continue
		}
		seen[r.dest] = true
		if len(uniq) == 0 || uniq[len(uniq)-1].dest.Bits() != r.dest.Bits() {
			b.entries = append(b.entries, setRule{dest: netip.PrefixFrom(r.dest.Addr(), r.dest.Bits())})
			b.lens++
		}
		uniq = append(uniq, r)
	}
	if b.lens > int(maxLens) {
		return block{}
	}
	for bits := uint(1); bits <= maxTableBits; bits++ {
		size := 1 << bits
		if size < 2*len(uniq) {
			continue
		}
		slots := make([]setRule, size)
		placed := true
		for _, r := range uniq {
			a := addrBytes(r.dest.Addr())
			h := tableHome(words(a), words(maskBytes(r.dest.Bits(), len(a))), bits)
			ok := false
			for i := uint32(0); i < maxProbe && int(i) < size; i++ {
				if s := &slots[(h+i)&uint32(size-1)]; s.slot == 0 {
					*s, ok = r, true
					break
				}
			}
			if !ok {
				placed = false
				break
			}
		}
		if placed {
			// Empty slots carry the table's first length, so that every
			// entry has a valid prefix: only policy 0 marks them empty.
			for i := range slots {
				if slots[i].slot == 0 {
					slots[i].dest = b.entries[0].dest
				}
			}
			b.bits = bits
			b.entries = append(b.entries, slots...)
			return b
		}
	}
	return block{}
}

// place fills the family's pod table: the smallest table at most half
// full in which every pod lies within maxProbe slots of its home.
func (f *family) place(v *sweeperPolicySet, pods []netip.Addr, blocks map[netip.Addr]block) error {
	bits := uint(0)
	for 1<<bits < 2*len(pods) {
		bits++
	}
	for ; 1<<bits <= f.slots; bits++ {
		f.clearPods(v)
		if f.fill(v, bits, pods, blocks) {
			*f.bits(v) = uint32(bits)
			return nil
		}
	}
	return fmt.Errorf("%d %s pods: no table places every pod within %d slots of its home", len(pods), f.name, maxProbe)
}

func (f *family) fill(v *sweeperPolicySet, bits uint, pods []netip.Addr, blocks map[netip.Addr]block) bool {
	mask := uint32(1)<<bits - 1
	for _, pod := range pods {
		a := words(addrBytes(pod))
		h := home(addrHash(a), bits)
		b := blocks[pod]
		placed := false
		for i := uint32(0); i < maxProbe; i++ {
			addr, first, n, lens, tbits, top := f.pod(v, int((h+i)&mask))
			if *n != 0 {
				continue
			}
			copy(addr, a)
			*first, *n, *lens, *tbits = uint16(b.first), uint16(len(b.entries)), uint8(b.lens), uint8(b.bits)
			if b.bits != 0 {
				*top = uint8(b.entries[0].dest.Bits())
			}
			placed = true
			break
		}
		if !placed {
			return false
		}
	}
	return true
}

// decodeSet reads the keys of a policy set value back, with their slot,
// timeouts and flags.
func decodeSet(v *sweeperPolicySet) map[Key]policyVal {
	out := map[Key]policyVal{}
	for _, f := range []*family{&fam4, &fam6} {
		for s := 0; s < f.slots; s++ {
			addr, first, n, lens, tbits, _ := f.pod(v, s)
			if *n == 0 {
				continue
			}
			pod, _ := netip.AddrFromSlice(wordBytes(addr))
			from := int(*first)
			if *tbits != 0 {
				from += int(*lens) // a table: its rules after its lengths
			}
			for j := from; j < int(*first)+int(*n) && j < f.maxKeys; j++ {
				net, mask, policy, flags := f.rule(v, j)
				if *tbits != 0 && *policy == 0 {
					continue // an empty slot
				}
				addr, _ := netip.AddrFromSlice(wordBytes(net))
				ones := 0
				for _, m := range mask {
					ones += bits.OnesCount32(m)
				}
				pv := policyVal{ID: uint32(*policy), Flags: uint32(*flags)}
				if pv.ID < MaxPolicies {
					pv.Timeout = v.Timeout[pv.ID]
				}
				out[Key{Pod: pod, Dest: netip.PrefixFrom(addr, ones), Excluded: pv.Flags&ruleExcluded != 0}] = pv
			}
		}
	}
	return out
}
