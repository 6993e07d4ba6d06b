package cluster

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

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
// informer keeps one watch open instead of opening one every timeout.
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
	time.Sleep(3 * time.Second) // ten timeouts
	if n := watches.Load(); n != 2 {
		t.Errorf("%d watch requests in 3 s with a 300ms request timeout, want 2 (one per informer)", n)
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
