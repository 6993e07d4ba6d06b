package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// Watcher keeps every CiliumEgressGatewayPolicy and CiliumEndpoint in
// memory with informers (one list, then watches), and signals changes.
// When the API server goes away, the informers retry on their own and the
// last known objects stay.
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
	// Event is called for every object added, updated or deleted.
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
	f := dynamicinformer.NewDynamicSharedInformerFactory(c.dyn, 0)
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
		_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { notify() },
			UpdateFunc: func(any, any) { notify() },
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
	return w, nil
}

// Changed receives a value after objects changed (several changes may
// come as one).
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

// Objects is a snapshot of the objects known now, policies first, each
// kind sorted by name.
func (w *Watcher) Objects() ([]Object, error) {
	var out []Object
	for _, res := range []schema.GroupVersionResource{PolicyResource, EndpointResource} {
		var objs []Object
		for _, it := range w.informers[res].GetStore().List() {
			u, ok := it.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			o, err := ToObject(u)
			if err != nil {
				return nil, err
			}
			objs = append(objs, o)
		}
		sort.Slice(objs, func(i, j int) bool { return objs[i].Name < objs[j].Name })
		out = append(out, objs...)
	}
	return out, nil
}
