package cli

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/k8stest"
	"github.com/egwct/egwct/internal/metrics"
)

// askedHandler counts the records of each failed detection and calls
// then once it has counted n.
type askedHandler struct {
	n     int64
	count *atomic.Int64
	then  func()
}

func (h askedHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h askedHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "asking again") && h.count.Add(1) == h.n {
		h.then()
	}
	return nil
}
func (h askedHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h askedHandler) WithGroup(string) slog.Handler      { return h }

// TestDetectCiliumAsksUntilTheBound: an API server that does not answer
// the request for the cilium DaemonSet at start is asked again for as
// long as --sync-timeout allows, every back-off's cap once the back-off
// reached it; the wait does not end when the back-off reaches its cap.
// The back-off is shrunk to milliseconds; the test stops the wait itself
// after many askings, far more than the steps up to the cap.
func TestDetectCiliumAsksUntilTheBound(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(deadKubeconfig(freeAddr(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &clusterOptions{From: true, Namespace: "kube-system"}
	c.flags.Kubeconfig, c.flags.Timeout = kubeconfig, 10*time.Second
	mm, err := metrics.New(metrics.BuildInfo{}, metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const asks = 12 // the back-off below reaches its cap at the third
	var asked atomic.Int64
	log := slog.New(askedHandler{n: asks, count: &asked, then: cancel})
	backoff := wait.Backoff{Duration: time.Millisecond, Factor: 2, Jitter: 0.1, Cap: 4 * time.Millisecond}
	_, err = c.detectCilium(ctx, log, agentMetrics{mm}, 10*time.Minute, backoff)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("after %d askings: %v, want the wait stopped by its context (asked %d times within a bound of 10 minutes)", asks, err, asked.Load())
	}
}

// TestDetectCiliumAsksAgainWhenBusy: an API server that answers the
// request for the cilium DaemonSet at start with 429 (its flow control,
// while a whole DaemonSet starts) or 500 is asked again, as one that does
// not answer; the second asking finds the version.
func TestDetectCiliumAsksAgainWhenBusy(t *testing.T) {
	for _, code := range []int{http.StatusTooManyRequests, http.StatusInternalServerError} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			c, mm := ciliumFailingFirst(t, "cilium-busy", code)
			var asked atomic.Int64
			log := slog.New(askedHandler{n: -1, count: &asked})
			backoff := wait.Backoff{Duration: time.Millisecond, Factor: 2, Cap: 4 * time.Millisecond}
			ci, err := c.detectCilium(context.Background(), log, agentMetrics{mm}, 10*time.Minute, backoff)
			if err != nil || ci.Version != "v1.17.4" || asked.Load() != 1 {
				t.Errorf("got %+v, %v after %d askings again; want v1.17.4 after 1", ci, err, asked.Load())
			}
		})
	}
}

// TestDetectorCountsFailures: a detection of Cilium's version while the
// agent runs that the API server refuses or fails is counted in
// egwct_cluster_errors_total, as the cluster's other failed requests are,
// and changes nothing; one that succeeds is not counted, and stores the
// version with cilium-config.
func TestDetectorCountsFailures(t *testing.T) {
	c, mm := ciliumFailingFirst(t, "cilium-detector", http.StatusServiceUnavailable)
	var current atomic.Pointer[cluster.Cilium]
	detect, err := c.detector(context.Background(), agentMetrics{mm}, &current)
	if err != nil {
		t.Fatal(err)
	}
	errs := func() float64 {
		rec := httptest.NewRecorder()
		mm.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return counterValue(rec.Body.String(), "egwct_cluster_errors_total")
	}
	if v, err := detect(); err == nil || errs() != 1 || current.Load() != nil {
		t.Errorf("refused: %q, %v; %v errors counted, want a failure and 1, and nothing stored", v, err, errs())
	}
	if v, err := detect(); err != nil || v != "v1.17.4" || errs() != 1 {
		t.Errorf("answered: %q, %v; %v errors counted, want v1.17.4 and still 1", v, err, errs())
	}
	// cilium-config is read again with the version, as Cilium reads it
	// again when it restarts.
	if ci := current.Load(); ci == nil || ci.Version != "v1.17.4" || !strings.Contains(string(ci.Config), "bpf-ct-timeout-regular-tcp: 1h") {
		t.Errorf("stored %+v, want v1.17.4 with its cilium-config", ci)
	}
}

// ciliumFailingFirst puts a cilium DaemonSet (v1.17.4) and its
// cilium-config in namespace ns of the shared API server, and returns the
// cluster options of an agent that reaches it through a proxy answering
// the first GET of the DaemonSet with code, and fresh metrics.
func ciliumFailingFirst(t *testing.T, ns string, code int) (*clusterOptions, *metrics.Metrics) {
	t.Helper()
	env := k8stest.Shared(t)
	env.Namespaces(t, ns)
	env.Create(t, strings.ReplaceAll(ciliumDaemonSet, "NS", ns))
	mm, err := metrics.New(metrics.BuildInfo{}, metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := &clusterOptions{From: true, Namespace: ns}
	c.flags.Kubeconfig = failFirst(t, env, "/apis/apps/v1/namespaces/"+ns+"/daemonsets/cilium", code)
	c.flags.Timeout = 10 * time.Second
	return c, mm
}
