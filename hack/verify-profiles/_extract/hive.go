//go:build cilium119 || cilium120

package main

// Cilium 1.19 and 1.20: the agent creates the CT, NAT and egress-policy maps
// in hive cells (ctmap.Cell, nat.Cell, egressmap.Cell); this file starts
// those cells, with the providers they need, in a private bpffs.

import (
	"context"
	"time"

	"github.com/cilium/hive"
	"github.com/cilium/hive/cell"

	"github.com/cilium/cilium/pkg/bpf"
	"github.com/cilium/cilium/pkg/kpr"
	"github.com/cilium/cilium/pkg/maps/ctmap"
	"github.com/cilium/cilium/pkg/maps/egressmap"
	"github.com/cilium/cilium/pkg/maps/nat"
	"github.com/cilium/cilium/pkg/metrics"
	"github.com/cilium/cilium/pkg/option"
)

// Every run of this generation is supported (bpf-distributed-lru exists
// since 1.17.16 / 1.18).
func supports(options) bool { return true }

// ctMaps are the CT maps the cell made, for the GC case.
var ctMaps ctmap.CTMaps

func createMaps(root string, o options) error {
	bpffsRoot = root
	bpf.CheckOrMountFS(logger, root)
	cfg := option.Config
	cfg.EnableIPv4, cfg.EnableIPv6 = true, true
	cfg.EnableEgressGateway = true
	cfg.EnableBPFMasquerade = true
	// What the agent's flags put into the config by default.
	cfg.CTMapEntriesGlobalTCP = option.CTMapEntriesGlobalTCPDefault
	cfg.CTMapEntriesGlobalAny = option.CTMapEntriesGlobalAnyDefault
	cfg.NATMapEntriesGlobal = option.NATMapEntriesGlobalDefault
	if o.ctTCP != 0 {
		cfg.CTMapEntriesGlobalTCP, cfg.CTMapEntriesGlobalAny, cfg.NATMapEntriesGlobal = o.ctTCP, o.ctAny, o.nat
	}
	cfg.BPFDistributedLRU = o.distributedLRU
	if cfg.BPFDistributedLRU {
		// What the agent does with the option at start (daemon/cmd).
		bpf.EnableMapDistributedLRU()
	}
	h := hive.New(
		cell.Provide(
			func() *option.DaemonConfig { return cfg },
			func() *metrics.Registry { return nil },
			func() kpr.KPRConfig { return kpr.KPRConfig{KubeProxyReplacement: true} },
		),
		nat.Cell,
		ctmap.Cell,
		egressmap.Cell,
		cell.Invoke(func(ct ctmap.CTMaps, _ nat.NatMap4, _ nat.NatMap6, _ nat.NATRetriesMap) { ctMaps = ct }),
		egressInvoke,
	)
	if o.egw != 0 {
		h.Viper().Set("egress-gateway-policy-map-max", o.egw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return h.Start(logger, ctx)
}

// runGC runs Cilium's own GC pass over the CT maps of a family, with the
// NAT deletion the agent's GC cell passes in, then its orphan-NAT purge.
func runGC(family int, afterGC func() error) (deleted, purged int, err error) {
	var tcp, anyMap *ctmap.Map
	for _, m := range ctMaps.ActiveMaps() {
		switch m.Name() {
		case pinName(family, true):
			tcp = m
		case pinName(family, false):
			anyMap = m
		}
	}
	filter := ctmap.GCFilter{RemoveExpired: true}
	for _, m := range []*ctmap.Map{tcp, anyMap} {
		n, err := m.GC(filter, ctmap.NatMapNext4, ctmap.NatMapNext6)
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
