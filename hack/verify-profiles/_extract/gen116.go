//go:build cilium114 || cilium115 || cilium116

package main

import (
	"github.com/cilium/cilium/pkg/maps/ctmap"
	"github.com/cilium/cilium/pkg/option"
)

const hasDistributedLRU = false

func setDistributedLRU(*option.DaemonConfig, bool) {}

func lruConsts() map[string]any { return nil }

func gcPass(m *ctmap.Map) (int, error) {
	return ctmap.GC(m, &ctmap.GCFilter{RemoveExpired: true})
}
