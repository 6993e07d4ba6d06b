// Package cluster reads what egwct needs from a Kubernetes API server:
// CiliumEgressGatewayPolicies and CiliumEndpoints (cilium.io/v2), and the
// Cilium DaemonSet and cilium-config ConfigMap for version detection. It
// only ever gets, lists and watches: egwct never writes to a cluster.
//
// Objects are handed on as YAML, one per object, named the way kubectl
// names them (cegp/NAME, cep/NAMESPACE/NAME), so that pkg/policy reads
// them exactly as it reads manifest files and positions in findings refer
// to the object.
package cluster
