package cluster

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/egwct/egwct/internal/k8stest"
)

// countWatches counts the watch requests made with cfg.
func countWatches(cfg *rest.Config) *atomic.Int64 {
	n := &atomic.Int64{}
	prev := cfg.WrapTransport
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		if prev != nil {
			rt = prev(rt)
		}
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.URL.Query().Get("watch") == "true" {
				n.Add(1)
			}
			return rt.RoundTrip(req)
		})
	}
	return n
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// TestWatchOutlivesRequestTimeout: --request-timeout bounds requests, not
// the informers' watches (nor their lists): with a short timeout, each
// informer keeps its watch open instead of opening one every timeout.
func TestWatchOutlivesRequestTimeout(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	f := Flags{Kubeconfig: env.Kubeconfig, Timeout: 300 * time.Millisecond}
	cfg, err := f.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	watches := countWatches(cfg)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := c.Watch(ctx, 10*time.Second, WatchEvents{Error: func(err error) { t.Errorf("watch error: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	watches.Store(0)
	time.Sleep(3 * time.Second) // ten timeouts
	if n := watches.Load(); n != 0 {
		t.Errorf("%d watches opened again in 3 s with a 300ms request timeout, want none", n)
	}
	// The watches still deliver.
	select {
	case <-w.Changed():
	default:
	}
	env.Create(t, `apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: late
spec:
  selectors: [{podSelector: {}}]
  destinationCIDRs: [0.0.0.0/0]
`)
	select {
	case <-w.Changed():
	case <-time.After(5 * time.Second):
		t.Fatal("a policy created after the request timeout was not seen")
	}
}

const watchedEndpoint = `apiVersion: cilium.io/v2
kind: CiliumEndpoint
metadata:
  name: NAME
  namespace: shop
status:
  state: ready
  identity:
    labels:
    - k8s:app=web
    - k8s:io.kubernetes.pod.namespace=shop
  networking:
    node: 10.0.0.10
    addressing:
    - ipv4: IP
`

// TestWatchIgnoresStatusOnlyUpdates: an update of an endpoint that
// changes nothing egwct reads (its state, as Cilium updates it while it
// regenerates the endpoint) signals no change; one of its labels, addresses or node
// does.
func TestWatchIgnoresStatusOnlyUpdates(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	env.Namespaces(t, "shop")
	ep := func(name, ip string) string {
		return strings.NewReplacer("NAME", name, "IP", ip).Replace(watchedEndpoint)
	}
	env.Create(t, ep("web-0", "10.1.0.1"))
	var events atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := client(t, env.Kubeconfig).Watch(ctx, 10*time.Second, WatchEvents{Event: func() { events.Add(1) }}); err != nil {
		t.Fatal(err)
	}
	dyn := env.Dynamic(t).Resource(EndpointResource).Namespace("shop")
	update := func(change func(u *unstructured.Unstructured)) {
		t.Helper()
		u, err := dyn.Get(ctx, "web-0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		change(u)
		if _, err := dyn.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// seen waits until n events came, and for a stray one after them.
	seen := func(what string, n int64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); events.Load() < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d events, want %d", what, events.Load(), n)
			}
		}
		time.Sleep(200 * time.Millisecond)
		if got := events.Load(); got != n {
			t.Fatalf("%s: %d events, want %d", what, got, n)
		}
	}
	seen("first list", 1)

	for _, state := range []string{"regenerating", "ready"} {
		update(func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, state, "status", "state")
			u.SetAnnotations(map[string]string{"state": state})
		})
	}
	// Events come in order: once the next endpoint is seen, so were the
	// two updates before it.
	env.Create(t, ep("web-1", "10.1.0.2"))
	seen("two status-only updates, then a new endpoint", 2)

	update(func(u *unstructured.Unstructured) {
		_ = unstructured.SetNestedStringSlice(u.Object, []string{"k8s:app=api", "k8s:io.kubernetes.pod.namespace=shop"}, "status", "identity", "labels")
	})
	seen("labels changed", 3)
	update(func(u *unstructured.Unstructured) {
		_ = unstructured.SetNestedSlice(u.Object, []any{map[string]any{"ipv4": "10.1.0.9"}}, "status", "networking", "addressing")
	})
	seen("address changed", 4)
	update(func(u *unstructured.Unstructured) {
		_ = unstructured.SetNestedField(u.Object, "10.0.0.11", "status", "networking", "node")
	})
	seen("node changed", 5)
}

// TestWatchNeedsWatchPermission: a user who may list the policies and
// endpoints but not watch them gets the permission error at start, as
// one who may not list them does, instead of an agent that never sees a
// change.
func TestWatchNeedsWatchPermission(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := client(t, env.Lister(t)).Watch(ctx, 10*time.Second, WatchEvents{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `needs "list" and "watch" on ciliumegressgatewaypolicies.cilium.io`) {
		t.Errorf("got %v, want the missing watch permission", err)
	}
}
