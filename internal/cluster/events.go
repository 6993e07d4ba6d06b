package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/egwct/egwct/internal/enforce"
)

// Defaults of the event writer.
const (
	DefaultLeaseName = "egwct-events"
	// DefaultEventsNamespace is where the API server wants the Events of
	// cluster-scoped objects.
	DefaultEventsNamespace = metav1.NamespaceDefault
)

// EventMetrics receives each agent's own view of the writing.
type EventMetrics interface {
	EventsWriter(writing bool)
	EventWritten(reason string)
	EventError()
}

// EventWriter writes the Events on CiliumEgressGatewayPolicies for all
// agents: every agent reports what it resolved, and the one agent that
// holds the Lease writes. An Event's name is derived from (policy, UID,
// generation, reason), so an Event written by an earlier holder is not
// written again (the create answers AlreadyExists): one Event per
// outcome, whichever agent writes it and however often the Lease moves.
type EventWriter struct {
	Client kubernetes.Interface
	// Identity names this agent in the Lease and the Events (its pod).
	Identity string
	// Node is the node the agent runs on (the Events' source host).
	Node string
	// LeaseNamespace and LeaseName name the Lease.
	LeaseNamespace, LeaseName string
	// Namespace is where the Events go (default "default"): the API server
	// accepts the Events of a cluster-scoped object, such as a
	// CiliumEgressGatewayPolicy, only there.
	Namespace string
	// LeaseDuration, RenewDeadline and RetryPeriod are the leader
	// election's (defaults 60 s, 40 s, 15 s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Log                                       *slog.Logger
	Metrics                                   EventMetrics

	mu      sync.Mutex
	want    []enforce.PolicyEvent
	written map[string]bool
	leading bool
	kick    chan struct{}
}

// Report is enforce.Reporter: the events the agent's last resolve warrants.
func (w *EventWriter) Report(evs []enforce.PolicyEvent) {
	w.mu.Lock()
	w.want = evs
	kick := w.kick // nil before Start: Run's first flush writes them
	w.mu.Unlock()
	select {
	case kick <- struct{}{}:
	default:
	}
}

func (w *EventWriter) init() {
	if w.kick == nil {
		w.kick = make(chan struct{}, 1)
	}
	if w.written == nil {
		w.written = map[string]bool{}
	}
	// Every agent of the DaemonSet stands, and each one reads the Lease
	// every RetryPeriod (to 2.2 times it, with client-go's jitter): at
	// 1,000 nodes, about 40 reads a second instead of the 300 of the 2 s
	// controllers use with their two or three candidates. The Events are
	// no hurry: a new writer takes over within about 90 s.
	if w.LeaseDuration == 0 {
		w.LeaseDuration = 60 * time.Second
	}
	if w.RenewDeadline == 0 {
		w.RenewDeadline = 40 * time.Second
	}
	if w.RetryPeriod == 0 {
		w.RetryPeriod = 15 * time.Second
	}
	if w.Log == nil {
		w.Log = slog.New(slog.DiscardHandler)
	}
	if w.Namespace == "" {
		w.Namespace = DefaultEventsNamespace
	}
}

// Start prepares the writer; Run may come later. Report may be called
// before Run.
func (w *EventWriter) Start() {
	w.mu.Lock()
	w.init()
	w.mu.Unlock()
}

// Run takes part in the election until ctx ends, and writes while it
// holds the Lease. Losing the Lease (say, the API server was unreachable
// for longer than the renew deadline) makes it a candidate again.
func (w *EventWriter) Run(ctx context.Context) {
	w.Start()
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: w.LeaseNamespace, Name: w.LeaseName},
		Client:     w.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: w.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: "egwct-events",
			LeaseDuration: w.LeaseDuration, RenewDeadline: w.RenewDeadline, RetryPeriod: w.RetryPeriod,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: w.lead,
				OnStoppedLeading: func() {
					w.mu.Lock()
					w.leading = false
					w.mu.Unlock()
					if w.Metrics != nil {
						w.Metrics.EventsWriter(false)
					}
					w.Log.Info("no longer writing the Events on the policies", "lease", w.LeaseNamespace+"/"+w.LeaseName)
				},
			},
		})
		if err != nil {
			w.Log.Error("cannot elect the Events writer; no Events", "err", err)
			return
		}
		le.Run(ctx)
	}
}

// lead writes while this agent holds the Lease.
func (w *EventWriter) lead(ctx context.Context) {
	w.mu.Lock()
	w.leading = true
	w.mu.Unlock()
	if w.Metrics != nil {
		w.Metrics.EventsWriter(true)
	}
	w.Log.Info("writing the Events on the policies for every agent", "lease", w.LeaseNamespace+"/"+w.LeaseName, "identity", w.Identity)
	retry := time.NewTicker(w.RetryPeriod)
	defer retry.Stop()
	for {
		w.flush(ctx)
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-retry.C:
		}
	}
}

// flush writes the wanted events not yet written.
func (w *EventWriter) flush(ctx context.Context) {
	w.mu.Lock()
	want := w.want
	w.mu.Unlock()
	for _, e := range want {
		if ctx.Err() != nil {
			return
		}
		key := e.Key()
		w.mu.Lock()
		done := w.written[key]
		w.mu.Unlock()
		if done {
			continue
		}
		_, err := w.Client.CoreV1().Events(w.Namespace).Create(ctx, w.event(e), metav1.CreateOptions{})
		switch {
		case err == nil:
			if w.Metrics != nil {
				w.Metrics.EventWritten(e.Reason)
			}
		case apierrors.IsAlreadyExists(err):
			// An earlier holder of the Lease wrote it.
		default:
			if w.Metrics != nil {
				w.Metrics.EventError()
			}
			w.Log.Warn("cannot write an Event on a policy; retrying", "policy", e.Policy, "reason", e.Reason, "err", err)
			continue
		}
		w.mu.Lock()
		w.written[key] = true
		w.mu.Unlock()
	}
}

// EventName is the Event's name for e: the policy's name and a hash of
// (policy, UID, generation, reason).
func EventName(e enforce.PolicyEvent) string {
	sum := sha256.Sum256([]byte(e.Key()))
	name := e.Policy
	if len(name) > 200 {
		name = name[:200]
	}
	return name + "." + hex.EncodeToString(sum[:8])
}

func (w *EventWriter) event(e enforce.PolicyEvent) *corev1.Event {
	now := metav1.Now()
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: EventName(e), Namespace: w.Namespace,
			Labels: map[string]string{"app.kubernetes.io/name": "egwct"}},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: PolicyResource.GroupVersion().String(), Kind: "CiliumEgressGatewayPolicy",
			Name: e.Policy, UID: types.UID(e.UID),
		},
		Reason: e.Reason, Message: e.Message, Type: e.Type,
		Source:         corev1.EventSource{Component: "egwct", Host: w.Node},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "egwct.io/agent", ReportingInstance: w.Identity,
	}
}
