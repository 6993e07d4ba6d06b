package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
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

// ErrNotSynced marks the error of a Watch whose informers did not finish
// their first list within its bound.
var ErrNotSynced = errors.New("no first list")

// Watch starts informers on policies and endpoints and waits until both
// have listed once, for at most syncTimeout. A refusal (forbidden, or not
// authenticated) ends the wait at once. Any other failure (an unreachable
// API server, a missing CRD) goes to ev.Error and is retried until
// syncTimeout; the error then is ErrNotSynced, naming the kinds not
// listed and the last failure. When ctx ends first, the error is ctx's.
// The informers stop when ctx ends, or when Watch fails; ev's callbacks
// are not called after either (Watch's failure waits for those under
// way), so none reports after the caller moved on.
func (c *Client) Watch(ctx context.Context, syncTimeout time.Duration, ev WatchEvents) (_ *Watcher, err error) {
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
	// The informers outlive a failed Watch for a while (they are not
	// awaited, see below) and the agent's context: ev's callbacks end
	// with either, so nothing is reported after the caller moved on.
	var g gate
	context.AfterFunc(ctx, g.shut)
	// client-go retries a refused connection inside the informer's first
	// list, with back-off and without telling its error handler: the
	// requests' own failures say why the list does not come.
	var synced atomic.Bool
	observe(cfg, func(req *http.Request, err error) {
		res, ok := resourceOf(req.URL.Path, kinds)
		if !ok {
			return
		}
		if err == nil {
			// Answered: a failure to come is the answer's (to the
			// informer's error handler), or none.
			w.mu.Lock()
			delete(w.lastErr, res)
			w.mu.Unlock()
			return
		}
		err = c.wrapVerbs([]string{"list", "watch"}, res, err)
		w.mu.Lock()
		w.lastErr[res] = err
		w.mu.Unlock()
		if !synced.Load() && ev.Error != nil {
			g.run(func() { ev.Error(err) })
		}
	})
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, &Error{Op: "create client", Err: err}
	}
	f := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	// A refusal is definite: the informers would retry it for nothing.
	refused := make(chan error, len(kinds))
	notify := func() {
		if ev.Event != nil {
			g.run(ev.Event)
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
			refusal := apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)
			err = c.wrapVerbs([]string{"list", "watch"}, res, err)
			w.mu.Lock()
			w.lastErr[res] = err
			w.mu.Unlock()
			if refusal && !synced.Load() {
				// Watch's own error.
				select {
				case refused <- err:
				default:
				}
				return
			}
			if ev.Error != nil {
				g.run(func() { ev.Error(err) })
			}
		})
		if err != nil {
			return nil, &Error{Op: "watch " + res.Resource, Err: err}
		}
		w.informers[res] = inf
	}
	// Stopped when Watch fails; not awaited: a reflector backing off
	// from a refused connection sleeps up to 30 s before it looks.
	run, stop := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			stop()
			g.shut()
		}
	}()
	f.Start(run.Done())
	syncCtx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	listed := make(chan struct{})
	go func() {
		if cache.WaitForCacheSync(syncCtx.Done(), w.informers[PolicyResource].HasSynced, w.informers[EndpointResource].HasSynced) {
			close(listed)
		}
	}()
	select {
	case <-listed:
		synced.Store(true)
	case err := <-refused:
		return nil, err
	case <-syncCtx.Done():
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, w.notSynced(kinds, syncTimeout)
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

// gate runs callbacks until it is shut, and none after: shut waits for
// those under way.
type gate struct {
	mu     sync.RWMutex
	closed bool
}

func (g *gate) run(f func()) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if !g.closed {
		f()
	}
}

func (g *gate) shut() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// resourceOf returns which of kinds a request's path is for.
func resourceOf(path string, kinds []schema.GroupVersionResource) (schema.GroupVersionResource, bool) {
	for _, res := range kinds {
		if strings.HasSuffix(path, "/"+res.Group+"/"+res.Version+"/"+res.Resource) {
			return res, true
		}
	}
	return schema.GroupVersionResource{}, false
}

// notSynced is the error of informers that did not list within d: it
// names the kinds not listed and the last failure of one of them.
func (w *Watcher) notSynced(kinds []schema.GroupVersionResource, d time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var names []string
	var last error
	for _, res := range kinds {
		if w.informers[res].HasSynced() {
			continue
		}
		names = append(names, res.Resource+"."+res.Group)
		if err := w.lastErr[res]; err != nil {
			last = err
		}
	}
	op := "list and watch " + strings.Join(names, " and ")
	var ce *Error
	switch {
	case errors.As(last, &ce):
		// The failure's own operation is op's.
		return &Error{Op: op, Err: fmt.Errorf("%w within %s: %w", ErrNotSynced, d, ce.Err)}
	case last != nil:
		return &Error{Op: op, Err: fmt.Errorf("%w within %s: %w", ErrNotSynced, d, last)}
	}
	return &Error{Op: op, Err: fmt.Errorf("%w within %s, and no failure: a slow API server or a very long list", ErrNotSynced, d)}
}

// Count returns how many objects of res the watcher holds.
func (w *Watcher) Count(res schema.GroupVersionResource) int {
	return len(w.informers[res].GetStore().ListKeys())
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
