// Package nodeconfig reads what a node's Cilium agent is configured with:
// its CT timeouts, its clock source and its GC interval.
//
// Two sources are understood: the agent's own dump of its configuration,
// <state-dir>/agent-runtime-config.json (the truth on a node), and the
// cilium-config ConfigMap (what the cluster asks for). Settings a source
// does not give fall back to the defaults of the Cilium profile in use.
package nodeconfig
