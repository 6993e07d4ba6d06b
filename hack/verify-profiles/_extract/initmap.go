//go:build cilium115 || cilium116 || cilium117

package main

import (
	"github.com/cilium/cilium/pkg/maps/ctmap"
	"github.com/cilium/cilium/pkg/option"
)

func initMapInfo(cfg *option.DaemonConfig, nodePort bool) {
	ctmap.InitMapInfo(cfg.EnableIPv4, cfg.EnableIPv6, nodePort)
}
