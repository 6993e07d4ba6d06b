// Package validate checks per-policy timeout texts against the parameter
// set of a Cilium version and the settings of a node, and reports findings
// with stable rule ids and positions inside the input files.
//
// It is the single judge of a timeout text: `egwct validate` prints its
// findings, and `egwct apply` refuses a policy set with error findings and
// takes the timeouts from the same check.
package validate
