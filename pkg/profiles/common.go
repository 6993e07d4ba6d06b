package profiles

import "time"

// Building blocks shared by several profiles. Each profile file states what
// differs in its version; the facts and their sources are in
// ../shared/reference/cilium-datapath.md (§ numbers below).

// regularParameters are the four CFP keys (§5.1). Only the established-TCP
// default changed across versions (21600 s in 1.14, 8000 s from 1.15).
func regularParameters(tcpDefault time.Duration) []Parameter {
	return []Parameter{
		{Key: "bpfCtTimeoutRegularTcpSyn", Flag: "bpf-ct-timeout-regular-tcp-syn", Macro: "CT_SYN_TIMEOUT",
			State: StateSyn, Default: 60 * time.Second,
			Summary: "TCP entries that have seen only SYNs (handshake not completed)"},
		{Key: "bpfCtTimeoutRegularTcp", Flag: "bpf-ct-timeout-regular-tcp", Macro: "CT_CONNECTION_LIFETIME_TCP",
			State: StateEstablished, Default: tcpDefault,
			Summary: "established TCP entries: the idle time after which a connection is forgotten"},
		{Key: "bpfCtTimeoutRegularTcpFin", Flag: "bpf-ct-timeout-regular-tcp-fin", Macro: "CT_CLOSE_TIMEOUT",
			State: StateClosing, Default: 10 * time.Second,
			Summary: "TCP entries closed in both directions (FIN or RST seen)"},
		{Key: "bpfCtTimeoutRegularAny", Flag: "bpf-ct-timeout-regular-any", Macro: "CT_CONNECTION_LIFETIME_NONTCP",
			State: StateNonTCP, Default: 60 * time.Second,
			Summary: "entries of every other protocol (UDP, ICMP, SCTP, ...)"},
	}
}

// serviceTimers exist in every version (§5.1) but time CT_SERVICE entries
// of load-balanced connections; gateway entries are CT_EGRESS entries (§2.1).
func serviceTimers(tcpDefault time.Duration) []ServiceTimer {
	return []ServiceTimer{
		{Key: "bpfCtTimeoutServiceTcp", Flag: "bpf-ct-timeout-service-tcp", Macro: "CT_SERVICE_LIFETIME_TCP",
			Default: tcpDefault, Summary: "established TCP service (load-balancer) entries"},
		{Key: "bpfCtTimeoutServiceTcpGrace", Flag: "bpf-ct-timeout-service-tcp-grace", Macro: "CT_SERVICE_CLOSE_REBALANCE",
			Default: 60 * time.Second, Summary: "grace period before a service entry of a terminating backend is rebalanced"},
		{Key: "bpfCtTimeoutServiceAny", Flag: "bpf-ct-timeout-service-any", Macro: "CT_SERVICE_LIFETIME_NONTCP",
			Default: 60 * time.Second, Summary: "non-TCP service (load-balancer) entries"},
	}
}

// Map sizes (§1, §1.1).
const (
	ctTCPMax       = 524288
	ctAnyMax       = 262144
	natMax         = 524288
	egressPolicies = 16384
)

// mapSet lists the CT, SNAT and IPv4 egress-policy maps every version has
// (§1). lruFlags are the map_flags the CT and SNAT maps may have, egwFlags
// those of the egress-policy maps.
func mapSet(lruFlags []uint32, egwFlags uint32) []MapSpec {
	return []MapSpec{
		{Name: "cilium_ct4_global", Role: RoleCTTCP, Family: 4, Type: MapTypeLRUHash, KeySize: 14, ValueSize: 56,
			Flags: lruFlags, DefaultMaxEntries: ctTCPMax, Note: "TCP connections (bpf-ct-global-tcp-max)"},
		{Name: "cilium_ct_any4_global", Role: RoleCTAny, Family: 4, Type: MapTypeLRUHash, KeySize: 14, ValueSize: 56,
			Flags: lruFlags, DefaultMaxEntries: ctAnyMax, Note: "every other protocol (bpf-ct-global-any-max)"},
		{Name: "cilium_ct6_global", Role: RoleCTTCP, Family: 6, Type: MapTypeLRUHash, KeySize: 38, ValueSize: 56,
			Flags: lruFlags, DefaultMaxEntries: ctTCPMax, Optional: true, Note: "IPv6 TCP connections"},
		{Name: "cilium_ct_any6_global", Role: RoleCTAny, Family: 6, Type: MapTypeLRUHash, KeySize: 38, ValueSize: 56,
			Flags: lruFlags, DefaultMaxEntries: ctAnyMax, Optional: true, Note: "IPv6, every other protocol"},
		{Name: "cilium_snat_v4_external", Role: RoleSNAT, Family: 4, Type: MapTypeLRUHash, KeySize: 14, ValueSize: 40,
			Flags: lruFlags, DefaultMaxEntries: natMax, Optional: true, Note: "SNAT mappings; needs BPF NodePort (bpf-nat-global-max)"},
		{Name: "cilium_snat_v6_external", Role: RoleSNAT, Family: 6, Type: MapTypeLRUHash, KeySize: 38, ValueSize: 56,
			Flags: lruFlags, DefaultMaxEntries: natMax, Optional: true, Note: "IPv6 SNAT mappings"},
		{Name: "cilium_egress_gw_policy_v4", Role: RoleEgressPolicy, Family: 4, Type: MapTypeLPMTrie, KeySize: 12, ValueSize: 8,
			Flags: []uint32{egwFlags}, DefaultMaxEntries: egressPolicies, Optional: true,
			Note: "egress-gateway policy entries (egress-gateway-policy-map-max); needs the egress gateway enabled"},
	}
}

// From 1.18 (§1): IPv6 egress policies and the SNAT retry histograms.
func maps118(egwFlags uint32) []MapSpec {
	return []MapSpec{
		{Name: "cilium_egress_gw_policy_v6", Role: RoleEgressPolicy, Family: 6, Type: MapTypeLPMTrie, KeySize: 36, ValueSize: 40,
			Flags: []uint32{egwFlags}, DefaultMaxEntries: egressPolicies, Optional: true, Note: "IPv6 egress-gateway policy entries"},
		{Name: "cilium_snat_v4_alloc_retries", Role: RoleSNATRetries, Family: 4, Type: MapTypePerCPUArray, KeySize: 4, ValueSize: 4,
			Flags: []uint32{0}, DefaultMaxEntries: 33, Optional: true, Note: "histogram of SNAT port-allocation retries"},
		{Name: "cilium_snat_v6_alloc_retries", Role: RoleSNATRetries, Family: 6, Type: MapTypePerCPUArray, KeySize: 4, ValueSize: 4,
			Flags: []uint32{0}, DefaultMaxEntries: 33, Optional: true, Note: "histogram of SNAT port-allocation retries (IPv6)"},
	}
}

// ct_entry layouts (§3). Offsets 16–55 mean the same in every version
// except 40–41; 0–15 and the bits 2 and 7 of the flags changed names.
func ctEntry(first []Field, at40 Field, bit2, bit7 string) CTEntryLayout {
	fields := append([]Field(nil), first...)
	fields = append(fields,
		Field{Name: "lifetime", Offset: 32, Size: 4, Note: "u32, host order: expiry in clock units (seconds or 256 jiffies)"},
		Field{Name: "flags", Offset: 36, Size: 2, Note: "u16 bitfield, see the flag bits"},
		Field{Name: "rev_nat_index", Offset: 38, Size: 2},
		at40,
		Field{Name: "tx_flags_seen", Offset: 42, Size: 1, Note: "OR of TCP flags seen in the egress direction"},
		Field{Name: "rx_flags_seen", Offset: 43, Size: 1, Note: "OR of TCP flags seen in the ingress direction"},
		Field{Name: "src_sec_id", Offset: 44, Size: 4},
		Field{Name: "last_tx_report", Offset: 48, Size: 4},
		Field{Name: "last_rx_report", Offset: 52, Size: 4},
	)
	return CTEntryLayout{
		Size: 56, Fields: fields, FlagsOffset: 36,
		FlagBits: []Bit{
			{"rx_closing", 1 << 0}, {"tx_closing", 1 << 1}, {bit2, 1 << 2}, {"lb_loopback", 1 << 3},
			{"seen_non_syn", 1 << 4}, {"node_port", 1 << 5}, {"proxy_redirect", 1 << 6}, {bit7, 1 << 7},
			{"from_l7lb", 1 << 8}, {"reserved9", 1 << 9}, {"from_tunnel", 1 << 10},
		},
	}
}

var (
	countersV114 = []Field{
		{Name: "rx_packets", Offset: 0, Size: 8},
		{Name: "rx_bytes", Offset: 8, Size: 8, Note: "backend_id for CT_SERVICE entries"},
		{Name: "tx_packets", Offset: 16, Size: 8},
		{Name: "tx_bytes", Offset: 24, Size: 8},
	}
	countersV116 = []Field{
		{Name: "reserved0", Offset: 0, Size: 8, Note: "unused since 1.16"},
		{Name: "backend_id", Offset: 8, Size: 8},
		{Name: "packets", Offset: 16, Size: 8},
		{Name: "bytes", Offset: 24, Size: 8},
	}
	countersV119 = []Field{
		{Name: "nat_addr_lo", Offset: 0, Size: 8, Note: "nat_addr[0:8] (CT_EGRESS DSR), reserved0 otherwise; 0 for gateway entries"},
		{Name: "nat_addr_hi", Offset: 8, Size: 8, Note: "nat_addr[8:16] / backend_id (CT_SERVICE)"},
		{Name: "packets", Offset: 16, Size: 8},
		{Name: "bytes", Offset: 24, Size: 8},
	}
)

// Clock rules (§4).
var hzChoices = []int{1000, 300, 250, 100}

const (
	clockDefault = "ktime: seconds of CLOCK_MONOTONIC"
	clockWhere   = "<state-dir>/agent-runtime-config.json: ClockSource (0 ktime, 1 jiffies) and KernelHz"
)

// The gateway-node quirk of the agent's initial GC pass (§7.5).
func restartQuirk(affects ...Range) Quirk {
	return Quirk{
		ID:      "restart-deletes-remote-egw",
		Affects: affects,
		Summary: "the agent's first GC pass after a restart deletes CT entries (and their SNAT entries) " +
			"whose addresses belong to no local endpoint, so gateway entries of remote pods are dropped " +
			"on every agent restart",
		Source: "createGCFilter ValidIPs, pkg/maps/ctmap; removed by 3a00f5b5bb, backported to 1.15.2",
	}
}

// The GC-interval quirk of early, signal-triggered passes (§7.4).
func earlyPassQuirk(affects ...Range) Quirk {
	return Quirk{
		ID:      "gc-early-pass-ratio",
		Affects: affects,
		Summary: "a GC pass woken early by a CT or NAT fill-up signal computes its deletion ratio as if a full " +
			"interval had passed, which shrinks or stretches the next interval unpredictably (cilium#27405)",
		Source: "pkg/maps/ctmap/gc/gc.go; fixed by 8ff317c767 (1.15.2, 1.16.0)",
	}
}

// v is a short constructor for the ranges of quirks.
func v(s string) Version { return MustParseVersion(s) }

// The agent's CT GC interval (§7.4): defaults.ConntrackGCStartingInterval,
// ConntrackGCMinInterval and ConntrackGCMaxLRUInterval.
var gcInterval = GCInterval{Start: 5 * time.Minute, Min: 10 * time.Second, Max: 12 * time.Hour}

// Key and value layouts other than ct_entry (§2, §6.1, §8.1), by C name.
// The CT and SNAT maps share the tuple keys. v6 adds the IPv6 egress-policy
// structs (1.18+), egwV2 the value of cilium_egress_gw_policy_v4_v2 (1.20+).
func layouts(v6, egwV2 bool) []Layout {
	tuple := func(name string, addr int) Layout {
		return Layout{Name: name, Size: 2*addr + 6, Fields: []Field{
			{Name: "daddr", Offset: 0, Size: addr},
			{Name: "saddr", Offset: addr, Size: addr},
			{Name: "dport", Offset: 2 * addr, Size: 2},
			{Name: "sport", Offset: 2*addr + 2, Size: 2},
			{Name: "nexthdr", Offset: 2*addr + 4, Size: 1},
			{Name: "flags", Offset: 2*addr + 5, Size: 1},
		}}
	}
	natEntry := func(name string, addr, size int) Layout {
		return Layout{Name: name, Size: size, Fields: []Field{
			{Name: "created", Offset: 0, Size: 8},
			{Name: "needs_ct", Offset: 8, Size: 8},
			{Name: "pad1", Offset: 16, Size: 8},
			{Name: "pad2", Offset: 24, Size: 8},
			{Name: "to_saddr", Offset: 32, Size: addr, Note: "to_daddr in reverse (IN) entries"},
			{Name: "to_sport", Offset: 32 + addr, Size: 2, Note: "to_dport in reverse (IN) entries"},
		}}
	}
	policyKey := func(name string, addr int) Layout {
		return Layout{Name: name, Size: 4 + 2*addr, Fields: []Field{
			{Name: "lpm_key", Offset: 0, Size: 4, Note: "prefix length: 32 (or 128) for saddr plus the destination's"},
			{Name: "saddr", Offset: 4, Size: addr},
			{Name: "daddr", Offset: 4 + addr, Size: addr},
		}}
	}
	ifindexEntry := func(name string, egressIP int) Layout {
		return Layout{Name: name, Size: egressIP + 24, Fields: []Field{
			{Name: "egress_ip", Offset: 0, Size: egressIP},
			{Name: "gateway_ip", Offset: egressIP, Size: 4},
			{Name: "reserved", Offset: egressIP + 4, Size: 12},
			{Name: "egress_ifindex", Offset: egressIP + 16, Size: 4},
			{Name: "reserved2", Offset: egressIP + 20, Size: 4},
		}}
	}
	out := []Layout{
		tuple("ipv4_ct_tuple", 4),
		tuple("ipv6_ct_tuple", 16),
		natEntry("ipv4_nat_entry", 4, 40),
		natEntry("ipv6_nat_entry", 16, 56),
		policyKey("egress_gw_policy_key", 4),
		{Name: "egress_gw_policy_entry", Size: 8, Fields: []Field{
			{Name: "egress_ip", Offset: 0, Size: 4},
			{Name: "gateway_ip", Offset: 4, Size: 4},
		}},
	}
	if v6 {
		out = append(out, policyKey("egress_gw_policy_key6", 16), ifindexEntry("egress_gw_policy_entry6", 16))
	}
	if egwV2 {
		out = append(out, ifindexEntry("egress_gw_policy_entry_v2", 4))
	}
	return out
}
