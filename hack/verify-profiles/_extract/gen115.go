//go:build cilium114 || cilium115 || cilium116 || cilium117

package main

// Cilium 1.14 to 1.17: the agent creates the CT and NAT maps in its
// initMaps (daemon/cmd/datapath.go: ctmap.InitMapInfo, ctmap.GlobalMaps(...)
// .Create, nat.GlobalMaps(...).Create) and the IPv4 egress-policy map in
// egressmap.Cell (enable-ipv4-egress-gateway). This file makes the same
// calls and starts that cell (startEgressCell, per hive generation).

import (
	"github.com/cilium/cilium/pkg/bpf"
	"github.com/cilium/cilium/pkg/defaults"
	"github.com/cilium/cilium/pkg/maps/ctmap"
	"github.com/cilium/cilium/pkg/maps/egressmap"
	"github.com/cilium/cilium/pkg/maps/nat"
	"github.com/cilium/cilium/pkg/maps/timestamp"
	"github.com/cilium/cilium/pkg/option"
)

func supports(o options) bool { return !o.distributedLRU || hasDistributedLRU }

func createMaps(root string, o options) error {
	bpffsRoot = root
	bpf.CheckOrMountFS(root)
	cfg := option.Config
	cfg.EnableIPv4, cfg.EnableIPv6 = true, true
	cfg.EnableIPv4EgressGateway = true
	cfg.EnableBPFMasquerade = true
	cfg.CTMapEntriesGlobalTCP = option.CTMapEntriesGlobalTCPDefault
	cfg.CTMapEntriesGlobalAny = option.CTMapEntriesGlobalAnyDefault
	cfg.NATMapEntriesGlobal = option.NATMapEntriesGlobalDefault
	if o.ctTCP != 0 {
		cfg.CTMapEntriesGlobalTCP, cfg.CTMapEntriesGlobalAny, cfg.NATMapEntriesGlobal = o.ctTCP, o.ctAny, o.nat
	}
	setDistributedLRU(cfg, o.distributedLRU)
	const nodePort = true
	initMapInfo(cfg, nodePort)
	for _, m := range ctmap.GlobalMaps(cfg.EnableIPv4, cfg.EnableIPv6) {
		if err := m.Create(); err != nil {
			return err
		}
	}
	v4, v6 := nat.GlobalMaps(cfg.EnableIPv4, cfg.EnableIPv6, nodePort)
	for _, m := range []*nat.Map{v4, v6} {
		if err := m.Create(); err != nil {
			return err
		}
	}
	return startEgressCell(cfg, o.egw)
}

func goTypes() map[string]any {
	return map[string]any{
		"ctmap.CtKey4Global":         ctmap.CtKey4Global{},
		"ctmap.CtKey6Global":         ctmap.CtKey6Global{},
		"ctmap.CtEntry":              ctmap.CtEntry{},
		"nat.NatKey4":                nat.NatKey4{},
		"nat.NatKey6":                nat.NatKey6{},
		"nat.NatEntry4":              nat.NatEntry4{},
		"nat.NatEntry6":              nat.NatEntry6{},
		"egressmap.EgressPolicyKey4": egressmap.EgressPolicyKey4{},
		"egressmap.EgressPolicyVal4": egressmap.EgressPolicyVal4{},
	}
}

func evalConsts() map[string]any {
	c := map[string]any{
		"option.CTMapEntriesTimeoutSYNName":         option.CTMapEntriesTimeoutSYNName,
		"option.CTMapEntriesTimeoutFINName":         option.CTMapEntriesTimeoutFINName,
		"option.CTMapEntriesTimeoutTCPName":         option.CTMapEntriesTimeoutTCPName,
		"option.CTMapEntriesTimeoutAnyName":         option.CTMapEntriesTimeoutAnyName,
		"option.CTMapEntriesTimeoutSVCTCPName":      option.CTMapEntriesTimeoutSVCTCPName,
		"option.CTMapEntriesTimeoutSVCTCPGraceName": option.CTMapEntriesTimeoutSVCTCPGraceName,
		"option.CTMapEntriesTimeoutSVCAnyName":      option.CTMapEntriesTimeoutSVCAnyName,
		"option.CTMapEntriesGlobalTCPName":          option.CTMapEntriesGlobalTCPName,
		"option.CTMapEntriesGlobalAnyName":          option.CTMapEntriesGlobalAnyName,
		"option.NATMapEntriesGlobalName":            option.NATMapEntriesGlobalName,
		"option.CTMapEntriesGlobalTCPDefault":       option.CTMapEntriesGlobalTCPDefault,
		"option.CTMapEntriesGlobalAnyDefault":       option.CTMapEntriesGlobalAnyDefault,
		"option.NATMapEntriesGlobalDefault":         option.NATMapEntriesGlobalDefault,
	}
	for k, v := range lruConsts() {
		c[k] = v
	}
	return c
}

func wantedFlags() []string {
	return []string{
		option.CTMapEntriesTimeoutSYNName, option.CTMapEntriesTimeoutFINName,
		option.CTMapEntriesTimeoutTCPName, option.CTMapEntriesTimeoutAnyName,
		option.CTMapEntriesTimeoutSVCTCPName, option.CTMapEntriesTimeoutSVCTCPGraceName,
		option.CTMapEntriesTimeoutSVCAnyName,
		option.CTMapEntriesGlobalTCPName, option.CTMapEntriesGlobalAnyName, option.NATMapEntriesGlobalName,
		"bpf-distributed-lru",
	}
}

func constants() map[string]string {
	c := map[string]any{
		"defaults.ConntrackGCStartingInterval": defaults.ConntrackGCStartingInterval,
		"defaults.ConntrackGCMinInterval":      defaults.ConntrackGCMinInterval,
		"defaults.ConntrackGCMaxLRUInterval":   defaults.ConntrackGCMaxLRUInterval,
		"egressmap.EgressGatewayPolicyMapMax":  egressmap.DefaultPolicyConfig.EgressGatewayPolicyMapMax,
		"ctmap.RxClosing":                      ctmap.RxClosing,
		"ctmap.TxClosing":                      ctmap.TxClosing,
		"ctmap.SeenNonSyn":                     ctmap.SeenNonSyn,
		"option.CTMapEntriesGlobalTCPDefault":  option.CTMapEntriesGlobalTCPDefault,
		"option.CTMapEntriesGlobalAnyDefault":  option.CTMapEntriesGlobalAnyDefault,
		"option.NATMapEntriesGlobalDefault":    option.NATMapEntriesGlobalDefault,
	}
	for k, v := range dsrConst() {
		c[k] = v
	}
	return stringify(c)
}

func ctNow() (uint32, error) {
	t, err := timestamp.GetCTCurTime(timestamp.GetClockSourceFromOptions())
	return uint32(t), err
}

// runGC does what the agent's GC does in these releases: fresh map objects
// from ctmap.GlobalMaps, opened (m.Open, as ctmap.OpenCTMap does), one ctmap.GC pass each
// (gcPass: the NAT deletion is inside GC in 1.15/1.16, a GC event the agent
// subscribes ctmap.NatMapNext4/6 to in 1.17), then the orphan-NAT purge.
func runGC(family int, afterGC func() error) (deleted, purged int, err error) {
	var tcp, anyMap *ctmap.Map
	for _, m := range ctmap.GlobalMaps(true, true) {
		if err := m.Open(); err != nil {
			return 0, 0, err
		}
		defer m.Close()
		switch m.Name() {
		case pinName(family, true):
			tcp = m
		case pinName(family, false):
			anyMap = m
		}
	}
	for _, m := range []*ctmap.Map{tcp, anyMap} {
		n, err := gcPass(m)
		if err != nil {
			return 0, 0, err
		}
		deleted += n
	}
	if err := afterGC(); err != nil {
		return 0, 0, err
	}
	st := ctmap.PurgeOrphanNATEntries(tcp, anyMap)
	if st != nil {
		purged = int(st.EgressDeleted + st.IngressDeleted)
	}
	return deleted, purged, nil
}
