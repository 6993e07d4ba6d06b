//go:build tools

// Package tools pins the kube-apiserver and etcd that hack/envtest.sh builds
// for the integration tests. It is never compiled into egwct.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
