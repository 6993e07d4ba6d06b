package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/enforce"
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
}

func newAgentCmd(ios *IO) *cobra.Command {
	o := &agentOptions{apply: applyOptions{io: ios}}
	cmd := &cobra.Command{
		Use:   "agent -f FILE...",
		Short: "Keep per-policy CT timeouts applied on this node (for a DaemonSet)",
		Long: `Run egwct apply continuously: sweep Cilium's CT maps every --interval with
the policy set of the manifests, re-read the manifests when they change
(keeping the last good set when the new one has errors), re-open Cilium's
maps when the agent re-creates them, and serve Prometheus metrics.

The interval trades precision for CPU: an idle flow is handled at most one
interval after its timeout, and each sweep costs about 0.45 µs of CPU per
CT entry on a small VM (a million entries: about 0.45 s of one core per
sweep, 4.5 % of a core at the default 10 s).

With --from-cluster, policies and endpoints come from the API server and
are watched: a change is in force within about 200 ms (one swap per burst
of changes). When the API server is unreachable the agent keeps sweeping
with the last known objects, logs the failure and counts it in
egwct_cluster_errors_total (egwct_cluster_up drops to 0).

SIGTERM or SIGINT stops the agent; egwct's pinned state stays, so sweeping
resumes with the same set after a restart.`,
		Example: `  sudo egwct agent -f /etc/egwct/policies/ --cilium-version 1.18.3 --interval 10s

  # In a DaemonSet (deploy/egwct.yaml): policies and endpoints from the
  # cluster, followed with watches; the version from the cilium DaemonSet
  egwct agent --from-cluster --metrics-addr :9963`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runAgent(ctx, o)
		},
	}
	o.apply.node.register(cmd)
	o.apply.cluster.register(cmd, "the CiliumEgressGatewayPolicies and CiliumEndpoints, and follow their changes")
	f := cmd.Flags()
	f.StringArrayVarP(&o.apply.Files, "filename", "f", nil, "manifest file or folder with policies and endpoints (repeatable)")
	f.StringVar(&o.apply.Mode, "mode", "reclaim", "reclaim (delete CT and SNAT entries) or mark (leave them to Cilium's GC)")
	registerEngine(cmd, &o.apply.Engine)
	f.DurationVar(&o.Interval, "interval", 10*time.Second, "time between sweeps")
	f.StringVar(&o.MetricsAddr, "metrics-addr", "127.0.0.1:9963", "where to serve Prometheus metrics (/metrics); empty to disable")
	f.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
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
	m := newMetrics()
	var ci *cluster.Cilium
	if o.apply.cluster.From && o.apply.node.CiliumVersion == "" {
		if ci, err = o.apply.cluster.cilium(ctx); err != nil {
			return err
		}
		o.apply.node.CiliumVersion = ci.Version
		log.Info("Cilium version detected", "version", ci.Version, "from", ci.VersionFrom)
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
	if err := needRoot(); err != nil {
		return err
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
		w, err := o.apply.cluster.watch(ctx, log, m)
		if err != nil {
			return err
		}
		srcs = append(srcs, clusterSource{w})
	}
	if o.MetricsAddr != "" {
		ln, err := net.Listen("tcp", o.MetricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		srv := &http.Server{Handler: m, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("serving metrics", "addr", ln.Addr().String())
	}
	a := &enforce.Agent{
		Env: n.Env, Source: enforce.Sources(ctx, srcs...), Interval: o.Interval, Debounce: debounceDelay,
		Mode: mode, Engine: engine, Log: log, Metrics: m, Version: version,
	}
	return a.Run(ctx)
}

// debounceDelay is how long the agent gathers changes of its inputs
// before it resolves them and swaps in a new policy set.
const debounceDelay = 200 * time.Millisecond

// watch starts the informers on the cluster's policies and endpoints.
func (c *clusterOptions) watch(ctx context.Context, log *slog.Logger, m *metrics) (*cluster.Watcher, error) {
	var mu sync.Mutex
	up := true
	reachable := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			m.add("egwct_cluster_errors_total", nil, 1)
			m.set("egwct_cluster_up", nil, 0)
			if up {
				log.Warn("cannot reach the cluster; sweeping on with the last known policies and endpoints", "err", err)
			}
		} else {
			m.set("egwct_cluster_up", nil, 1)
			if !up {
				log.Info("the cluster is reachable again")
			}
		}
		up = err == nil
	}
	// client-go logs through klog; send it to the agent's log, as one stream.
	klog.SetSlogLogger(log.With("source", "client-go"))
	cl, err := c.client(func(cfg *rest.Config) { cluster.Observe(cfg, reachable) })
	if err != nil {
		return nil, err
	}
	return cl.Watch(ctx, c.flags.Timeout, cluster.WatchEvents{
		Error: func(err error) {
			m.add("egwct_cluster_errors_total", nil, 1)
			log.Warn("cannot watch the cluster; sweeping on with the last known policies and endpoints", "err", err)
		},
	})
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

// metrics is a small Prometheus text-format registry: counters and gauges
// with labels, served on /metrics.
type metrics struct {
	mu     sync.Mutex
	values map[string]float64 // "name{labels}" → value
	help   map[string]string
}

func newMetrics() *metrics {
	return &metrics{values: map[string]float64{}, help: map[string]string{
		"egwct_ct_entries":                   "gauge CT entries seen by the last sweep, per policy and state",
		"egwct_ct_idle_entries":              "gauge CT entries of the last sweep by idle time (le: upper bound in seconds)",
		"egwct_ct_expired_total":             "counter CT entries found idle longer than their policy allows",
		"egwct_ct_deleted_total":             "counter CT entries deleted (reclaim mode)",
		"egwct_nat_deleted_total":            "counter SNAT entries deleted with them",
		"egwct_ct_refreshed_total":           "counter expired entries refreshed by the datapath before deletion, kept",
		"egwct_ct_lost_total":                "counter expired entries not reported to userspace in time (retried next sweep)",
		"egwct_sweeps_total":                 "counter sweeps run",
		"egwct_sweep_duration_seconds":       "gauge duration of the last sweep",
		"egwct_sweep_entries":                "gauge CT entries seen by the last sweep",
		"egwct_sweep_errors_total":           "counter sweeps that failed",
		"egwct_reload_errors_total":          "counter policy reloads refused (the last good set stays)",
		"egwct_map_reopens_total":            "counter times Cilium's maps were re-created and re-opened",
		"egwct_policies":                     "gauge policies with timeouts in force",
		"egwct_policy_keys":                  "gauge (pod, CIDR) keys in force",
		"egwct_last_sweep_timestamp_seconds": "gauge Unix time of the last successful sweep",
		"egwct_cluster_up":                   "gauge 1 while the API server answers, 0 while it cannot be reached (--from-cluster)",
		"egwct_cluster_errors_total":         "counter failed requests, lists and watches of the cluster; the last known objects stay in use",
	}}
}

func key(name string, labels []string) string {
	if len(labels) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name + "{")
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

func (m *metrics) set(name string, labels []string, v float64) {
	m.mu.Lock()
	m.values[key(name, labels)] = v
	m.mu.Unlock()
}

func (m *metrics) add(name string, labels []string, v float64) {
	m.mu.Lock()
	m.values[key(name, labels)] += v
	m.mu.Unlock()
}

var idleLe = []string{"10", "60", "300", "900", "3600", "7200", "21600", "+Inf"}

// Swept records a successful sweep.
func (m *metrics) Swept(names map[uint32]string, res *sweep.Result, at time.Time) {
	name := func(slot uint32) string { return names[slot] }
	m.mu.Lock()
	// Gauges of the last sweep replace the previous ones.
	for k := range m.values {
		if strings.HasPrefix(k, "egwct_ct_entries{") || strings.HasPrefix(k, "egwct_ct_idle_entries{") {
			delete(m.values, k)
		}
	}
	m.mu.Unlock()
	for slot, cs := range res.Counts {
		for st, c := range cs {
			l := []string{"policy", name(slot), "state", profiles.State(st).String()}
			m.set("egwct_ct_entries", l, float64(c.Seen))
			var cum uint64
			for b, n := range c.Idle {
				cum += n
				m.set("egwct_ct_idle_entries", append(l[:4:4], "le", idleLe[b]), float64(cum))
			}
			if slot == 0 {
				continue
			}
			m.add("egwct_ct_expired_total", l, float64(c.Expired))
			m.add("egwct_ct_deleted_total", l, float64(c.DeletedCT))
			m.add("egwct_nat_deleted_total", l, float64(c.DeletedNAT))
			m.add("egwct_ct_refreshed_total", l, float64(c.Refreshed))
			m.add("egwct_ct_lost_total", l, float64(c.Lost))
		}
	}
	m.add("egwct_sweeps_total", nil, 1)
	m.set("egwct_sweep_duration_seconds", nil, res.Duration.Seconds())
	m.set("egwct_sweep_entries", nil, float64(res.Entries))
	m.set("egwct_last_sweep_timestamp_seconds", nil, float64(at.Unix()))
}

// SweepFailed records a failed sweep.
func (m *metrics) SweepFailed(error) { m.add("egwct_sweep_errors_total", nil, 1) }

// Resolved records the policies in force.
func (m *metrics) Resolved(ps []enforce.PolicyStatus, keys int) {
	n := 0
	for _, p := range ps {
		if p.InForce() {
			n++
		}
	}
	m.set("egwct_policies", nil, float64(n))
	m.set("egwct_policy_keys", nil, float64(keys))
}

// ReloadFailed records a change that could not be put in force.
func (m *metrics) ReloadFailed() { m.add("egwct_reload_errors_total", nil, 1) }

// MapsReopened records that Cilium re-created its maps.
func (m *metrics) MapsReopened() { m.add("egwct_map_reopens_total", nil, 1) }

// ServeHTTP writes the metrics in Prometheus' text format.
func (m *metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		if r.URL.Path == "/healthz" {
			fmt.Fprintln(w, "ok")
			return
		}
		http.NotFound(w, r)
		return
	}
	m.mu.Lock()
	keys := make([]string, 0, len(m.values))
	for k := range m.values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	last := ""
	for _, k := range keys {
		name, _, _ := strings.Cut(k, "{")
		if name != last {
			if h, ok := m.help[name]; ok {
				typ, text, _ := strings.Cut(h, " ")
				fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, typ)
			}
			last = name
		}
		fmt.Fprintf(&b, "%s %g\n", k, m.values[k])
	}
	m.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = w.Write([]byte(b.String()))
}
