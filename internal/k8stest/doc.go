// Package k8stest starts a real kube-apiserver and etcd on loopback, with
// Cilium's CiliumEgressGatewayPolicy and CiliumEndpoint CRDs installed, for
// egwct's integration tests. It drives controller-runtime's envtest with
// binaries that hack/envtest.sh builds from the Go module proxy.
//
// Tests skip when the binaries are absent, except in CI (CI=true), where a
// missing binary fails the test: `make test` always builds them first.
package k8stest
