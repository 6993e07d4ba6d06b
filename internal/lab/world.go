// Package lab simulates a Cilium egress-gateway node: it creates Cilium's
// maps with the exact layout of a profile in a bpffs, fills them with
// realistic traffic, keeps them alive like a datapath would, and writes the
// policies and endpoints that produced them. It backs `egwct lab`, the
// tests and the benchmarks.
package lab

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
)

// Well-known addresses of the simulated node.
var (
	// NodeIP is the gateway node's own (internal) address.
	NodeIP = netip.MustParseAddr("10.0.0.10")
	// NodeIP6 is its IPv6 address, on dual-stack labs.
	NodeIP6 = netip.MustParseAddr("fd00:10::a00:a")
)

// Address plan of dual-stack labs: a pod's IPv6 address is its IPv4
// address in the low 32 bits of podNet6 (10.1.0.5 → fd00:10:1::a01:5);
// destinations and egress IPs are in the documentation range 2001:db8::/32,
// egress IPs in egressNet6, the policies' destination CIDRs in /64s of
// 2001:db8:1::/48.
var (
	podNet6    = netip.MustParsePrefix("fd00:10:1::/64")
	egressNet6 = netip.MustParsePrefix("2001:db8:ff00::/40")
	docNet6    = netip.MustParsePrefix("2001:db8::/32")
)

// Policy is a simulated CiliumEgressGatewayPolicy.
type Policy struct {
	Name, Namespace, App string
	Identity             uint32
	Pods                 []netip.Addr
	Dests                []netip.Prefix
	Excluded             []netip.Prefix
	EgressIP             netip.Addr
	// Hot is a destination many of the policy's flows go to, so that its
	// SNAT ports run short.
	Hot netip.AddrPort
	// The IPv6 side, on dual-stack labs (profiles with IPv6 egress
	// gateway): Pods6[i] is the IPv6 address of Pods[i]. The CEGP names
	// one egress IP (the IPv4 one); Cilium takes the IPv6 egress IP from
	// the same interface.
	Pods6             []netip.Addr
	Dests6, Excluded6 []netip.Prefix
	EgressIP6         netip.Addr
	Hot6              netip.AddrPort
	// Timeouts is the policy's timeout text ("" for none).
	Timeouts string
}

var teams = []string{"payments", "search", "crawler", "mail", "reporting", "batch", "analytics", "billing",
	"checkout", "ledger", "notifications", "ml-training", "backup", "webhooks", "partner-api", "telemetry"}

var timeoutTexts = []string{
	"bpfCtTimeoutRegularTcp: 15m\nbpfCtTimeoutRegularAny: 30s\n",
	"",
	"bpfCtTimeoutRegularTcpSyn: 20s\nbpfCtTimeoutRegularTcp: 5m\nbpfCtTimeoutRegularTcpFin: 5s\nbpfCtTimeoutRegularAny: 20s\n",
	"bpfCtTimeoutRegularTcp: 2h4m\n",
}

// world is the deterministic set of policies and pods a lab is built from.
type world struct {
	policies  []Policy
	localPods []netip.Addr // pods on the gateway matching no policy
	egressIPs []netip.Addr
	// dual: the pods, policies and local pods have IPv6 addresses too.
	dual       bool
	localPods6 []netip.Addr
}

// worldFor builds the world of a seed; up and drive build the same one.
// The IPv4 world of a seed is the same with or without dual: the IPv6
// side draws from a random stream of its own.
func worldFor(seed uint64, policies int, dual bool) *world {
	w := newWorld(rand.New(rand.NewPCG(seed, 0x776f726c64)), policies) // "world"
	if dual {
		w.addIPv6(rand.New(rand.NewPCG(seed, 0x776f726c6436))) // "world6"
	}
	return w
}

func newWorld(rng *rand.Rand, n int) *world {
	w := &world{}
	nEgress := max(1, (n+2)/3)
	for i := 0; i < nEgress; i++ {
		w.egressIPs = append(w.egressIPs, netip.AddrFrom4([4]byte{192, 168, 100, byte(10 + i%240)}))
	}
	next := uint32(10<<24 | 1<<16 | 2) // 10.1.0.2
	pod := func() netip.Addr {
		a := netip.AddrFrom4([4]byte{byte(next >> 24), byte(next >> 16), byte(next >> 8), byte(next)})
		next++
		if byte(next) == 0 || byte(next) == 255 {
			next += 3
		}
		return a
	}
	for i := 0; i < n; i++ {
		name := teams[i%len(teams)]
		if i >= len(teams) {
			name = fmt.Sprintf("%s-%d", name, i/len(teams))
		}
		p := Policy{
			Name: name + "-egress", Namespace: name, App: name,
			Identity: uint32(10000 + i),
			EgressIP: w.egressIPs[i%nEgress],
			Timeouts: timeoutTexts[i%len(timeoutTexts)],
		}
		for j, k := 0, 3+rng.IntN(8); j < k; j++ {
			p.Pods = append(p.Pods, pod())
		}
		if i%5 == 4 {
			p.Dests = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
			p.Excluded = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16")}
		} else {
			// Destinations in 198.18.0.0/15, reserved for benchmarks.
			for j := 0; j < 1+i%2; j++ {
				c := 2*i + j
				p.Dests = append(p.Dests, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(c/256%2), byte(c % 256), 0}), 24))
			}
		}
		hot := randomIn(rng, p.Dests[0], p.Excluded)
		p.Hot = netip.AddrPortFrom(hot, 443)
		w.policies = append(w.policies, p)
	}
	for i := 0; i < 4; i++ {
		w.localPods = append(w.localPods, pod())
	}
	return w
}

// addIPv6 gives every pod an IPv6 address and every policy IPv6
// destinations (and excluded CIDRs where it has IPv4 ones) and an IPv6
// egress IP.
func (w *world) addIPv6(rng *rand.Rand) {
	w.dual = true
	for i := range w.policies {
		p := &w.policies[i]
		for _, pod := range p.Pods {
			p.Pods6 = append(p.Pods6, podAddr6(pod))
		}
		// The egress interface's IPv6 address: policies sharing an IPv4
		// egress IP share it (192.168.100.10 → 2001:db8:ff00::a).
		e, v4 := egressNet6.Addr().As16(), p.EgressIP.As4()
		e[15] = v4[3]
		p.EgressIP6 = netip.AddrFrom16(e)
		if len(p.Excluded) > 0 {
			// Like 0.0.0.0/0 without the cluster and the egress IPs.
			p.Dests6 = []netip.Prefix{netip.MustParsePrefix("::/0")}
			p.Excluded6 = []netip.Prefix{netip.MustParsePrefix("fd00::/8"), egressNet6}
		} else {
			for j := 0; j < len(p.Dests); j++ {
				c := 2*i + j
				a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, byte(c >> 8), byte(c)}
				p.Dests6 = append(p.Dests6, netip.PrefixFrom(netip.AddrFrom16(a), 64))
			}
		}
		p.Hot6 = netip.AddrPortFrom(randomIn(rng, p.Dests6[0], p.Excluded6), 443)
	}
	for _, pod := range w.localPods {
		w.localPods6 = append(w.localPods6, podAddr6(pod))
	}
}

// podAddr6 is the IPv6 address of the pod with IPv4 address a.
func podAddr6(a netip.Addr) netip.Addr {
	b := podNet6.Addr().As16()
	v4 := a.As4()
	copy(b[12:], v4[:])
	return netip.AddrFrom16(b)
}

// randomIn picks a host address in p outside every excluded prefix. An
// IPv6 prefix shorter than /32 (::/0) is narrowed to 2001:db8::/32, the
// documentation range.
func randomIn(rng *rand.Rand, p netip.Prefix, excluded []netip.Prefix) netip.Addr {
	if p.Addr().Is6() {
		return randomIn6(rng, p, excluded)
	}
	base := p.Masked().Addr().As4()
	b := uint64(base[0])<<24 | uint64(base[1])<<16 | uint64(base[2])<<8 | uint64(base[3])
	size := uint64(1) << (32 - p.Bits())
	for {
		off := uint64(0)
		if size > 2 {
			off = 1 + rng.Uint64N(size-2) // neither the network nor the broadcast address
		}
		v := uint32(b + off)
		a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		ok := true
		for _, e := range excluded {
			ok = ok && !e.Contains(a)
		}
		if ok {
			return a
		}
	}
}

func randomIn6(rng *rand.Rand, p netip.Prefix, excluded []netip.Prefix) netip.Addr {
	if p.Bits() < docNet6.Bits() && p.Contains(docNet6.Addr()) {
		p = docNet6
	}
	base := p.Masked().Addr().As16()
	for {
		a := base
		for i := p.Bits() / 8; i < 16; i++ {
			r := byte(rng.Uint32())
			if i == p.Bits()/8 && p.Bits()%8 != 0 {
				r &= 0xff >> (p.Bits() % 8)
			}
			a[i] |= r
		}
		addr := netip.AddrFrom16(a)
		ok := addr != p.Masked().Addr() // not the subnet-router anycast address
		for _, e := range excluded {
			ok = ok && !e.Contains(addr)
		}
		if ok {
			return addr
		}
	}
}

func netipAddrPort(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }
