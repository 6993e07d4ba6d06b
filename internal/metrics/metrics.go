package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

// DefaultPort is the agent's metrics and health port. No Cilium component
// listens on it by default: Cilium's Helm chart uses 9962 to 9966 for the
// metrics of the agent, operator, Envoy, Hubble, Hubble Relay,
// clustermesh-apiserver, its etcd and KVStoreMesh, and 9878 to 9881, 9890
// to 9893 and 9901 for health, gops and Envoy's admin interface.
const DefaultPort = 9978

// DefaultAddr is where the agent serves metrics unless told otherwise:
// the loopback address only (the DaemonSet passes ":9978").
const DefaultAddr = "127.0.0.1:9978"

// NoPolicy is the policy label value of the CT entries no policy matches
// (slot 0 of a sweep). A Kubernetes object name cannot hold parentheses,
// so it never equals the name of a policy from the cluster.
const NoPolicy = "(none)"

// BuildInfo identifies the running binary in egwct_build_info; empty
// fields are reported as "unknown".
type BuildInfo struct {
	Version  string // the release, e.g. "v0.4.0"
	Revision string // the VCS commit the binary was built from
	Date     string // when it was built (RFC 3339)
}

// Options tune a Metrics; the zero value gives the defaults.
type Options struct {
	// UnreadyAfter is how many consecutive failed sweeps make /readyz
	// fail (0: DefaultUnreadyAfter).
	UnreadyAfter int
	// TopPorts is the most (egress IP, destination, protocol) tuples
	// egwct_snat_ports_in_use holds (0: DefaultTopPorts).
	TopPorts int
	// PortCapacity is the SNAT ports one egress IP has per destination,
	// served as egwct_snat_port_capacity (0: DefaultPortCapacity).
	PortCapacity int
}

// Policy is one policy of the set the agent resolved, valid or not.
type Policy struct {
	Name string
	// Valid is false when the policy's current timeout text is refused;
	// the policy then keeps its last good timeouts, or none.
	Valid bool
	// InForce is true when the sweeper applies timeouts of this policy
	// (its current ones, or its last good ones).
	InForce bool
	// Keys is the number of (pod, CIDR) keys of the policy in force.
	Keys int
}

// Metrics holds the agent's metrics and readiness. Its methods are safe
// for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	mu            sync.Mutex
	health        readiness
	last          map[seriesKey]*sweep.Counts // the last sweep, by policy label and state
	counters      map[seriesKey]*policyCounters
	valid         map[string]bool // policy label → valid
	setKnown      bool            // Policies was called
	ports         []PortUse
	engine        string // "" until Engine is called
	cluster       *bool  // nil until ClusterUp is called
	top, capacity int

	sweeps, sweepErrors, reloadErrors prometheus.Counter
	mapReopens, clusterErrors         prometheus.Counter
	policies, keys                    prometheus.Gauge
	lastSweep, sweepEntries           prometheus.Gauge
	reloadOK                          prometheus.Gauge
	duration                          prometheus.Histogram
	eventsWriter                      prometheus.Gauge
	eventsWritten                     *prometheus.CounterVec
	eventErrors                       prometheus.Counter
}

// seriesKey names the series of one policy and CT state.
type seriesKey struct {
	policy string
	state  profiles.State
}

// policyCounters are the running totals of one policy and state.
type policyCounters struct {
	expired, deletedCT, deletedNAT, refreshed uint64
}

// sweepDurationBuckets are the upper bounds, in seconds, of
// egwct_sweep_duration_seconds: a sweep costs about 0.4 s per million CT
// entries.
var sweepDurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// New returns the metrics of an agent built as b, with their own registry
// holding the Go and process collectors. It refuses negative options.
func New(b BuildInfo, o Options) (*Metrics, error) {
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{{"UnreadyAfter", &o.UnreadyAfter, DefaultUnreadyAfter}, {"TopPorts", &o.TopPorts, DefaultTopPorts}, {"PortCapacity", &o.PortCapacity, DefaultPortCapacity}} {
		if *f.v < 0 {
			return nil, fmt.Errorf("metrics: %s must not be negative, got %d", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		health:   readiness{unreadyAfter: o.UnreadyAfter},
		last:     map[seriesKey]*sweep.Counts{},
		counters: map[seriesKey]*policyCounters{},
		valid:    map[string]bool{},
		top:      o.TopPorts,
		capacity: o.PortCapacity,
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m.sweeps = counter("egwct_sweeps_total", "Sweeps run, successful or not.")
	m.sweepErrors = counter("egwct_sweep_errors_total", "Sweeps that failed, including failures to open Cilium's maps.")
	m.reloadErrors = counter("egwct_reload_errors_total", "Policy reloads refused; the policies keep their last good timeouts.")
	m.reloadOK = gauge("egwct_last_reload_successful", "1 until a policy reload is refused as a whole, 0 from then until a reload puts its set in force (the set in force before stays meanwhile).")
	m.reloadOK.Set(1)
	m.mapReopens = counter("egwct_map_reopens_total", "Times Cilium re-created its maps and egwct re-opened them.")
	m.clusterErrors = counter("egwct_cluster_errors_total", "Failed requests, lists and watches of the cluster; the last known objects stay in use.")
	m.policies = gauge("egwct_policies", "Policies with timeouts in force.")
	m.keys = gauge("egwct_policy_keys", "(pod, CIDR) keys in force.")
	m.lastSweep = gauge("egwct_last_sweep_timestamp_seconds", "Unix time of the last successful sweep.")
	m.sweepEntries = gauge("egwct_sweep_entries", "CT entries seen by the last successful sweep.")
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "egwct_sweep_duration_seconds",
		Help:    "Duration of successful sweeps.",
		Buckets: sweepDurationBuckets,
	})
	m.eventsWriter = gauge("egwct_events_writer", "1 while this agent holds the Lease and writes the Events on CiliumEgressGatewayPolicies for every agent, else 0.")
	m.eventsWritten = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "egwct_events_written_total",
		Help: "Events this agent wrote on CiliumEgressGatewayPolicies, by reason (TimeoutsApplied, InvalidTimeouts)."}, []string{"reason"})
	m.eventErrors = counter("egwct_event_errors_total", "Events this agent failed to write; it retries while it holds the Lease.")
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "egwct_build_info",
		Help: "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{
			"version":   orUnknown(b.Version),
			"revision":  orUnknown(b.Revision),
			"builddate": orUnknown(b.Date),
			"goversion": runtime.Version(),
		},
	})
	build.Set(1)
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build, m.sweeps, m.sweepErrors, m.reloadErrors, m.reloadOK, m.mapReopens, m.clusterErrors,
		m.policies, m.keys, m.lastSweep, m.sweepEntries, m.duration,
		m.eventsWriter, m.eventsWritten, m.eventErrors,
		(*collector)(m),
	} {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return m, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return LabelValue(s)
}

// LabelValue is the label value egwct serves for a name (of a policy, an
// engine, a build): the name itself when it is valid UTF-8, else the name
// with each invalid byte sequence replaced by U+FFFD. Prometheus label
// values are UTF-8; every other character, control characters included,
// is kept and escaped by the exposition format.
func LabelValue(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}

// policyLabel is the label value of a sweep's slot.
func policyLabel(names map[uint32]string, slot uint32) string {
	if slot == 0 {
		return NoPolicy
	}
	if n, ok := names[slot]; ok {
		return LabelValue(n)
	}
	// Parentheses: never the name of a Kubernetes object.
	return fmt.Sprintf("(slot %d)", slot)
}

// Sweep records a successful sweep that ended at the time at: names maps
// the result's policy slots to policy names (slot 0, the entries of no
// policy, is labelled NoPolicy; a slot missing from names is labelled
// "(slot N)"). The series of the last sweep are replaced, the counters of
// each policy and state grow (once Policies was called, only those of the
// policies of its set), and /readyz turns ready.
func (m *Metrics) Sweep(names map[uint32]string, res *sweep.Result, at time.Time) error {
	if res == nil {
		return errors.New("metrics: no sweep result to record")
	}
	last := make(map[seriesKey]*sweep.Counts, 4*len(res.Counts))
	for slot, cs := range res.Counts {
		if cs == nil {
			continue
		}
		label := policyLabel(names, slot)
		for st := range cs {
			k := seriesKey{label, profiles.State(st)}
			a := last[k]
			if a == nil {
				a = &sweep.Counts{}
				last[k] = a
			}
			addCounts(a, &cs[st])
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last = last
	for k, c := range last {
		if k.policy == NoPolicy {
			continue // nothing expires without a policy
		}
		if _, ok := m.valid[k.policy]; m.setKnown && !ok {
			continue // not in the set: its counters were removed
		}
		t := m.counters[k]
		if t == nil {
			t = &policyCounters{}
			m.counters[k] = t
		}
		t.expired += c.Expired
		t.deletedCT += c.DeletedCT
		t.deletedNAT += c.DeletedNAT
		t.refreshed += c.Refreshed
	}
	m.health.success()
	m.sweeps.Inc()
	m.duration.Observe(res.Duration.Seconds())
	m.sweepEntries.Set(float64(res.Entries))
	m.lastSweep.Set(float64(at.UnixNano()) / 1e9)
	return nil
}

func addCounts(a, c *sweep.Counts) {
	a.Seen += c.Seen
	a.Expired += c.Expired
	a.DeletedCT += c.DeletedCT
	a.DeletedNAT += c.DeletedNAT
	a.Refreshed += c.Refreshed
	for i := range a.Idle {
		a.Idle[i] += c.Idle[i]
	}
}

// SweepFailed records a failed sweep (or a failure to open Cilium's maps
// for one): after Options.UnreadyAfter of them in a row /readyz fails
// with err as the reason. The series of the last successful sweep stay.
func (m *Metrics) SweepFailed(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.health.failure(err)
	m.sweeps.Inc()
	m.sweepErrors.Inc()
}

// Policies replaces the policy set, the outcome of a successful reload
// (egwct_last_reload_successful turns 1): egwct_policy_valid has one series per
// policy of ps, egwct_policies and egwct_policy_keys count those in force,
// and the counters of a policy no longer in ps are removed (a policy that
// comes back starts again at 0, which rate() and increase() take as a
// counter reset). Policies of the same name are merged: valid only if all
// are, in force if one is. It refuses an empty name or negative keys and
// then changes nothing.
func (m *Metrics) Policies(ps []Policy) error {
	valid := make(map[string]bool, len(ps))
	inForce, keys := 0, 0
	for i, p := range ps {
		if p.Name == "" {
			return fmt.Errorf("metrics: policy %d has no name", i)
		}
		if p.Keys < 0 {
			return fmt.Errorf("metrics: policy %q: %d keys is negative", p.Name, p.Keys)
		}
		l := LabelValue(p.Name)
		if v, seen := valid[l]; seen {
			valid[l] = v && p.Valid
		} else {
			valid[l] = p.Valid
		}
		if p.InForce {
			inForce++
			keys += p.Keys
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.valid, m.setKnown = valid, true
	for k := range m.counters {
		if _, ok := valid[k.policy]; !ok {
			delete(m.counters, k)
		}
	}
	m.policies.Set(float64(inForce))
	m.keys.Set(float64(keys))
	m.reloadOK.Set(1)
	return nil
}

// ReloadFailed counts a policy reload that was refused as a whole and
// sets egwct_last_reload_successful to 0 until the next successful one
// (Policies).
func (m *Metrics) ReloadFailed() {
	m.reloadErrors.Inc()
	m.reloadOK.Set(0)
}

// MapsReopened counts a re-opening of Cilium's maps after Cilium
// re-created them.
func (m *Metrics) MapsReopened() { m.mapReopens.Inc() }

// ClusterError counts a failed request, list or watch of the cluster.
func (m *Metrics) ClusterError() { m.clusterErrors.Inc() }

// ClusterUp sets egwct_cluster_up: whether the API server answers. The
// series exists only once it was called (with --from-cluster).
func (m *Metrics) ClusterUp(up bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cluster = &up
}

// Engine names the sweep engine in use (e.g. sweep.Iterator.String()):
// egwct_sweep_engine_info{engine} is 1 for it and there is no series for
// any other.
func (m *Metrics) Engine(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.engine = LabelValue(name)
}

// SetPortCapacity sets egwct_snat_port_capacity, the SNAT ports one
// egress IP has per destination on the node (the ports above its
// node-port range); n <= 0 restores Options.PortCapacity's default.
func (m *Metrics) SetPortCapacity(n int) {
	if n <= 0 {
		n = DefaultPortCapacity
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.capacity = n
}

// Ports replaces the series of egwct_snat_ports_in_use with ps: the
// tuples with the most ports in use, at most Options.TopPorts of them
// (the rest are dropped), entries of the same tuple added up. It refuses
// an entry without addresses or with a negative count and then keeps the
// previous series.
func (m *Metrics) Ports(ps []PortUse) error {
	top, err := topPorts(ps, m.top)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ports = top
	return nil
}

// Waiting says what the agent waits for before its first sweep (the
// cluster, at start), "" when nothing: /readyz gives it as its reason
// until a sweep has run.
func (m *Metrics) Waiting(what string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.health.waiting = what
}

// Ready returns nil when the agent is ready (a sweep has succeeded and
// fewer than Options.UnreadyAfter have failed since), else the reason in
// one line.
func (m *Metrics) Ready() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.health.ready()
}

// Gatherer is the registry behind /metrics, for tests and for
// registering more collectors.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves /metrics (Prometheus' text or protobuf format, as the
// scraper asks), /healthz (200 while the process serves) and /readyz (200
// when Ready, else 503 with the reason in one line).
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A series that cannot be collected must not hide all others;
		// promhttp_metric_handler_errors_total counts such errors.
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := m.Ready(); err != nil {
			plain(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		plain(w, http.StatusOK, "ok")
	})
	return mux
}

func plain(w http.ResponseWriter, code int, line string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, line)
}

// EventsWriter records whether this agent writes the Events (holds the
// Lease).
func (m *Metrics) EventsWriter(writing bool) {
	v := 0.0
	if writing {
		v = 1
	}
	m.eventsWriter.Set(v)
}

// EventWritten counts an Event this agent wrote.
func (m *Metrics) EventWritten(reason string) { m.eventsWritten.WithLabelValues(reason).Inc() }

// EventError counts an Event this agent failed to write.
func (m *Metrics) EventError() { m.eventErrors.Inc() }
