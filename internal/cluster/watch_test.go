package cluster

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
		for deadline := time.Now().Add(time.Minute); events.Load() < n; time.Sleep(10 * time.Millisecond) {
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
// change. The refusal ends the wait at once: the bound of 10 minutes is
// only the test binary's timeout to end.
func TestWatchNeedsWatchPermission(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := client(t, env.Lister(t)).Watch(ctx, 10*time.Minute, WatchEvents{})
	// Which kind is refused first is the informers' race.
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `needs "list" and "watch" on cilium`) {
		t.Errorf("got %v, want the missing watch permission", err)
	}
}

// kubeconfigFile writes a kubeconfig and returns its path.
func kubeconfigFile(t *testing.T, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestWatchFirstSync: a refusal ends the wait for the first list at once,
// however long the bound (a hang is the test binary's timeout); an
// unreachable API server is retried, each failure reported, until the
// bound, and the error names the kinds not listed and the last failure.
func TestWatchFirstSync(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	u, err := url.Parse(env.Config.Host)
	if err != nil || u.Host == "" {
		t.Fatalf("API server address %q: %v", env.Config.Host, err)
	}
	for _, tt := range []struct {
		name       string
		kubeconfig string
		bound      time.Duration
		want       string
		// notSynced: the bound ended the wait (ErrNotSynced), not a refusal.
		notSynced bool
	}{
		{"forbidden", env.User(t, "nobody"), 10 * time.Minute,
			`permission denied: egwct needs "list" and "watch" on cilium`, false},
		{"not authenticated", kubeconfigFile(t, UnreachableKubeconfig(u.Host)), 10 * time.Minute,
			"not authenticated: check the kubeconfig's credentials", false},
		{"unreachable", kubeconfigFile(t, UnreachableKubeconfig(deadAddr(t))), time.Second,
			"list and watch ciliumegressgatewaypolicies.cilium.io and ciliumendpoints.cilium.io: no first list within 1s: cluster unreachable at", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var failures atomic.Int64
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := client(t, tt.kubeconfig).Watch(ctx, tt.bound, WatchEvents{Error: func(error) { failures.Add(1) }})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
			if errors.Is(err, ErrNotSynced) != tt.notSynced {
				t.Errorf("errors.Is(%v, ErrNotSynced) = %t, want %t", err, !tt.notSynced, tt.notSynced)
			}
			if tt.notSynced && !errors.Is(err, ErrUnreachable) {
				t.Errorf("%v is not ErrUnreachable", err)
			}
			// A refusal is Watch's error alone; other failures are
			// reported as they come.
			if n := failures.Load(); (n > 0) == !tt.notSynced {
				t.Errorf("%d failures reported through WatchEvents.Error", n)
			}
		})
	}
}

// TestWatchFirstSyncStops: a wait for the first list ends when its
// context does, with the context's error, whatever the bound.
func TestWatchFirstSyncStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := client(t, kubeconfigFile(t, UnreachableKubeconfig(deadAddr(t))))
	_, err := c.Watch(ctx, 10*time.Minute, WatchEvents{Error: func(error) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want %v", err, context.Canceled)
	}
}

// TestWatchQuietAfterFailure: once Watch failed, its callbacks are over:
// one under way when the bound ends (here held past it) finishes before
// Watch returns, and none starts after, though the informers, not
// awaited, still retry (the agent printed its exit message, then a
// client-go failure; a test's log buffer raced). Should no failure come
// within the bound (a busy machine), the bound doubles and Watch is
// tried again, so that the test never passes without a held callback.
func TestWatchQuietAfterFailure(t *testing.T) {
	c := client(t, kubeconfigFile(t, UnreachableKubeconfig(deadAddr(t))))
	for bound := 500 * time.Millisecond; ; bound *= 2 {
		if bound > time.Minute {
			t.Fatal("no failure was reported within a minute")
		}
		var mu sync.Mutex
		var order []string
		note := func(s string) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, s)
		}
		calls := 0
		_, err := c.Watch(context.Background(), bound, WatchEvents{Error: func(error) {
			mu.Lock()
			calls++
			first := calls == 1
			mu.Unlock()
			note("called")
			if first {
				time.Sleep(2 * bound) // the bound ends meanwhile
			}
			note("done")
		}})
		if !errors.Is(err, ErrNotSynced) {
			t.Fatalf("got %v, want ErrNotSynced", err)
		}
		note("returned")
		mu.Lock()
		held := calls > 0
		mu.Unlock()
		if !held {
			continue
		}
		// The reflectors back off from a refused connection for about a
		// second before they try again.
		time.Sleep(3 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		if i := slices.Index(order, "returned"); i != len(order)-1 {
			t.Errorf("Watch returned while a callback ran, or one ran after it: %v", order)
		}
		return
	}
}
