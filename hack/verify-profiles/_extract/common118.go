//go:build cilium118 || cilium119 || cilium120

package main

// What Cilium 1.18 to 1.20 share: the Go types, constants and flag names
// the extractor reads.

import (
	"io"
	"log/slog"

	"github.com/cilium/cilium/pkg/defaults"
	"github.com/cilium/cilium/pkg/maps/ctmap"
	"github.com/cilium/cilium/pkg/maps/egressmap"
	"github.com/cilium/cilium/pkg/maps/nat"
	"github.com/cilium/cilium/pkg/maps/timestamp"
	"github.com/cilium/cilium/pkg/option"
)

var logger = slog.New(slog.NewTextHandler(io.Discard, nil))

func goTypes() map[string]any {
	t := map[string]any{
		"ctmap.CtKey4Global":         ctmap.CtKey4Global{},
		"ctmap.CtKey6Global":         ctmap.CtKey6Global{},
		"ctmap.CtEntry":              ctmap.CtEntry{},
		"nat.NatKey4":                nat.NatKey4{},
		"nat.NatKey6":                nat.NatKey6{},
		"nat.NatEntry4":              nat.NatEntry4{},
		"nat.NatEntry6":              nat.NatEntry6{},
		"egressmap.EgressPolicyKey4": egressmap.EgressPolicyKey4{},
		"egressmap.EgressPolicyVal4": egressmap.EgressPolicyVal4{},
		"egressmap.EgressPolicyKey6": egressmap.EgressPolicyKey6{},
		"egressmap.EgressPolicyVal6": egressmap.EgressPolicyVal6{},
	}
	for k, v := range extraTypes() {
		t[k] = v
	}
	return t
}

// evalConsts are the compiled values the flag-default expressions may name.
func evalConsts() map[string]any {
	return map[string]any{
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
		"option.BPFDistributedLRU":                  option.BPFDistributedLRU,
		"defaults.BPFDistributedLRU":                defaults.BPFDistributedLRU,
	}
}

func wantedFlags() []string {
	return []string{
		option.CTMapEntriesTimeoutSYNName, option.CTMapEntriesTimeoutFINName,
		option.CTMapEntriesTimeoutTCPName, option.CTMapEntriesTimeoutAnyName,
		option.CTMapEntriesTimeoutSVCTCPName, option.CTMapEntriesTimeoutSVCTCPGraceName,
		option.CTMapEntriesTimeoutSVCAnyName,
		option.CTMapEntriesGlobalTCPName, option.CTMapEntriesGlobalAnyName, option.NATMapEntriesGlobalName,
		option.BPFDistributedLRU,
	}
}

func constants() map[string]string {
	return stringify(map[string]any{
		"defaults.ConntrackGCStartingInterval": defaults.ConntrackGCStartingInterval,
		"defaults.ConntrackGCMinInterval":      defaults.ConntrackGCMinInterval,
		"defaults.ConntrackGCMaxLRUInterval":   defaults.ConntrackGCMaxLRUInterval,
		"egressmap.EgressGatewayPolicyMapMax":  egressmap.DefaultPolicyConfig.EgressGatewayPolicyMapMax,
		"ctmap.RxClosing":                      ctmap.RxClosing,
		"ctmap.TxClosing":                      ctmap.TxClosing,
		"ctmap.SeenNonSyn":                     ctmap.SeenNonSyn,
		"ctmap.DSRInternal":                    ctmap.DSRInternal,
		"option.CTMapEntriesGlobalTCPDefault":  option.CTMapEntriesGlobalTCPDefault,
		"option.CTMapEntriesGlobalAnyDefault":  option.CTMapEntriesGlobalAnyDefault,
		"option.NATMapEntriesGlobalDefault":    option.NATMapEntriesGlobalDefault,
	})
}

// ctNow is the datapath's clock as Cilium's GC reads it.
func ctNow() (uint32, error) {
	t, err := timestamp.GetCTCurTime(timestamp.GetClockSourceFromOptions())
	return uint32(t), err
}
