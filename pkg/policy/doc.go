// Package policy reads CiliumEgressGatewayPolicies and their per-policy
// timeout text.
//
// The timeout text is the language of CFP-37454's `connection-timeouts: |`
// block: one "key: value" per line, '#' comments and blank lines, values as
// Go durations. It is found at spec.connection-timeouts (the CFP's field) or
// in the annotation egwct.io/connection-timeouts (upstream's CRD schema
// prunes unknown spec fields). This package parses the syntax and keeps
// positions; what the keys mean belongs to a Cilium version and is judged by
// package validate against a profile.
package policy
