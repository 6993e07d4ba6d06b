// Package profiles describes the Cilium versions egwct supports.
//
// A Profile holds, for one Cilium minor version, everything egwct must know
// about that version's datapath: the parameter set of the per-policy timeout
// text (keys, the agent flags they mirror, the CT state each governs, node
// defaults and valid ranges), the service timers that exist but do not apply
// to egress-gateway flows, the names, types and sizes of the pinned BPF maps,
// the ct_entry field layout, the clock-source rules and known quirks.
//
// The facts come from the cilium/cilium sources at the commits listed in each
// profile's Sources; see docs/timeouts.md for the generated reference.
//
// The package is pure data plus small functions: it imports no CLI, TUI,
// kernel or Kubernetes package. Adding a Cilium version means adding one file
// that calls register.
package profiles
