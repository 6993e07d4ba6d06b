//go:build cilium119

package main

import (
	"github.com/cilium/hive/cell"

	"github.com/cilium/cilium/pkg/maps/egressmap"
)

var egressInvoke = cell.Invoke(func(_ *egressmap.PolicyMap4, _ *egressmap.PolicyMap6) {})

func extraTypes() map[string]any { return nil }
