package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/enforce"
	"github.com/egwct/egwct/internal/metrics"
	"github.com/egwct/egwct/pkg/ctstats"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
	"github.com/egwct/egwct/pkg/validate"
)

type agentOptions struct {
	apply       applyOptions
	Interval    time.Duration
	MetricsAddr string
	LogFormat   string
	SyncTimeout time.Duration
	events      eventOptions
}

// eventOptions are the agent's flags for the Events on the policies.
type eventOptions struct {
	On                        bool
	Identity                  string
	LeaseNamespace, LeaseName string
}

func (e *eventOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&e.On, "events", false, "with --from-cluster: write Events on the CiliumEgressGatewayPolicies (TimeoutsApplied, InvalidTimeouts), one per policy generation and outcome, by one agent chosen with a Lease")
	f.StringVar(&e.Identity, "identity", "", "this agent's name in the Lease and the Events (default $POD_NAME, else the host name)")
	f.StringVar(&e.LeaseNamespace, "lease-namespace", "", "namespace of the Lease that chooses the Events writer (default $POD_NAMESPACE, else egwct-system)")
	f.StringVar(&e.LeaseName, "lease-name", cluster.DefaultLeaseName, "name of the Lease that chooses the Events writer")
}

// writer returns the Events writer of the flags, nil without --events.
func (e *eventOptions) writer(ios *IO, c *clusterOptions, log *slog.Logger, m agentMetrics) (*cluster.EventWriter, error) {
	if !e.On {
		return nil, nil
	}
	if !c.From {
		return nil, usageErrorf("--events needs --from-cluster: Events are written on the cluster's policies")
	}
	host, _ := os.Hostname()
	or := func(v ...string) string {
		for _, s := range v {
			if s != "" {
				return s
			}
		}
		return ""
	}
	cfg, err := c.flags.RESTConfig()
	if err != nil {
		return nil, envError(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, envError(err)
	}
	return &cluster.EventWriter{
		Client:         kube,
		Identity:       or(e.Identity, ios.Getenv("POD_NAME"), host),
		Node:           or(ios.Getenv("NODE_NAME"), host),
		LeaseNamespace: or(e.LeaseNamespace, ios.Getenv("POD_NAMESPACE"), "egwct-system"),
		LeaseName:      e.LeaseName,
		Log:            log.With("source", "events"),
		Metrics:        m,
	}, nil
}

func newAgentCmd(ios *IO) *cobra.Command {
	o := &agentOptions{apply: applyOptions{io: ios}}
	cmd := &cobra.Command{
		Use:   "agent -f FILE...",
		Short: "Keep per-policy CT timeouts applied on this node (for a DaemonSet)",
		Long: `Run egwct apply continuously: sweep Cilium's CT maps every --interval with
the policy set of the manifests (or the cluster), read them again only
when they change (files are watched), re-open Cilium's maps when the agent
re-creates them, and serve Prometheus metrics and health.

Each policy is judged on its own: one whose timeout text turns invalid
keeps its last valid timeouts (none, if it never had any), is logged with
its findings as structured records, and shows in egwct_policy_valid and
egwct top; every other policy and every endpoint change still applies.

/healthz answers while the process serves; /readyz fails until the first
successful sweep and after 3 failed sweeps in a row.

The interval trades precision for CPU: an idle flow is handled at most one
interval after its timeout, and each sweep costs about 0.37 µs of CPU per
CT entry on a small VM (a million entries: about 0.37 s of one core per
sweep, 3.7 % of a core at the default 10 s; see docs/sweeper.md).

With --from-cluster, policies and endpoints come from the API server and
are watched: a change is in force within about 0.3 s, also with 50,000
CiliumEndpoints (one resolve and one swap per burst of changes). When the API server is unreachable the agent keeps sweeping
with the last known objects, logs the failure and counts it in
egwct_cluster_errors_total (egwct_cluster_up drops to 0).

At start the agent waits for the cluster (the Cilium version, then the
first list of the policies and endpoints) for at most --sync-timeout (5m, as Cilium's agent waits for its CRDs with
--crd-wait-timeout), not --request-timeout: a list of tens of thousands of
endpoints may take longer. Failures meanwhile are retried and logged; a
refusal (forbidden, not authenticated) exits 3 at once, and the bound
exits 3 naming what was not listed and the last failure. /healthz answers
while it waits.

Without --cilium-version, --from-cluster detects the Cilium version from
the cilium DaemonSet's image, and again whenever Cilium restarts on this
node (it rewrites agent-runtime-config.json): after an upgrade the agent
logs "Cilium's version changed" and judges with the new version's
profile. A --cilium-version given stays until egwct restarts.

With --events (and --from-cluster), the agents tell each policy's author
what became of its timeout text: an Event on the CiliumEgressGatewayPolicy
(kubectl describe cegp NAME shows it), TimeoutsApplied with the keys in
force and how many pods and nodes they reach, or InvalidTimeouts with the finding, once per policy generation and
outcome, not once per node: one agent, chosen with the Lease --lease-name
in --lease-namespace, writes for all. egwct_events_writer says whether this
agent writes; egwct_events_written_total and egwct_event_errors_total count
what it wrote.

The Go runtime's soft memory limit (GOMEMLIMIT) is 90 % of the
container's memory limit (cgroup v1 or v2), read again every minute; the
rest is room for what the runtime does not count. Without a limit there is
none; GOMEMLIMIT, or AUTOMEMLIMIT (a ratio such as 0.8, or off), in the
environment overrides it.

SIGTERM or SIGINT stops the agent; egwct's pinned state stays, so sweeping
resumes with the same set after a restart.`,
		Example: `  sudo egwct agent -f /etc/egwct/policies/ --cilium-version 1.18.3 --interval 10s

  # In a DaemonSet (deploy/egwct.yaml): policies and endpoints from the
  # cluster, followed with watches; the version from the cilium DaemonSet
  egwct agent --from-cluster --metrics-addr :9978`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runAgent(ctx, o)
		},
	}
	o.apply.node.register(cmd)
	o.apply.cluster.register(cmd, "the CiliumEgressGatewayPolicies and CiliumEndpoints, and follow their changes")
	o.events.register(cmd)
	f := cmd.Flags()
	f.StringArrayVarP(&o.apply.Files, "filename", "f", nil, "manifest file or folder with policies and endpoints (repeatable)")
	f.StringVar(&o.apply.Mode, "mode", "reclaim", "reclaim (delete CT and SNAT entries) or mark (leave them to Cilium's GC)")
	registerEngine(cmd, &o.apply.Engine)
	f.DurationVar(&o.Interval, "interval", 10*time.Second, "time between sweeps")
	f.StringVar(&o.MetricsAddr, "metrics-addr", metrics.DefaultAddr, "where to serve Prometheus metrics (/metrics), liveness (/healthz) and readiness (/readyz: ready after a successful sweep); empty to disable")
	f.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	f.DurationVar(&o.SyncTimeout, "sync-timeout", 5*time.Minute, "with --from-cluster: how long to wait at start for the cluster: the Cilium version (without --cilium-version), then the first list of the policies and endpoints (failures are retried meanwhile; a refusal ends it at once)")
	return cmd
}

func runAgent(ctx context.Context, o *agentOptions) error {
	if len(o.apply.Files) == 0 && !o.apply.cluster.From {
		return usageErrorf("no input: give -f with manifest files or folders, or --from-cluster")
	}
	for _, f := range o.apply.Files {
		if f == "-" {
			return usageErrorf("the agent watches its files: standard input (-) cannot be used")
		}
	}
	if o.Interval < 100*time.Millisecond {
		return usageErrorf("--interval must be at least 100ms")
	}
	if o.apply.cluster.From && o.SyncTimeout <= 0 {
		return usageErrorf("--sync-timeout must be positive")
	}
	mode, engine, err := o.apply.sweepSettings()
	if err != nil {
		return err
	}
	var h slog.Handler
	switch o.LogFormat {
	case "text":
		h = slog.NewTextHandler(o.apply.io.ErrOut, nil)
	case "json":
		h = slog.NewJSONHandler(o.apply.io.ErrOut, nil)
	default:
		return usageErrorf("--log-format must be text or json")
	}
	log := slog.New(h)
	setMemoryLimit(ctx, log, memlimit.FromCgroup)
	b := currentBuild()
	mm, err := metrics.New(metrics.BuildInfo{Version: b.Version, Revision: b.Commit, Date: b.BuildDate}, metrics.Options{})
	if err != nil {
		return err
	}
	m := agentMetrics{mm}
	ew, err := o.events.writer(o.apply.io, &o.apply.cluster, log, m)
	if err != nil {
		return err
	}
	if err := needRoot(); err != nil {
		return err
	}
	// Served before the first list of the cluster, which may take
	// minutes: the liveness probe sees the process serve, /readyz says it
	// has not swept yet, and the cluster metrics show the wait.
	if o.MetricsAddr != "" {
		ln, err := net.Listen("tcp", o.MetricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("serving metrics", "addr", ln.Addr().String())
	}
	// One bound for the whole wait for the cluster at start: the version
	// detected, then the first list, which has what detecting left.
	syncFor := o.SyncTimeout
	var ci *cluster.Cilium
	var detect func() (string, error)
	// What the cluster said of Cilium last: detected again when Cilium
	// restarts on the node (perhaps upgraded, or with a changed
	// cilium-config), on a goroutine of its own.
	var current atomic.Pointer[cluster.Cilium]
	if o.apply.cluster.From && o.apply.node.CiliumVersion == "" {
		m.Waiting("the Cilium version from the cluster (--sync-timeout)")
		start := time.Now()
		ci, err = o.apply.cluster.detectCilium(ctx, log, m, o.SyncTimeout, detectBackoff)
		syncFor = max((o.SyncTimeout - time.Since(start)).Round(time.Second), time.Second)
		if ctx.Err() != nil {
			return nil // stopped while waiting
		}
		if err != nil {
			return err
		}
		o.apply.node.CiliumVersion = ci.Version
		log.Info("Cilium version detected", "version", ci.Version, "from", ci.VersionFrom)
		current.Store(ci)
		if detect, err = o.apply.cluster.detector(ctx, m, &current); err != nil {
			return err
		}
	}
	n, err := o.apply.node.open()
	if err != nil {
		return err
	}
	if from, err := n.useConfigMap(ci); err != nil {
		return err
	} else if from != "" {
		log.Info("node timeouts from the ConfigMap: this node has no agent-runtime-config.json", "from", from)
	}
	var srcs []enforce.Source
	if len(o.apply.Files) > 0 {
		fs, err := enforce.NewFileSource(ctx, o.apply.Files)
		if err != nil {
			return err
		}
		srcs = append(srcs, fs)
	}
	if o.apply.cluster.From {
		m.Waiting("the first list of the cluster's policies and endpoints (--sync-timeout)")
		w, err := o.apply.cluster.watch(ctx, log, m, syncFor)
		if ctx.Err() != nil {
			return nil // stopped while waiting
		}
		if err != nil {
			return err
		}
		m.Waiting("")
		srcs = append(srcs, clusterSource{w})
	}
	a := &enforce.Agent{
		Env: n.Env, Source: enforce.Sources(ctx, srcs...), Interval: o.Interval, Debounce: debounceDelay,
		Mode: mode, Engine: engine, Log: log, Metrics: m, Version: b.Version,
		// Cilium writes it at each start: another one may have other
		// timeouts, or a node may start egwct before Cilium.
		NodeConfig: filepath.Join(o.apply.node.StateDir, "agent-runtime-config.json"),
		Reread: func(res profiles.Resolution) (*enforce.Env, error) {
			n, err := o.apply.node.openAs(res)
			if err != nil {
				return nil, err
			}
			if _, err := n.useConfigMap(current.Load()); err != nil {
				return nil, err
			}
			return n.Env, nil
		},
		// An upgrade of Cilium on this node rewrites the file too.
		Detect: detect,
	}
	if ew != nil {
		ew.Start()
		go ew.Run(ctx)
		a.Events = ew
	}
	return a.Run(ctx)
}

// setMemoryLimit sets the Go runtime's soft memory limit (GOMEMLIMIT) to
// 90 % of what limit says, the container's memory limit, and asks it again
// every minute until ctx ends (a pod resized in place keeps its process).
// The rest is headroom for memory the runtime does not count but the
// container is charged for (socket buffers, page cache, egwct's BPF
// maps): at 100 % the container can reach its limit while the runtime
// still sees room. No limit (ErrNoLimit) leaves the runtime's
// default; GOMEMLIMIT or AUTOMEMLIMIT in the environment win. Set logs
// the limit it sets and any error.
func setMemoryLimit(ctx context.Context, log *slog.Logger, limit memlimit.Provider) {
	_, _ = memlimit.Set(memlimit.WithProvider(limit), memlimit.WithRatio(0.9),
		memlimit.WithLogger(log), memlimit.WithRefreshInterval(ctx, time.Minute))
}

// detectBackoff is how long the agent waits before it asks again for the
// cilium DaemonSet at start: 1 s, doubling to 30 s.
var detectBackoff = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Cap: 30 * time.Second}

// detectCilium detects the Cilium version at the agent's start. An API
// server that does not answer (down, or restarting with the rest of the
// cluster), or answers that it cannot now (429 Too Many Requests from its
// flow control while the whole DaemonSet starts, 500 after client-go's own
// retries), is asked again with back-off, each failure logged and counted,
// for at most syncTimeout, as the first list is awaited: a DaemonSet
// started while the API server is away waits for it instead of exiting and
// crash-looping. Anything else (a refusal, no cilium DaemonSet, an image
// without a version tag) ends the wait at once. backoff is the wait
// between two askings (detectBackoff); once at its cap it stays there.
func (c *clusterOptions) detectCilium(ctx context.Context, log *slog.Logger, m agentMetrics, syncTimeout time.Duration, backoff wait.Backoff) (*cluster.Cilium, error) {
	wctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	// Steps only until the cap: DelayFunc then gives the cap for ever
	// (ExponentialBackoffWithContext would stop there, after some 30 s).
	backoff.Steps = math.MaxInt32
	delay := backoff.DelayFunc()
	unanswered := func(last error) error {
		return envError(fmt.Errorf("--sync-timeout: detect the Cilium version: no answer within %s: %w", syncTimeout, last))
	}
	for {
		ci, err := c.cilium(wctx)
		switch {
		case err == nil:
			m.ClusterUp(true)
			return ci, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case !errors.Is(err, cluster.ErrUnreachable) && !apierrors.IsTooManyRequests(err) && !apierrors.IsInternalError(err):
			return nil, err
		}
		m.ClusterError()
		m.ClusterUp(false)
		if wctx.Err() != nil {
			return nil, unanswered(err)
		}
		log.Warn("cannot detect Cilium's version yet; asking again", "err", err)
		t := time.NewTimer(delay())
		select {
		case <-t.C:
		case <-wctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, unanswered(err)
		}
	}
}

// debounceDelay is how long the agent gathers changes of its inputs
// before it resolves them and swaps in a new policy set.
const debounceDelay = 200 * time.Millisecond

// watch starts the informers on the cluster's policies and endpoints and
// waits for their first list, for at most syncTimeout.
func (c *clusterOptions) watch(ctx context.Context, log *slog.Logger, m agentMetrics, syncTimeout time.Duration) (*cluster.Watcher, error) {
	var mu sync.Mutex
	up := true
	// Until the first list the watcher reports each failure (Error
	// below), counted and logged as it comes: the agent has nothing to
	// sweep on yet.
	var synced atomic.Bool
	reachable := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			m.ClusterUp(false)
			if synced.Load() {
				m.ClusterError()
				if up {
					log.Warn("cannot reach the cluster; sweeping on with the last known policies and endpoints", "err", err)
				}
			}
		} else {
			m.ClusterUp(true)
			if !up && synced.Load() {
				log.Info("the cluster is reachable again")
			}
		}
		up = err == nil
	}
	// client-go logs through klog; send it to the agent's log, as one stream.
	cluster.LogTo(log.With("source", "client-go"))
	cl, err := c.client(func(cfg *rest.Config) { cluster.Observe(cfg, reachable) })
	if err != nil {
		return nil, err
	}
	log.Info("waiting for the first list of the cluster's policies and endpoints", "sync-timeout", syncTimeout)
	start := time.Now()
	w, err := cl.Watch(ctx, syncTimeout, cluster.WatchEvents{
		Error: func(err error) {
			m.ClusterError()
			if synced.Load() {
				log.Warn("cannot watch the cluster; sweeping on with the last known policies and endpoints", "err", err)
				return
			}
			log.Warn("cannot list the cluster yet; waiting for the first list", "err", err)
		},
	})
	if errors.Is(err, cluster.ErrNotSynced) {
		return nil, fmt.Errorf("--sync-timeout: %w", err)
	}
	if err != nil {
		return nil, err
	}
	synced.Store(true)
	log.Info("synced with the cluster", "took", time.Since(start).Round(time.Millisecond),
		"policies", w.Count(cluster.PolicyResource), "endpoints", w.Count(cluster.EndpointResource))
	return w, nil
}

// clusterSource is the agent's view of a cluster watcher.
type clusterSource struct{ w *cluster.Watcher }

func (s clusterSource) Changed() <-chan struct{} { return s.w.Changed() }

func (s clusterSource) Objects() (enforce.Objects, error) {
	pols, errs := s.w.Policies()
	objs := enforce.Objects{Policies: pols, Endpoints: s.w.Endpoints()}
	for _, err := range errs {
		var se *policy.SyntaxError
		if !errors.As(err, &se) {
			return enforce.Objects{}, err
		}
		objs.Findings = append(objs.Findings, validate.SyntaxFinding(se))
	}
	return objs, nil
}

// agentMetrics feeds the agent's doings to its Prometheus metrics.
type agentMetrics struct{ *metrics.Metrics }

func (m agentMetrics) Swept(names map[uint32]string, res *sweep.Result, at time.Time) {
	_ = m.Sweep(names, res, at) // res is never nil here
}

func (m agentMetrics) Ports(top []ctstats.PortUse, capacity int) {
	m.SetPortCapacity(capacity)
	out := make([]metrics.PortUse, 0, len(top))
	for _, p := range top {
		out = append(out, metrics.PortUse{Egress: p.Egress, Dst: p.Dst, DstPort: p.DstPort, Proto: p.Proto, Used: p.Used})
	}
	_ = m.Metrics.Ports(out) // addresses come from the map: never missing
}

func (m agentMetrics) Resolved(ps []enforce.PolicyStatus) {
	out := make([]metrics.Policy, 0, len(ps))
	for _, p := range ps {
		out = append(out, metrics.Policy{Name: p.Name, Valid: p.Outcome == enforce.Applied, InForce: p.InForce(), Keys: p.Keys})
	}
	_ = m.Policies(out) // names are never empty: DisplayName
}
