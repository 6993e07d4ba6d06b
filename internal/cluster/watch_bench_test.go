package cluster

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/egwct/egwct/internal/k8stest"
)

// BenchmarkWatcherMemory reports the heap a Watcher keeps per
// CiliumEndpoint after its first list (bytes/endpoint, measured after a
// GC), against a real API server with 10,000 endpoints:
//
//	go test ./internal/cluster -run '^$' -bench WatcherMemory -benchtime 1x
func BenchmarkWatcherMemory(b *testing.B) {
	const n = 10000
	env := k8stest.Start(b)
	env.Namespaces(b, "bench")
	env.CreateMany(b, EndpointResource, n, func(i int) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
			"metadata": map[string]any{"name": fmt.Sprintf("ep-%d", i), "namespace": "bench", "labels": map[string]any{"app": fmt.Sprintf("app-%d", i%500)}},
			"status": map[string]any{
				"id": int64(i + 1), "state": "ready",
				"identity":   map[string]any{"id": int64(10000 + i%500), "labels": []any{fmt.Sprintf("k8s:app=app-%d", i%500), "k8s:io.kubernetes.pod.namespace=bench", "k8s:io.cilium.k8s.policy.serviceaccount=default"}},
				"networking": map[string]any{"node": "10.0.0.10", "addressing": []any{map[string]any{"ipv4": fmt.Sprintf("10.%d.%d.%d", 64+i>>16, i>>8&255, i&255)}}},
			},
		}}
	})
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	c := client(&testing.T{}, env.Kubeconfig)
	before := heap()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := c.Watch(ctx, time.Minute, WatchEvents{})
	if err != nil {
		b.Fatal(err)
	}
	if got := len(w.Endpoints()); got != n {
		b.Fatalf("%d endpoints", got)
	}
	after := heap()
	b.ReportMetric(float64(after-before)/n, "bytes/endpoint")
	runtime.KeepAlive(w)
	for range b.N {
	}
}
