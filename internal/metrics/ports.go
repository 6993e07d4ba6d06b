package metrics

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// DefaultTopPorts is how many (egress IP, destination, protocol) tuples
// egwct_snat_ports_in_use holds at most when Options.TopPorts is 0: the
// top 30, as Cilium's own nat-stats does.
const DefaultTopPorts = 30

// DefaultPortCapacity is how many SNAT source ports one egress IP has per
// destination when Options.PortCapacity is 0 and until SetPortCapacity
// gives the node's: the ports above Cilium's default node-port range,
// 32768 to 65535.
const DefaultPortCapacity = 32768

// PortUse is how many SNAT source ports one egress IP holds towards one
// destination (address, port and protocol) on this node.
type PortUse struct {
	Egress  netip.Addr // the egress (SNAT) IP
	Dst     netip.Addr // the destination address
	DstPort uint16     // the destination port (0 for ICMP)
	Proto   uint8      // the IP protocol number
	Used    int        // source ports in use
}

// portKey is a PortUse without its count: one series.
type portKey struct {
	egress, dst netip.Addr
	port        uint16
	proto       uint8
}

// topPorts checks ps, merges entries of the same tuple (their counts
// add up) and returns the n with the most ports in use, most first; ties
// are ordered by egress IP, destination, port and protocol, so the same
// input always gives the same series.
func topPorts(ps []PortUse, n int) ([]PortUse, error) {
	merged := make(map[portKey]int, len(ps))
	for i, p := range ps {
		switch {
		case !p.Egress.IsValid():
			return nil, fmt.Errorf("port use %d: no egress IP", i)
		case !p.Dst.IsValid():
			return nil, fmt.Errorf("port use %d: no destination IP", i)
		case p.Used < 0:
			return nil, fmt.Errorf("port use %d (%s → %s): %d ports in use is negative", i, p.Egress, p.Dst, p.Used)
		}
		merged[portKey{p.Egress, p.Dst, p.DstPort, p.Proto}] += p.Used
	}
	out := make([]PortUse, 0, len(merged))
	for k, used := range merged {
		out = append(out, PortUse{Egress: k.egress, Dst: k.dst, DstPort: k.port, Proto: k.proto, Used: used})
	}
	slices.SortFunc(out, func(a, b PortUse) int {
		if c := cmp.Compare(b.Used, a.Used); c != 0 {
			return c
		}
		if c := a.Egress.Compare(b.Egress); c != 0 {
			return c
		}
		if c := a.Dst.Compare(b.Dst); c != 0 {
			return c
		}
		if c := cmp.Compare(a.DstPort, b.DstPort); c != 0 {
			return c
		}
		return cmp.Compare(a.Proto, b.Proto)
	})
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}
