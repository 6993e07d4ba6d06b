package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/egwct/egwct/internal/enforce"
	"github.com/egwct/egwct/internal/k8stest"
)

// fakeEventMetrics records an agent's own view of the writing.
type fakeEventMetrics struct {
	mu      sync.Mutex
	writing bool
	written int
	errors  int
}

func (m *fakeEventMetrics) EventsWriter(w bool) { m.mu.Lock(); m.writing = w; m.mu.Unlock() }
func (m *fakeEventMetrics) EventWritten(string) { m.mu.Lock(); m.written++; m.mu.Unlock() }
func (m *fakeEventMetrics) EventError()         { m.mu.Lock(); m.errors++; m.mu.Unlock() }
func (m *fakeEventMetrics) get() (bool, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writing, m.written
}

type testAgent struct {
	w      *EventWriter
	m      *fakeEventMetrics
	cancel context.CancelFunc
	done   chan struct{}
}

// eventually polls cond for up to a minute: the Lease moves in seconds,
// but the test must pass on a loaded machine.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestEventWriters: three agents report the same outcomes; exactly one
// Event is written per (policy, generation, outcome), by the holder of
// the Lease. When the holder goes, another agent takes the Lease and
// writes the next outcome, and the Events already written are not
// written again.
func TestEventWriters(t *testing.T) {
	env := k8stest.Shared(t)
	kube := kubernetes.NewForConfigOrDie(env.Config)
	env.Namespaces(t, "egwct-system")
	ctx := context.Background()

	start := func(i int) *testAgent {
		a := &testAgent{m: &fakeEventMetrics{}, done: make(chan struct{})}
		a.w = &EventWriter{
			Client: kubernetes.NewForConfigOrDie(env.Config), Identity: fmt.Sprintf("agent-%d", i), Node: fmt.Sprintf("node-%d", i),
			LeaseNamespace: "egwct-system", LeaseName: "egwct-events-test",
			LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 300 * time.Millisecond,
			Metrics: a.m,
		}
		var c context.Context
		c, a.cancel = context.WithCancel(ctx)
		go func() { a.w.Run(c); close(a.done) }()
		return a
	}
	var agents []*testAgent
	for i := range 3 {
		agents = append(agents, start(i))
	}
	t.Cleanup(func() {
		for _, a := range agents {
			a.cancel()
			<-a.done
		}
	})
	applied := enforce.PolicyEvent{Policy: "payments", UID: "uid-1", Generation: 1, Reason: enforce.ReasonApplied, Type: "Normal",
		Message: "egwct: bpfCtTimeoutRegularTcp=15m0s in force"}
	invalid := enforce.PolicyEvent{Policy: "crawler", UID: "uid-2", Generation: 3, Reason: enforce.ReasonInvalid, Type: "Warning",
		Message: `egwct: timeout text refused: unknown-key: unknown key "bpfCtTimeoutRegularTCP"`}
	report := func(evs ...enforce.PolicyEvent) {
		for _, a := range agents {
			if a.w != nil {
				a.w.Report(evs)
			}
		}
	}
	list := func() []corev1.Event {
		l, err := kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	count := func(e enforce.PolicyEvent) (n int, by string) {
		for _, ev := range list() {
			if ev.Name == EventName(e) {
				n++
				by = ev.ReportingInstance
				if ev.InvolvedObject.Name != e.Policy || string(ev.InvolvedObject.UID) != e.UID || ev.Reason != e.Reason ||
					ev.InvolvedObject.Kind != "CiliumEgressGatewayPolicy" || ev.InvolvedObject.APIVersion != "cilium.io/v2" || ev.Message != e.Message || ev.Type != e.Type {
					t.Errorf("event = %+v", ev)
				}
			}
		}
		return n, by
	}
	holder := func() string {
		l, err := kube.CoordinationV1().Leases("egwct-system").Get(ctx, "egwct-events-test", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}

	// Reported again and again, as every resolve does.
	for range 5 {
		report(applied, invalid)
	}
	eventually(t, "both Events are written", func() bool {
		a, _ := count(applied)
		b, _ := count(invalid)
		return a > 0 && b > 0
	})
	first := holder()
	// Exactly one writer, and the writer wrote them.
	writers := 0
	var leader *testAgent
	for _, a := range agents {
		if w, _ := a.m.get(); w {
			writers++
			leader = a
		}
	}
	if writers != 1 || leader.w.Identity != first {
		t.Fatalf("%d agents say they write; the Lease names %q", writers, first)
	}
	if _, n := leader.m.get(); n != 2 {
		t.Errorf("the writer counted %d Events, want 2", n)
	}
	report(applied, invalid)
	time.Sleep(3 * leader.w.RetryPeriod) // a writer that wrote twice would have by now
	for _, e := range []enforce.PolicyEvent{applied, invalid} {
		if n, _ := count(e); n != 1 {
			t.Errorf("%s: %d Events, want 1", e.Key(), n)
		}
	}

	// The holder goes; another agent takes the Lease and writes the next
	// generation's outcome. The earlier Events are not written again.
	leader.cancel()
	<-leader.done
	leader.w = nil
	eventually(t, "another agent holds the Lease", func() bool { h := holder(); return h != "" && h != first })
	changed := applied
	changed.Generation, changed.Message = 2, "egwct: bpfCtTimeoutRegularTcp=10m0s in force"
	report(applied, changed, invalid)
	eventually(t, "the new outcome is written", func() bool { n, _ := count(changed); return n > 0 })
	n, by := count(changed)
	if n != 1 || by == first || by == "" {
		t.Errorf("the new outcome: %d Events, written by %q (the first writer was %q)", n, by, first)
	}
	for _, e := range []enforce.PolicyEvent{applied, invalid} {
		if n, _ := count(e); n != 1 {
			t.Errorf("%s after the Lease moved: %d Events, want 1", e.Key(), n)
		}
	}
	for _, a := range agents {
		if a.w == nil {
			continue
		}
		if w, written := a.m.get(); w != (a.w.Identity == holder()) || (!w && written != 0) {
			t.Errorf("%s: writer=%v written=%d; holder %s", a.w.Identity, w, written, holder())
		}
	}
}

func TestEventName(t *testing.T) {
	a := enforce.PolicyEvent{Policy: "p", UID: "u", Generation: 1, Reason: enforce.ReasonApplied}
	b := a
	b.Generation = 2
	if EventName(a) == EventName(b) || !strings.HasPrefix(EventName(a), "p.") || EventName(a) != EventName(a) {
		t.Errorf("names %s %s", EventName(a), EventName(b))
	}
	long := enforce.PolicyEvent{Policy: strings.Repeat("x", 253)}
	if n := len(EventName(long)); n > 253 {
		t.Errorf("name of %d characters", n)
	}
}
