//go:build cilium114 || cilium115

package main

import (
	"context"
	"time"

	"github.com/cilium/cilium/pkg/hive"
	"github.com/cilium/cilium/pkg/hive/cell"
	"github.com/cilium/cilium/pkg/maps/ctmap"
	"github.com/cilium/cilium/pkg/maps/egressmap"
	"github.com/cilium/cilium/pkg/option"
)

// startEgressCell starts egressmap.Cell (Cilium's own pkg/hive in 1.14 and 1.15).
func startEgressCell(cfg *option.DaemonConfig, size int) error {
	h := hive.New(
		cell.Provide(func() *option.DaemonConfig { return cfg }),
		egressmap.Cell,
		cell.Invoke(func(egressmap.PolicyMap) {}),
	)
	if size != 0 {
		h.Viper().Set("egress-gateway-policy-map-max", size)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return h.Start(ctx)
}

func dsrConst() map[string]any { return map[string]any{"ctmap.DSR": ctmap.DSR} }
