package sweep

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/egwct/egwct/pkg/ctmap"
)

// The userspace engine: the program's judgement (bpf/sweep.bpf.c: the
// policy lookup in the same policy-set value, classify, account) in Go,
// over batch reads of each CT map. It needs map access only. What it
// cannot do as the program does is change an entry atomically: a mark is
// a compare-before-write (the entry is read again and written back with
// the new lifetime only if its lifetime is still the one judged), and a
// reclaim reads the entry again and deletes it only if its lifetime is
// unchanged, then its two SNAT entries. Between the read and the write
// or delete there is a window of a system call, as in Cilium's own GC.

// Offsets in Cilium's CT key and entry (pinned by the program's
// _Static_asserts and checkLayout).
const (
	entryLifetime = 32
	entryFlags    = 36
)

// sweepUserspace judges every entry of the CT maps and handles the
// expired ones by the mode, counting as the program does.
func (s *Sweeper) sweepUserspace(res *Result, now uint32) error {
	set, err := s.state.setInForce()
	if err != nil {
		return err
	}
	var val ctmap.CTEntry
	for _, t := range s.targets {
		nat := s.nat[famIndex(t.fam)]
		err := t.m.Walk(func(k, v []byte) error {
			n := len(k)
			slot := uint32(0)
			if set != nil && k[n-1] == uint8(sweeperCtConstTUPLE_F_OUT) {
				if t.fam == 4 {
					slot = set.policy4(le.Uint32(k[0:]), le.Uint32(k[4:]))
				} else {
					slot = set.policy6(k[0:16], k[16:32])
				}
			}
			state := classify(k[n-2], le.Uint16(v[entryFlags:]))
			lifetime := le.Uint32(v[entryLifetime:])
			if slot >= MaxPolicies {
				slot = 0
			}
			if res.Counts[slot] == nil {
				res.Counts[slot] = new([4]Counts)
			}
			c := &res.Counts[slot][state]
			idle := int32(now - (lifetime - s.node[state]))
			c.Seen++
			res.Entries++
			b := 0
			for i, bound := range s.buckets {
				if idle >= int32(bound) {
					b = i + 1
				}
			}
			c.Idle[b]++
			if slot == 0 {
				return nil
			}
			limit := set.Timeout[slot][state]
			if limit == 0 || idle < int32(limit) {
				return nil
			}
			if s.cfg.Mode == Mark && int32(lifetime-now) < 0 {
				return nil // already expired: Cilium's GC collects it anyway
			}
			c.Expired++
			if s.judged != nil {
				s.judged(k)
			}
			if s.cfg.Mode == Mark {
				return markIfUnchanged(t.m, k, &val, lifetime, now-1)
			}
			deleted, err := s.deleteCT(t.m, k, lifetime)
			if err != nil {
				return err
			}
			if !deleted {
				c.Refreshed++
				return nil
			}
			c.DeletedCT++
			nd, err := s.deleteNAT(nat, k)
			c.DeletedNAT += nd
			return err
		})
		if err != nil {
			return fmt.Errorf("sweep %s: %w", t.m.Spec.Name, err)
		}
	}
	// Only slots that saw entries are reported, as collect does.
	for slot, cs := range res.Counts {
		empty := true
		for _, c := range cs {
			empty = empty && c.Seen == 0
		}
		if empty {
			delete(res.Counts, slot)
		}
	}
	return nil
}

// markIfUnchanged sets an entry's lifetime to to if it is still from:
// the entry is read again and written back whole, only where it exists.
func markIfUnchanged(m *ctmap.Map, k []byte, v *ctmap.CTEntry, from, to uint32) error {
	if err := m.Lookup(k, v[:]); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		return err
	}
	if v.Lifetime() != from {
		return nil // refreshed since judged: the flow is alive
	}
	v.SetLifetime(to)
	if err := m.Update(k, v[:], ebpf.UpdateExist); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// classify is the program's classify: the CT state of an entry.
func classify(nexthdr uint8, flags uint16) int {
	const (
		rxClosing  = uint16(sweeperCtConstCT_RX_CLOSING)
		txClosing  = uint16(sweeperCtConstCT_TX_CLOSING)
		seenNonSyn = uint16(sweeperCtConstCT_SEEN_NON_SYN)
	)
	switch {
	case nexthdr != uint8(sweeperCtConstIPPROTO_TCP):
		return int(sweeperCtStateSTATE_NONTCP)
	case flags&rxClosing != 0 && flags&txClosing != 0:
		return int(sweeperCtStateSTATE_CLOSING)
	case flags&seenNonSyn == 0:
		return int(sweeperCtStateSTATE_SYN)
	}
	return int(sweeperCtStateSTATE_ESTABLISHED)
}

// policy4 is the program's policy4: the policy slot of an outbound IPv4
// flow (addresses as the program loads them), 0 for none.
func (ps *sweeperPolicySet) policy4(pod, dest uint32) uint32 {
	bits := uint(ps.Bits4 & 31)
	h, m := home(pod, bits), uint32(1)<<bits-1
	var p *sweeperPod4
	for i := uint32(0); i < maxProbe; i++ {
		q := &ps.Pods4[((h+i)&m)&uint32(len(ps.Pods4)-1)]
		if q.N == 0 {
			return 0
		}
		if q.Addr == pod {
			p = q
			break
		}
	}
	if p == nil {
		return 0
	}
	rule := func(i uint32) *sweeperRule4 { return &ps.Rules4[i&uint32(len(ps.Rules4)-1)] }
	match := func(r *sweeperRule4) uint32 {
		if uint32(r.Flags)&ruleExcluded != 0 {
			return 0
		}
		return uint32(r.Policy)
	}
	first := uint32(p.First)
	if p.Bits == 0 {
		for j := uint32(0); j < uint32(p.N) && j < MaxRules; j++ {
			if r := rule(first + j); dest&r.Mask == r.Net {
				return match(r)
			}
		}
		return 0
	}
	table, tm := first+uint32(p.Lens), uint32(1)<<(p.Bits&31)-1
	for l := uint32(0); l < uint32(p.Lens) && l < maxLens; l++ {
		mask := lenMask(int(p.Top), 0)
		if l > 0 {
			mask = rule(first + l).Mask
		}
		net := dest & mask
		th := home(net^mask, uint(p.Bits))
		for i := uint32(0); i < maxProbe; i++ {
			r := rule(table + (th+i)&tm)
			if r.Policy == 0 {
				break
			}
			if r.Net == net && r.Mask == mask {
				return match(r)
			}
		}
	}
	return 0
}

// policy6 is the program's policy6, for the addresses' 16 bytes.
func (ps *sweeperPolicySet) policy6(podB, destB []byte) uint32 {
	var pod, dest [4]uint32
	for i := range pod {
		pod[i], dest[i] = le.Uint32(podB[4*i:]), le.Uint32(destB[4*i:])
	}
	bits := uint(ps.Bits6 & 31)
	h, m := home(pod[0]^pod[1]^pod[2]^pod[3], bits), uint32(1)<<bits-1
	var p *sweeperPod6
	for i := uint32(0); i < maxProbe; i++ {
		q := &ps.Pods6[((h+i)&m)&uint32(len(ps.Pods6)-1)]
		if q.N == 0 {
			return 0
		}
		if q.Addr == pod {
			p = q
			break
		}
	}
	if p == nil {
		return 0
	}
	rule := func(i uint32) *sweeperRule6 { return &ps.Rules6[i&uint32(len(ps.Rules6)-1)] }
	match := func(r *sweeperRule6) uint32 {
		if uint32(r.Flags)&ruleExcluded != 0 {
			return 0
		}
		return uint32(r.Policy)
	}
	first := uint32(p.First)
	if p.Bits == 0 {
		for j := uint32(0); j < uint32(p.N) && j < MaxRules; j++ {
			r := rule(first + j)
			if dest[0]&r.Mask[0] == r.Net[0] && dest[1]&r.Mask[1] == r.Net[1] &&
				dest[2]&r.Mask[2] == r.Net[2] && dest[3]&r.Mask[3] == r.Net[3] {
				return match(r)
			}
		}
		return 0
	}
	table, tm := first+uint32(p.Lens), uint32(1)<<(p.Bits&31)-1
	for l := uint32(0); l < uint32(p.Lens) && l < maxLens; l++ {
		mask := [4]uint32{lenMask(int(p.Top), 0), lenMask(int(p.Top), 1), lenMask(int(p.Top), 2), lenMask(int(p.Top), 3)}
		if l > 0 {
			mask = rule(first + l).Mask
		}
		var net [4]uint32
		for w := range net {
			net[w] = dest[w] & mask[w]
		}
		th := home(addrHash(net[:])^addrHash(mask[:]), uint(p.Bits))
		for i := uint32(0); i < maxProbe; i++ {
			r := rule(table + (th+i)&tm)
			if r.Policy == 0 {
				break
			}
			if r.Net == net && r.Mask == mask {
				return match(r)
			}
		}
	}
	return 0
}
