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
// multiplicative hash of the address) and each pod's rules, longest
// destination prefix first, one after the other. The limits are the
// program's enum set_limit; they stay untyped constants here, and a
// difference from the program does not compile (below).
const (
	MaxPolicies = 4096    // policy slots, 0 is "no policy"
	MaxRules    = 256     // destination CIDRs of one pod, over all policies
	MaxKeys     = 1 << 16 // IPv4 (pod, destination CIDR) keys
	MaxKeys6    = 1 << 15 // IPv6 keys
	MaxPods     = 1 << 15 // IPv4 pods with rules: half the table's slots
	MaxPods6    = 1 << 14 // IPv6 pods with rules

	maxProbe     = uint32(sweeperSetLimitMAX_PROBE) // a pod lies at most this many slots from its home
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
	pod  func(s *sweeperPolicySet, i int) (addr []uint32, first, n *uint16)
	rule func(s *sweeperPolicySet, i int) (net, mask []uint32, policy, flags *uint16)
}

var (
	fam4 = family{
		name: "IPv4", slots: len(sweeperPolicySet{}.Pods4), maxKeys: MaxKeys, maxPods: MaxPods,
		bits:      func(s *sweeperPolicySet) *uint32 { return &s.Bits4 },
		clearPods: func(s *sweeperPolicySet) { clear(s.Pods4[:]) },
		pod: func(s *sweeperPolicySet, i int) ([]uint32, *uint16, *uint16) {
			p := &s.Pods4[i]
			return unsafe.Slice(&p.Addr, 1), &p.First, &p.N
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
		pod: func(s *sweeperPolicySet, i int) ([]uint32, *uint16, *uint16) {
			p := &s.Pods6[i]
			return p.Addr[:], &p.First, &p.N
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
		next := 0
		for _, pod := range ps {
			rs := byPod[pod]
			if len(rs) > MaxRules {
				return nil, fmt.Errorf("pod %s has %d destination CIDRs over all its policies; egwct holds at most %d per pod", pod, len(rs), MaxRules)
			}
			// Longest prefix first: the program takes the first rule
			// that holds the destination.
			sort.SliceStable(rs, func(i, j int) bool { return rs[i].dest.Bits() > rs[j].dest.Bits() })
			for _, r := range rs {
				net, mask, policy, flags := f.rule(v, next)
				a := addrBytes(r.dest.Addr())
				copy(net, words(a))
				copy(mask, words(maskBytes(r.dest.Bits(), len(a))))
				*policy = r.slot
				if r.excluded {
					*flags = uint16(ruleExcluded)
				}
				next++
			}
		}
		if err := f.place(v, ps, byPod); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// place fills the family's pod table: the smallest table at most half
// full in which every pod lies within maxProbe slots of its home.
func (f *family) place(v *sweeperPolicySet, pods []netip.Addr, byPod map[netip.Addr][]setRule) error {
	bits := uint(0)
	for 1<<bits < 2*len(pods) {
		bits++
	}
	for ; 1<<bits <= f.slots; bits++ {
		f.clearPods(v)
		if f.fill(v, bits, pods, byPod) {
			*f.bits(v) = uint32(bits)
			return nil
		}
	}
	return fmt.Errorf("%d %s pods: no table places every pod within %d slots of its home", len(pods), f.name, maxProbe)
}

func (f *family) fill(v *sweeperPolicySet, bits uint, pods []netip.Addr, byPod map[netip.Addr][]setRule) bool {
	mask := uint32(1)<<bits - 1
	first := 0
	for _, pod := range pods {
		a := words(addrBytes(pod))
		h := home(addrHash(a), bits)
		placed := false
		for i := uint32(0); i < maxProbe; i++ {
			addr, pfirst, n := f.pod(v, int((h+i)&mask))
			if *n != 0 {
				continue
			}
			copy(addr, a)
			*pfirst, *n = uint16(first), uint16(len(byPod[pod]))
			placed = true
			break
		}
		if !placed {
			return false
		}
		first += len(byPod[pod])
	}
	return true
}

// decodeSet reads the keys of a policy set value back, with their slot,
// timeouts and flags.
func decodeSet(v *sweeperPolicySet) map[Key]policyVal {
	out := map[Key]policyVal{}
	for _, f := range []*family{&fam4, &fam6} {
		for s := 0; s < f.slots; s++ {
			addr, first, n := f.pod(v, s)
			if *n == 0 {
				continue
			}
			pod, _ := netip.AddrFromSlice(wordBytes(addr))
			for j := int(*first); j < int(*first)+int(*n) && j < f.maxKeys; j++ {
				net, mask, policy, flags := f.rule(v, j)
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
