//go:build cilium114

package main

import (
	"github.com/cilium/cilium/pkg/maps/ctmap"
	"github.com/cilium/cilium/pkg/option"
)

// In 1.14 the agent passes the CT map sizes (daemon/cmd/daemon.go).
func initMapInfo(cfg *option.DaemonConfig, nodePort bool) {
	ctmap.InitMapInfo(cfg.CTMapEntriesGlobalTCP, cfg.CTMapEntriesGlobalAny, cfg.EnableIPv4, cfg.EnableIPv6, nodePort)
}
