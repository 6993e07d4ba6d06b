//go:build cilium116 || cilium117

package main

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/cilium/hive"
	"github.com/cilium/hive/cell"

	"github.com/cilium/cilium/pkg/maps/egressmap"
	"github.com/cilium/cilium/pkg/option"
)

// startEgressCell starts egressmap.Cell (github.com/cilium/hive from 1.16).
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
	return h.Start(slog.New(slog.NewTextHandler(io.Discard, nil)), ctx)
}
