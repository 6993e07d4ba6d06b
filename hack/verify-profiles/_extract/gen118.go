//go:build cilium118

package main

// Cilium 1.18: the agent creates the CT and NAT maps in its initMaps
// (daemon/cmd/datapath.go: ctmap.InitMapInfo, ctmap.GlobalMaps(...).Create,
// nat.GlobalMaps(...).Create, nat.CreateRetriesMaps) and the egress-policy
// maps in egressmap.Cell. This file makes the same calls, in that order,
// and starts egressmap.Cell.

import (
	"context"
	"time"

	"github.com/cilium/hive"
	"github.com/cilium/hive/cell"

	"github.com/cilium/cilium/pkg/bpf"
	"github.com/cilium/cilium/pkg/maps/ctmap"
	"github.com/cilium/cilium/pkg/maps/egressmap"
	"github.com/cilium/cilium/pkg/maps/nat"
	"github.com/cilium/cilium/pkg/metrics"
	"github.com/cilium/cilium/pkg/option"
)

func supports(options) bool { return true }

func createMaps(root string, o options) error {
	bpffsRoot = root
	bpf.CheckOrMountFS(logger, root)
	cfg := option.Config
	cfg.EnableIPv4, cfg.EnableIPv6 = true, true
	cfg.EnableEgressGateway = true
	cfg.EnableBPFMasquerade = true
	cfg.CTMapEntriesGlobalTCP = option.CTMapEntriesGlobalTCPDefault
	cfg.CTMapEntriesGlobalAny = option.CTMapEntriesGlobalAnyDefault
	cfg.NATMapEntriesGlobal = option.NATMapEntriesGlobalDefault
	if o.ctTCP != 0 {
		cfg.CTMapEntriesGlobalTCP, cfg.CTMapEntriesGlobalAny, cfg.NATMapEntriesGlobal = o.ctTCP, o.ctAny, o.nat
	}
	cfg.BPFDistributedLRU = o.distributedLRU
	if cfg.BPFDistributedLRU {
		bpf.EnableMapDistributedLRU()
	}
	const nodePort = true
	ctmap.InitMapInfo(nil, cfg.EnableIPv4, cfg.EnableIPv6, nodePort)
	for _, m := range ctmap.GlobalMaps(cfg.EnableIPv4, cfg.EnableIPv6) {
		if err := m.Create(); err != nil {
			return err
		}
	}
	v4, v6 := nat.GlobalMaps(nil, cfg.EnableIPv4, cfg.EnableIPv6, nodePort)
	for _, m := range []*nat.Map{v4, v6} {
		if err := m.Create(); err != nil {
			return err
		}
	}
	if err := nat.CreateRetriesMaps(cfg.EnableIPv4, cfg.EnableIPv6); err != nil {
		return err
	}
	h := hive.New(
		cell.Provide(
			func() *option.DaemonConfig { return cfg },
			func() *metrics.Registry { return nil },
		),
		egressmap.Cell,
		cell.Invoke(func(_ *egressmap.PolicyMap4, _ *egressmap.PolicyMap6) {}),
	)
	if o.egw != 0 {
		h.Viper().Set("egress-gateway-policy-map-max", o.egw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return h.Start(logger, ctx)
}

func extraTypes() map[string]any { return nil }

// runGC does what the GC cell's runGC does in 1.18 (pkg/maps/ctmap/gc):
// fresh map objects from ctmap.GlobalMaps, opened with ctmap.OpenCTMap, and
// ctmap.GC with the NAT deletion the agent subscribes to the GC's event
// stream (daemon_main.go: Observe4().Observe(ctx, ctmap.NatMapNext4, ...)).
func runGC(family int, afterGC func() error) (deleted, purged int, err error) {
	var tcp, anyMap *ctmap.Map
	for _, m := range ctmap.GlobalMaps(true, true) {
		if _, err := ctmap.OpenCTMap(m); err != nil {
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
	filter := ctmap.GCFilter{RemoveExpired: true}
	for _, m := range []*ctmap.Map{tcp, anyMap} {
		n, err := ctmap.GC(m, filter, ctmap.NatMapNext4, ctmap.NatMapNext6)
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
