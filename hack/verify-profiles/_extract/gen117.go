//go:build cilium117

package main

import (
	"github.com/cilium/cilium/pkg/bpf"
	"github.com/cilium/cilium/pkg/defaults"
	"github.com/cilium/cilium/pkg/maps/ctmap"
	"github.com/cilium/cilium/pkg/option"
)

// bpf-distributed-lru exists from 1.17.16 on; this file builds only
// against such releases.
const hasDistributedLRU = true

func setDistributedLRU(cfg *option.DaemonConfig, on bool) {
	cfg.BPFDistributedLRU = on
	if on {
		bpf.EnableMapDistributedLRU()
	}
}

func lruConsts() map[string]any {
	return map[string]any{"option.BPFDistributedLRU": option.BPFDistributedLRU, "defaults.BPFDistributedLRU": defaults.BPFDistributedLRU}
}

func dsrConst() map[string]any { return map[string]any{"ctmap.DSRInternal": ctmap.DSRInternal} }

func gcPass(m *ctmap.Map) (int, error) {
	return ctmap.GC(m, ctmap.GCFilter{RemoveExpired: true}, ctmap.NatMapNext4, ctmap.NatMapNext6)
}
