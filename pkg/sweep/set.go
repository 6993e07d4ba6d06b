package sweep

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
)

// The policy set as the sweeper reads it: struct policy_set of
// bpf/sweep.bpf.c, one array value swapped in with one update. For each
// address family an open-addressing table of the pods with rules (linear
// probing from a multiplicative hash of the address) and each pod's rules,
// longest destination prefix first, one after the other.
const (
	MaxPolicies = 4096    // policy slots, 0 is "no policy"
	MaxRules    = 256     // destination CIDRs of one pod, over all policies
	MaxKeys     = 1 << 16 // IPv4 (pod, destination CIDR) keys
	MaxKeys6    = 1 << 15 // IPv6 keys
	MaxPods     = 1 << 15 // IPv4 pods with rules: half the table's slots
	MaxPods6    = 1 << 14 // IPv6 pods with rules

	pods4Slots = 2 * MaxPods
	pods6Slots = 2 * MaxPods6
	maxProbe   = 16 // MAX_PROBE: a pod lies at most this many slots from its home
	golden     = 0x9e3779b1

	pod4Size, pod6Size   = 8, 20
	rule4Size, rule6Size = 12, 36
	offPolicies          = 8
	offTimeout           = 16
	offPods4             = offTimeout + MaxPolicies*16
	offPods6             = offPods4 + pods4Slots*pod4Size
	offRules4            = offPods6 + pods6Slots*pod6Size
	offRules6            = offRules4 + MaxKeys*rule4Size
	setSize              = offRules6 + MaxKeys6*rule6Size

	ruleExcluded = 1
)

var le = binary.LittleEndian

// home is the first table slot of a hashed address in a table of 1<<bits
// slots, as the program computes it.
func home(h uint32, bits uint) uint32 { return uint32(uint64(h*golden) << bits >> 32) }

// addrHash is what the program hashes: the address's first 32-bit word as
// it loads it (little-endian), or the four words xored for IPv6.
func addrHash(a []byte) uint32 {
	h := uint32(0)
	for i := 0; i < len(a); i += 4 {
		h ^= le.Uint32(a[i:])
	}
	return h
}

// family is one address family's part of the set.
type family struct {
	name                        string
	addrLen                     int
	offBits                     int
	offPods, podSize, maxSlots  int
	offRules, ruleSize, maxKeys int
	maxPods                     int
}

var (
	fam4 = family{"IPv4", 4, 0, offPods4, pod4Size, pods4Slots, offRules4, rule4Size, MaxKeys, MaxPods}
	fam6 = family{"IPv6", 16, 4, offPods6, pod6Size, pods6Slots, offRules6, rule6Size, MaxKeys6, MaxPods6}
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
func encodeSet(set []Policy) ([]byte, error) {
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

	b := make([]byte, setSize)
	le.PutUint32(b[offPolicies:], uint32(len(set)))
	for i, p := range set {
		for st, t := range p.Timeouts {
			le.PutUint32(b[offTimeout+(i+1)*16+st*4:], t)
		}
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
				o := f.offRules + next*f.ruleSize
				copy(b[o:], addrBytes(r.dest.Addr()))
				copy(b[o+f.addrLen:], maskBytes(r.dest.Bits(), f.addrLen))
				le.PutUint16(b[o+2*f.addrLen:], r.slot)
				if r.excluded {
					le.PutUint16(b[o+2*f.addrLen+2:], ruleExcluded)
				}
				next++
			}
		}
		if err := f.place(b, ps, byPod); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// place fills the family's pod table: the smallest table at most half
// full in which every pod lies within maxProbe slots of its home.
func (f *family) place(b []byte, pods []netip.Addr, byPod map[netip.Addr][]setRule) error {
	bits := uint(0)
	for 1<<bits < 2*len(pods) {
		bits++
	}
	for ; 1<<bits <= f.maxSlots; bits++ {
		table := b[f.offPods : f.offPods+f.maxSlots*f.podSize]
		clear(table)
		if f.fill(table, bits, pods, byPod) {
			le.PutUint32(b[f.offBits:], uint32(bits))
			return nil
		}
	}
	return fmt.Errorf("%d %s pods: no table places every pod within %d slots of its home", len(pods), f.name, maxProbe)
}

func (f *family) fill(table []byte, bits uint, pods []netip.Addr, byPod map[netip.Addr][]setRule) bool {
	mask := uint32(1)<<bits - 1
	first := 0
	for _, pod := range pods {
		a := addrBytes(pod)
		h := home(addrHash(a), bits)
		placed := false
		for i := uint32(0); i < maxProbe; i++ {
			o := int((h+i)&mask) * f.podSize
			if le.Uint16(table[o+f.addrLen+2:]) != 0 {
				continue
			}
			copy(table[o:], a)
			le.PutUint16(table[o+f.addrLen:], uint16(first))
			le.PutUint16(table[o+f.addrLen+2:], uint16(len(byPod[pod])))
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
func decodeSet(b []byte) (map[Key]policyVal, error) {
	if len(b) != setSize {
		return nil, fmt.Errorf("policy set: %d bytes, want %d", len(b), setSize)
	}
	out := map[Key]policyVal{}
	for _, f := range []*family{&fam4, &fam6} {
		for s := 0; s < f.maxSlots; s++ {
			o := f.offPods + s*f.podSize
			n := int(le.Uint16(b[o+f.addrLen+2:]))
			if n == 0 {
				continue
			}
			pod, _ := netip.AddrFromSlice(b[o : o+f.addrLen])
			first := int(le.Uint16(b[o+f.addrLen:]))
			for j := first; j < first+n && j < f.maxKeys; j++ {
				r := b[f.offRules+j*f.ruleSize:]
				net, _ := netip.AddrFromSlice(r[:f.addrLen])
				ones := 0
				for _, x := range r[f.addrLen : 2*f.addrLen] {
					for ; x&0x80 != 0; x <<= 1 {
						ones++
					}
				}
				id := uint32(le.Uint16(r[2*f.addrLen:]))
				flags := uint32(le.Uint16(r[2*f.addrLen+2:]))
				v := policyVal{ID: id, Flags: flags}
				if id < MaxPolicies {
					for st := range v.Timeout {
						v.Timeout[st] = le.Uint32(b[offTimeout+int(id)*16+st*4:])
					}
				}
				out[Key{Pod: pod, Dest: netip.PrefixFrom(net, ones), Excluded: flags&ruleExcluded != 0}] = v
			}
		}
	}
	return out, nil
}
