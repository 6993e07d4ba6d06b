package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/egwct/egwct/pkg/policy"
)

// Watcher keeps every CiliumEgressGatewayPolicy and CiliumEndpoint in
// memory with informers (one list, then watches), and signals changes.
// Each object is read once, when it arrives: an informer transform keeps
// only egwct's reading of it (an endpoint's labels and addresses, a
// policy parsed), so memory grows with what egwct needs and an unchanged
// cluster costs nothing. When the API server goes away, the informers
// retry on their own and the last known objects stay.
type Watcher struct {
	informers map[schema.GroupVersionResource]cache.SharedIndexInformer
	changed   chan struct{}

	mu      sync.Mutex
	lastErr map[schema.GroupVersionResource]error
}

// WatchEvents receive what happens to the watches; all may be nil.
type WatchEvents struct {
	// Error is called when a list or watch fails (the informer retries).
	Error func(error)
	// Event is called for every object added, updated (but for an
	// endpoint whose reading is unchanged) or deleted.
	Event func()
}

// Watch starts informers on policies and endpoints and waits until both
// have listed once, for at most syncTimeout. They stop when ctx ends.
func (c *Client) Watch(ctx context.Context, syncTimeout time.Duration, ev WatchEvents) (*Watcher, error) {
	w := &Watcher{
		informers: map[schema.GroupVersionResource]cache.SharedIndexInformer{},
		changed:   make(chan struct{}, 1),
		lastErr:   map[schema.GroupVersionResource]error{},
	}
	kinds := []schema.GroupVersionResource{PolicyResource, EndpointResource}
	// --request-timeout bounds a whole response, a watch's included: the
	// informers would have their watches cut (and opened again) every
	// timeout, and a list longer than it (tens of thousands of endpoints
	// on a busy API server) would fail and be retried forever. The
	// informers' requests have no such bound: their watches end on the
	// server's own timeout, HTTP/2 pings find a dead connection, and the
	// first list is awaited for at most syncTimeout below.
	cfg := rest.CopyConfig(c.cfg)
	cfg.Timeout = 0
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, &Error{Op: "create client", Err: err}
	}
	f := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	notify := func() {
		if ev.Event != nil {
			ev.Event()
		}
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
	for _, res := range kinds {
		inf := f.ForResource(res).Informer()
		if err := inf.SetTransform(slimmer(res == EndpointResource)); err != nil {
			return nil, &Error{Op: "watch " + res.Resource, Err: err}
		}
		_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { notify() },
			UpdateFunc: func(old, cur any) {
				// Cilium updates an endpoint's status (its state, policy,
				// health) far more often than what egwct reads of it, and
				// a relist updates every object: those change nothing.
				if sameEndpoint(old, cur) {
					return
				}
				notify()
			},
			DeleteFunc: func(any) { notify() },
		})
		if err != nil {
			return nil, &Error{Op: "watch " + res.Resource, Err: err}
		}
		// Replaces client-go's default handler, which only logs.
		err = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			// Expired resource versions and closed streams are routine: the
			// informer lists again.
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return
			}
			err = c.wrapVerbs([]string{"list", "watch"}, res, err)
			w.mu.Lock()
			w.lastErr[res] = err
			w.mu.Unlock()
			if ev.Error != nil {
				ev.Error(err)
			}
		})
		if err != nil {
			return nil, &Error{Op: "watch " + res.Resource, Err: err}
		}
		w.informers[res] = inf
	}
	f.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	for _, res := range kinds {
		if !cache.WaitForCacheSync(syncCtx.Done(), w.informers[res].HasSynced) {
			w.mu.Lock()
			err := w.lastErr[res]
			w.mu.Unlock()
			if err == nil {
				err = c.wrap("list", res, fmt.Errorf("%w: no answer within %s", ErrUnreachable, syncTimeout))
			}
			return nil, err
		}
	}
	// An informer allowed to list but not to watch has synced (its
	// streamed list falls back to a plain one) and would then be refused
	// every watch: the agent would run on the first list for ever. One
	// watch from the list's version (nothing to send) says it now.
	for _, res := range kinds {
		once := int64(1)
		pw, err := dyn.Resource(res).Watch(syncCtx, metav1.ListOptions{ResourceVersion: w.informers[res].LastSyncResourceVersion(), TimeoutSeconds: &once})
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			return nil, c.wrapVerbs([]string{"list", "watch"}, res, err)
		}
		if err == nil {
			pw.Stop()
		}
		// Any other failure is the informer's to retry.
	}
	return w, nil
}

// Changed receives a value after objects changed (several changes may
// come as one).
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

// Policies returns the policies known now, sorted by name, and the
// errors of those that could not be read.
func (w *Watcher) Policies() ([]*policy.Policy, []error) {
	var out []*policy.Policy
	var errs []error
	for _, it := range w.informers[PolicyResource].GetStore().List() {
		s, ok := it.(*slim)
		switch {
		case !ok:
			errs = append(errs, errNotSlim)
		case s.err != nil:
			errs = append(errs, s.err)
		case s.policy != nil:
			out = append(out, s.policy)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errs
}

// Endpoints returns the endpoints known now, in no particular order.
func (w *Watcher) Endpoints() []*policy.Endpoint {
	items := w.informers[EndpointResource].GetStore().List()
	out := make([]*policy.Endpoint, 0, len(items))
	for _, it := range items {
		if s, ok := it.(*slim); ok && s.endpoint != nil {
			out = append(out, s.endpoint)
		}
	}
	return out
}

// sameEndpoint reports whether two informer objects are the same reading
// of one endpoint: the same name, labels, addresses and node.
func sameEndpoint(old, cur any) bool {
	o, ok1 := old.(*slim)
	c, ok2 := cur.(*slim)
	if !ok1 || !ok2 || o.endpoint == nil || c.endpoint == nil {
		return false
	}
	a, b := o.endpoint, c.endpoint
	return a.Name == b.Name && a.Namespace == b.Namespace && a.Node == b.Node &&
		slices.Equal(a.IPs, b.IPs) && maps.Equal(a.Labels, b.Labels)
}
