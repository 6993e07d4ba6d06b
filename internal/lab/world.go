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
}

// worldFor builds the world of a seed; up and drive build the same one.
func worldFor(seed uint64, policies int) *world {
	return newWorld(rand.New(rand.NewPCG(seed, 0x776f726c64)), policies) // "world"
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

// randomIn picks a host address in p outside every excluded prefix.
func randomIn(rng *rand.Rand, p netip.Prefix, excluded []netip.Prefix) netip.Addr {
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

func netipAddrPort(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }
