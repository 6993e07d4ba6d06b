package cli

import (
	"context"
	"crypto/sha256"
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
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
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

// agent is the running state of `egwct agent`.
type agent struct {
	o       *agentOptions
	changed <-chan struct{} // the cluster's objects changed (--from-cluster)
	n       *node
	mode    sweep.Mode
	engine  sweep.Engine
	log     *slog.Logger
	state   *sweep.State
	sw      *sweep.Sweeper
	pins    map[string]uint64 // inode of each of Cilium's pins the sweeper uses
	digest  [32]byte
	current *desired
	metrics *metrics
}

func runAgent(ctx context.Context, o *agentOptions) error {
	if len(o.apply.Files) == 0 && !o.apply.cluster.From {
		return usageErrorf("no input: give -f with manifest files or folders, or --from-cluster")
	}
	for _, f := range o.apply.Files {
		if f == "-" {
			return usageErrorf("the agent re-reads its files: standard input (-) cannot be used")
		}
	}
	if o.Interval < 100*time.Millisecond {
		return usageErrorf("--interval must be at least 100ms")
	}
	a := &agent{o: o, metrics: newMetrics()}
	mode, engine, err := o.apply.sweepSettings()
	if err != nil {
		return err
	}
	a.mode, a.engine = mode, engine
	var h slog.Handler = slog.NewTextHandler(o.apply.io.ErrOut, nil)
	if o.LogFormat == "json" {
		h = slog.NewJSONHandler(o.apply.io.ErrOut, nil)
	} else if o.LogFormat != "text" {
		return usageErrorf("--log-format must be text or json")
	}
	a.log = slog.New(h)
	var ci *cluster.Cilium
	if o.apply.cluster.From && o.apply.node.CiliumVersion == "" {
		var err error
		if ci, err = o.apply.cluster.cilium(ctx); err != nil {
			return err
		}
		o.apply.node.CiliumVersion = ci.Version
		a.log.Info("Cilium version detected", "version", ci.Version, "from", ci.VersionFrom)
	}
	if a.n, err = o.apply.node.open(); err != nil {
		return err
	}
	if from, err := a.n.useConfigMap(ci); err != nil {
		return err
	} else if from != "" {
		a.log.Info("node timeouts from the ConfigMap: this node has no agent-runtime-config.json", "from", from)
	}
	if err := needRoot(); err != nil {
		return err
	}
	if a.state, err = sweep.OpenState(o.apply.node.BPFFS, true); err != nil {
		return envError(err)
	}
	defer a.state.Close()
	if o.apply.cluster.From {
		if err := a.watch(ctx); err != nil {
			return err
		}
	}
	if err := a.reload(true); err != nil {
		return err
	}
	defer func() {
		if a.sw != nil {
			a.sw.Close()
		}
	}()
	if o.MetricsAddr != "" {
		ln, err := net.Listen("tcp", o.MetricsAddr)
		if err != nil {
			return envError(fmt.Errorf("--metrics-addr: %w", err))
		}
		srv := &http.Server{Handler: a.metrics, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		a.log.Info("serving metrics", "addr", ln.Addr().String())
	}
	a.log.Info("agent started", "profile", a.n.Resolution.Profile.Name, "clock", a.n.Clock.String(), "mode", a.mode.String(), "engine", a.engine.String(),
		"interval", o.Interval.String(), "policies", len(a.current.set))
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	a.tick()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			a.log.Info("agent stopped; egwct's pinned state stays")
			return nil
		case <-t.C:
			a.tick()
		case <-a.changed:
			// The first change of a burst starts the clock; the ones that
			// follow within it are taken in the same swap.
			if debounce == nil {
				debounce = time.After(debounceDelay)
			}
		case <-debounce:
			debounce = nil
			if err := a.reload(false); err != nil {
				a.metrics.add("egwct_reload_errors_total", nil, 1)
				a.log.Error("policies not reloaded; keeping the last good set", "err", err)
			}
		}
	}
}

// debounceDelay is how long the agent gathers changes of the cluster's
// objects before it swaps in a new policy set.
const debounceDelay = 200 * time.Millisecond

// watch starts the informers on the cluster's policies and endpoints and
// makes them the agent's source of objects.
func (a *agent) watch(ctx context.Context) error {
	var mu sync.Mutex
	up := true
	reachable := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			a.metrics.add("egwct_cluster_errors_total", nil, 1)
			a.metrics.set("egwct_cluster_up", nil, 0)
			if up {
				a.log.Warn("cannot reach the cluster; sweeping on with the last known policies and endpoints", "err", err)
			}
		} else {
			a.metrics.set("egwct_cluster_up", nil, 1)
			if !up {
				a.log.Info("the cluster is reachable again")
			}
		}
		up = err == nil
	}
	// client-go logs through klog; send it to the agent's log, as one stream.
	klog.SetSlogLogger(a.log.With("source", "client-go"))
	cl, err := a.o.apply.cluster.client(func(cfg *rest.Config) { cluster.Observe(cfg, reachable) })
	if err != nil {
		return err
	}
	w, err := cl.Watch(ctx, a.o.apply.cluster.flags.Timeout, cluster.WatchEvents{
		Error: func(err error) {
			a.metrics.add("egwct_cluster_errors_total", nil, 1)
			a.log.Warn("cannot watch the cluster; sweeping on with the last known policies and endpoints", "err", err)
		},
	})
	if err != nil {
		return envError(err)
	}
	a.o.apply.cluster.source = w.Objects
	a.changed = w.Changed()
	return nil
}

// tick reloads what changed and sweeps once; errors are logged and
// counted, never fatal: the last good set keeps being applied.
func (a *agent) tick() {
	if err := a.reload(false); err != nil {
		a.metrics.add("egwct_reload_errors_total", nil, 1)
		a.log.Error("policies not reloaded; keeping the last good set", "err", err)
	}
	if err := a.reopenIfRecreated(); err != nil {
		a.metrics.add("egwct_sweep_errors_total", nil, 1)
		a.log.Error("cannot open Cilium's maps", "err", err)
		return
	}
	res, err := a.sw.Sweep()
	if err != nil {
		a.metrics.add("egwct_sweep_errors_total", nil, 1)
		a.log.Error("sweep failed", "err", err)
		return
	}
	a.metrics.record(a.current, res)
	var exp, del uint64
	for _, cs := range res.Counts {
		for _, c := range cs {
			exp += c.Expired
			del += c.DeletedCT
		}
	}
	a.log.Debug("sweep", "entries", res.Entries, "expired", exp, "deleted", del, "took", res.Duration)
}

// reload re-reads the manifests when their content changed and swaps in
// the new set if it is valid.
func (a *agent) reload(first bool) error {
	inputs, err := collectInputs(a.o.apply.Files)
	if err != nil {
		return err
	}
	if a.o.apply.cluster.From {
		objs, err := a.o.apply.cluster.inputs(context.Background(), true)
		if err != nil {
			return err
		}
		inputs = append(inputs, objs...)
	}
	h := sha256.New()
	for _, in := range inputs {
		data, err := in.read(nil, maxManifestSize)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", in.name, len(data))
		h.Write(data)
	}
	var digest [32]byte
	copy(digest[:], h.Sum(nil))
	if !first && digest == a.digest {
		return nil
	}
	d, err := a.o.apply.resolve(a.n)
	if err != nil {
		return err
	}
	for _, w := range d.warnings {
		a.log.Warn(w)
	}
	if err := a.state.Replace(d.set); err != nil {
		return err
	}
	a.digest, a.current = digest, d
	keys := 0
	for _, p := range d.set {
		keys += len(p.Keys)
	}
	a.metrics.set("egwct_policies", nil, float64(len(d.set)))
	a.metrics.set("egwct_policy_keys", nil, float64(keys))
	if !first {
		a.log.Info("policy set reloaded", "policies", len(d.set), "keys", keys)
	}
	return nil
}

// reopenIfRecreated (re)loads the sweeper when Cilium re-created a map
// behind its pin (a new inode), or on the first tick.
func (a *agent) reopenIfRecreated() error {
	pins := map[string]uint64{}
	swept := map[int]bool{}
	for _, f := range sweep.Families(a.n.Resolution.Profile) {
		swept[f] = true
	}
	for _, s := range a.n.Resolution.Profile.Maps {
		if !swept[s.Family] || (s.Role != profiles.RoleCTTCP && s.Role != profiles.RoleCTAny && s.Role != profiles.RoleSNAT) {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(ctmap.PinPath(a.o.apply.node.BPFFS, s), &st); err == nil {
			pins[s.Name] = st.Ino
		}
	}
	if a.sw != nil && equalPins(pins, a.pins) {
		return nil
	}
	if a.sw != nil {
		a.sw.Close()
		a.sw = nil
		a.log.Info("Cilium re-created its maps; re-opening them")
		a.metrics.add("egwct_map_reopens_total", nil, 1)
	}
	sw, err := sweep.New(sweep.Config{BPFFS: a.o.apply.node.BPFFS, Profile: a.n.Resolution.Profile, Clock: a.n.Clock, Node: a.n.Timeouts, Mode: a.mode, Engine: a.engine}, a.state)
	if err != nil {
		return err
	}
	a.sw, a.pins = sw, pins
	return nil
}

func equalPins(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
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

func (m *metrics) record(d *desired, res *sweep.Result) {
	name := func(slot uint32) string {
		if slot == 0 {
			return ""
		}
		if int(slot) <= len(d.names) {
			return d.names[slot-1]
		}
		return fmt.Sprintf("slot-%d", slot)
	}
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
	m.set("egwct_last_sweep_timestamp_seconds", nil, float64(time.Now().Unix()))
}

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
