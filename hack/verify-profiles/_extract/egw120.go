//go:build cilium120

package main

import (
	"github.com/cilium/hive/cell"

	"github.com/cilium/cilium/pkg/maps/egressmap"
)

// 1.20 adds cilium_egress_gw_policy_v4_v2 beside cilium_egress_gw_policy_v4.
var egressInvoke = cell.Invoke(func(_ egressmap.PolicyMap4, _ egressmap.PolicyMap4V2, _ egressmap.PolicyMap6) {})

func extraTypes() map[string]any {
	return map[string]any{"egressmap.EgressPolicyVal4V2": egressmap.EgressPolicyVal4V2{}}
}
