package metrics

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/egwct/egwct/pkg/sweep"
)

// at is the fixed clock of the tests.
var at = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newMetrics(t *testing.T, o Options) *Metrics {
	t.Helper()
	m, err := New(BuildInfo{Version: "v1.2.3", Revision: "abc123", Date: "2026-01-02T15:04:05Z"}, o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// result is a sweep result where every listed slot saw entries in every
// state, with idle times spread over all buckets.
func result(slots ...uint32) *sweep.Result {
	res := &sweep.Result{Duration: 120 * time.Millisecond, Counts: map[uint32]*[4]sweep.Counts{}}
	for _, s := range slots {
		cs := new([4]sweep.Counts)
		for st := range cs {
			c := &cs[st]
			for b := range c.Idle {
				c.Idle[b] = uint64(b + 1)
				c.Seen += uint64(b + 1)
			}
			if s != 0 {
				c.Expired, c.DeletedCT, c.DeletedNAT, c.Refreshed = 5, 4, 8, 1
			}
			res.Entries += c.Seen
		}
		res.Counts[s] = cs
	}
	return res
}

// scrape gets /metrics in the text format and parses it with Prometheus'
// own parser.
func scrape(t *testing.T, m *Metrics) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	text := rec.Body.String()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus' parser refuses the output: %v\n%s", err, text)
	}
	return text, fams
}

// labelsOf lists the value of label name in every series of family f.
func labelsOf(fams map[string]*dto.MetricFamily, f, name string) []string {
	var out []string
	for _, m := range fams[f].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				out = append(out, l.GetValue())
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// realistic runs the sequence an agent goes through: engine, cluster, a
// policy set with an invalid policy, sweeps, a failed sweep, ports.
func realistic(t *testing.T, m *Metrics) {
	t.Helper()
	m.Engine(sweep.Iterator.String())
	m.ClusterUp(true)
	if err := m.Policies([]Policy{
		{Name: "payments-egress", Valid: true, InForce: true, Keys: 12},
		{Name: "crawler-egress", Valid: false, InForce: true, Keys: 3},
		{Name: "never-valid", Valid: false},
	}); err != nil {
		t.Fatal(err)
	}
	names := map[uint32]string{1: "payments-egress", 2: "crawler-egress"}
	if err := m.Sweep(names, result(0, 1, 2), at); err != nil {
		t.Fatal(err)
	}
	m.SweepFailed(errors.New("BPF program refused"))
	if err := m.Sweep(names, result(0, 1, 2), at.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	m.ReloadFailed()
	m.MapsReopened()
	m.ClusterError()
	m.ClusterUp(false)
	if err := m.Ports([]PortUse{
		{Egress: netip.MustParseAddr("192.0.2.10"), Dst: netip.MustParseAddr("198.51.100.7"), DstPort: 443, Proto: 6, Used: 30000},
		{Egress: netip.MustParseAddr("192.0.2.10"), Dst: netip.MustParseAddr("198.51.100.8"), DstPort: 53, Proto: 17, Used: 12},
		{Egress: netip.MustParseAddr("2001:db8::10"), Dst: netip.MustParseAddr("2001:db8:1::1"), Proto: 58, Used: 2},
	}); err != nil {
		t.Fatal(err)
	}
}

func TestLintClean(t *testing.T) {
	m := newMetrics(t, Options{})
	realistic(t, m)
	m.Handler() // registers promhttp_metric_handler_errors_total
	problems, err := testutil.GatherAndLint(m.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	_, fams := scrape(t, m)
	for _, name := range []string{
		"egwct_build_info", "egwct_ct_entries", "egwct_ct_idle_seconds", "egwct_ct_expired_total",
		"egwct_ct_deleted_total", "egwct_nat_deleted_total", "egwct_ct_refreshed_total",
		"egwct_sweeps_total", "egwct_sweep_errors_total", "egwct_reload_errors_total", "egwct_last_reload_successful", "egwct_map_reopens_total",
		"egwct_cluster_errors_total", "egwct_cluster_up", "egwct_policies", "egwct_policy_keys", "egwct_policy_valid",
		"egwct_last_sweep_timestamp_seconds", "egwct_sweep_entries", "egwct_sweep_duration_seconds",
		"egwct_sweep_engine_info", "egwct_snat_ports_in_use", "egwct_snat_port_capacity",
		"go_goroutines", "go_memstats_alloc_bytes", "promhttp_metric_handler_errors_total", "process_start_time_seconds", "process_resident_memory_bytes",
	} {
		if fams[name] == nil {
			t.Errorf("no %s in the output", name)
		}
	}
	if got := fams["egwct_ct_idle_seconds"].GetType(); got != dto.MetricType_HISTOGRAM {
		t.Errorf("egwct_ct_idle_seconds is a %v, want a histogram", got)
	}
	if got := fams["egwct_sweep_duration_seconds"].GetType(); got != dto.MetricType_HISTOGRAM {
		t.Errorf("egwct_sweep_duration_seconds is a %v, want a histogram", got)
	}
	for name, f := range fams {
		if f.GetType() != dto.MetricType_HISTOGRAM && slices.Contains(labelsOfAny(f), "le") {
			t.Errorf("%s (%v) has an le label", name, f.GetType())
		}
	}
	b := fams["egwct_build_info"].GetMetric()[0]
	want := map[string]string{"version": "v1.2.3", "revision": "abc123", "builddate": "2026-01-02T15:04:05Z", "goversion": "go"}
	for _, l := range b.GetLabel() {
		if w, ok := want[l.GetName()]; !ok || !strings.HasPrefix(l.GetValue(), w) {
			t.Errorf("egwct_build_info label %s=%q", l.GetName(), l.GetValue())
		}
	}
}

func labelsOfAny(f *dto.MetricFamily) []string {
	var out []string
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			out = append(out, l.GetName())
		}
	}
	return out
}

func TestControlCharactersInNames(t *testing.T) {
	for _, tc := range []struct {
		name, want string
	}{
		{"plain", "plain"},
		{"new\nline", "new\nline"},
		{"nul\x00byte", "nul\x00byte"},
		{"esc\x1b[31mred", "esc\x1b[31mred"},
		{`quo"te`, `quo"te`},
		{`back\slash\n`, `back\slash\n`},
		{"tab\tand\rreturn", "tab\tand\rreturn"},
		{"bad\xffutf8\xc3", "bad\uFFFDutf8\uFFFD"},
		{"ünïcode ✓", "ünïcode ✓"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			m := newMetrics(t, Options{})
			if err := m.Policies([]Policy{{Name: tc.name, Valid: true, InForce: true, Keys: 1}}); err != nil {
				t.Fatal(err)
			}
			if err := m.Sweep(map[uint32]string{1: tc.name}, result(0, 1), at); err != nil {
				t.Fatal(err)
			}
			m.Engine(tc.name)
			_, fams := scrape(t, m)
			for _, f := range []string{"egwct_policy_valid", "egwct_ct_expired_total"} {
				if got := labelsOf(fams, f, "policy"); !slices.Equal(got, []string{tc.want}) {
					t.Errorf("%s policy labels %q, want %q", f, got, tc.want)
				}
			}
			for _, f := range []string{"egwct_ct_entries", "egwct_ct_idle_seconds"} {
				if got := labelsOf(fams, f, "policy"); !slices.Equal(got, sorted(NoPolicy, tc.want)) {
					t.Errorf("%s policy labels %q, want %q and %q", f, got, NoPolicy, tc.want)
				}
			}
			if got := labelsOf(fams, "egwct_sweep_engine_info", "engine"); !slices.Equal(got, []string{tc.want}) {
				t.Errorf("engine label %q, want %q", got, tc.want)
			}
		})
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

// TestGoneSeries: a policy removed from the set loses its counters and its
// validity at once, and its last-sweep series with the next sweep.
func TestGoneSeries(t *testing.T) {
	m := newMetrics(t, Options{})
	both := []Policy{{Name: "a", Valid: true, InForce: true, Keys: 1}, {Name: "b", Valid: false, InForce: true, Keys: 2}}
	if err := m.Policies(both); err != nil {
		t.Fatal(err)
	}
	if err := m.Sweep(map[uint32]string{1: "a", 2: "b"}, result(0, 1, 2), at); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		do                      func() error
		valid, counters, sweeps []string
	}{
		{func() error { return nil }, []string{"a", "b"}, []string{"a", "b"}, []string{NoPolicy, "a", "b"}},
		{func() error { return m.Policies(both[:1]) }, []string{"a"}, []string{"a"}, []string{NoPolicy, "a", "b"}},
		{func() error { return m.Sweep(map[uint32]string{1: "a"}, result(0, 1), at) }, []string{"a"}, []string{"a"}, []string{NoPolicy, "a"}},
		{func() error { return m.Policies(nil) }, nil, nil, []string{NoPolicy, "a"}},
		{func() error { return m.Sweep(nil, result(0), at) }, nil, nil, []string{NoPolicy}},
	}
	for i, s := range steps {
		if err := s.do(); err != nil {
			t.Fatal(err)
		}
		_, fams := scrape(t, m)
		for _, c := range []struct {
			family string
			want   []string
		}{
			{"egwct_policy_valid", s.valid},
			{"egwct_ct_expired_total", s.counters},
			{"egwct_ct_refreshed_total", s.counters},
			{"egwct_ct_entries", s.sweeps},
			{"egwct_ct_idle_seconds", s.sweeps},
		} {
			if got := labelsOf(fams, c.family, "policy"); !slices.Equal(got, c.want) {
				t.Errorf("step %d: %s policies %q, want %q", i, c.family, got, c.want)
			}
		}
	}
}

// TestCounterComesBack: a policy that leaves and comes back counts again
// from 0.
func TestCounterComesBack(t *testing.T) {
	m := newMetrics(t, Options{})
	p := []Policy{{Name: "a", Valid: true, InForce: true}}
	names := map[uint32]string{1: "a"}
	for _, step := range []func() error{
		func() error { return m.Policies(p) },
		func() error { return m.Sweep(names, result(1), at) },
		func() error { return m.Sweep(names, result(1), at) },
		func() error { return m.Policies(nil) },
		func() error { return m.Policies(p) },
		func() error { return m.Sweep(names, result(1), at) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	want := `# HELP egwct_ct_deleted_total CT entries deleted (reclaim mode).
# TYPE egwct_ct_deleted_total counter
egwct_ct_deleted_total{policy="a",state="closing"} 4
egwct_ct_deleted_total{policy="a",state="established"} 4
egwct_ct_deleted_total{policy="a",state="non-tcp"} 4
egwct_ct_deleted_total{policy="a",state="syn"} 4
`
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), "egwct_ct_deleted_total"); err != nil {
		t.Error(err)
	}
}

func TestExactValues(t *testing.T) {
	m := newMetrics(t, Options{TopPorts: 2})
	realistic(t, m)
	want := `# HELP egwct_ct_entries CT entries seen by the last sweep, per policy and state.
# TYPE egwct_ct_entries gauge
egwct_ct_entries{policy="(none)",state="closing"} 36
egwct_ct_entries{policy="(none)",state="established"} 36
egwct_ct_entries{policy="(none)",state="non-tcp"} 36
egwct_ct_entries{policy="(none)",state="syn"} 36
egwct_ct_entries{policy="crawler-egress",state="closing"} 36
egwct_ct_entries{policy="crawler-egress",state="established"} 36
egwct_ct_entries{policy="crawler-egress",state="non-tcp"} 36
egwct_ct_entries{policy="crawler-egress",state="syn"} 36
egwct_ct_entries{policy="payments-egress",state="closing"} 36
egwct_ct_entries{policy="payments-egress",state="established"} 36
egwct_ct_entries{policy="payments-egress",state="non-tcp"} 36
egwct_ct_entries{policy="payments-egress",state="syn"} 36
# HELP egwct_ct_expired_total CT entries found idle longer than their policy allows.
# TYPE egwct_ct_expired_total counter
egwct_ct_expired_total{policy="crawler-egress",state="closing"} 10
egwct_ct_expired_total{policy="crawler-egress",state="established"} 10
egwct_ct_expired_total{policy="crawler-egress",state="non-tcp"} 10
egwct_ct_expired_total{policy="crawler-egress",state="syn"} 10
egwct_ct_expired_total{policy="payments-egress",state="closing"} 10
egwct_ct_expired_total{policy="payments-egress",state="established"} 10
egwct_ct_expired_total{policy="payments-egress",state="non-tcp"} 10
egwct_ct_expired_total{policy="payments-egress",state="syn"} 10
# HELP egwct_policies Policies with timeouts in force.
# TYPE egwct_policies gauge
egwct_policies 2
# HELP egwct_policy_keys (pod, CIDR) keys in force.
# TYPE egwct_policy_keys gauge
egwct_policy_keys 15
# HELP egwct_policy_valid 1 when the policy's timeout text is accepted, 0 when it is refused (the policy keeps its last good timeouts, or none).
# TYPE egwct_policy_valid gauge
egwct_policy_valid{policy="crawler-egress"} 0
egwct_policy_valid{policy="never-valid"} 0
egwct_policy_valid{policy="payments-egress"} 1
# HELP egwct_sweeps_total Sweeps run, successful or not.
# TYPE egwct_sweeps_total counter
egwct_sweeps_total 3
# HELP egwct_sweep_errors_total Sweeps that failed, including failures to open Cilium's maps.
# TYPE egwct_sweep_errors_total counter
egwct_sweep_errors_total 1
# HELP egwct_last_sweep_timestamp_seconds Unix time of the last successful sweep.
# TYPE egwct_last_sweep_timestamp_seconds gauge
egwct_last_sweep_timestamp_seconds 1.74083041e+09
# HELP egwct_sweep_entries CT entries seen by the last successful sweep.
# TYPE egwct_sweep_entries gauge
egwct_sweep_entries 432
# HELP egwct_cluster_up 1 while the API server answers, 0 while it cannot be reached (--from-cluster).
# TYPE egwct_cluster_up gauge
egwct_cluster_up 0
# HELP egwct_sweep_engine_info Always 1; the label names the sweep engine in use.
# TYPE egwct_sweep_engine_info gauge
egwct_sweep_engine_info{engine="iterator"} 1
# HELP egwct_snat_ports_in_use SNAT source ports in use per egress IP and destination, for the tuples with the most.
# TYPE egwct_snat_ports_in_use gauge
egwct_snat_ports_in_use{dst_ip="198.51.100.7",dst_port="443",egress_ip="192.0.2.10",proto="TCP"} 30000
egwct_snat_ports_in_use{dst_ip="198.51.100.8",dst_port="53",egress_ip="192.0.2.10",proto="UDP"} 12
# HELP egwct_snat_port_capacity SNAT source ports one egress IP has per destination: the ports above the node's node-port range.
# TYPE egwct_snat_port_capacity gauge
egwct_snat_port_capacity 32768
`
	names := []string{"egwct_ct_entries", "egwct_ct_expired_total", "egwct_policies", "egwct_policy_keys", "egwct_policy_valid",
		"egwct_sweeps_total", "egwct_sweep_errors_total", "egwct_last_sweep_timestamp_seconds", "egwct_sweep_entries",
		"egwct_cluster_up", "egwct_sweep_engine_info", "egwct_snat_ports_in_use", "egwct_snat_port_capacity"}
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// One idle histogram, bucket by bucket: 1..8 entries in the 8 buckets.
	wantIdle := `# HELP egwct_ct_idle_seconds Idle time of the CT entries of the last sweep, per policy and state; _sum is a lower bound (each entry counts at its bucket's lower bound).
# TYPE egwct_ct_idle_seconds histogram
egwct_ct_idle_seconds_bucket{policy="payments-egress",state="syn",le="10"} 1
egwct_ct_idle_seconds_bucket{policy="payments-egress",state="syn",le="60"} 3
egwct_ct_idle_seconds_bucket{policy="payments-egress",state="syn",le="300"} 6
egwct_ct_idle_seconds_bucket{policy="payments-egress",state="syn",le="900"} 10
egwct_ct_idle_seconds_bucket{policy="payments-egress",state="syn",le="3600"} 15
egwct_ct_idle_seconds_bucket{policy="payments-egress",state="syn",le="7200"} 21
egwct_ct_idle_seconds_bucket{policy="payments-egress",state="syn",le="21600"} 28
egwct_ct_idle_seconds_bucket{policy="payments-egress",state="syn",le="+Inf"} 36
egwct_ct_idle_seconds_sum{policy="payments-egress",state="syn"} 250700
egwct_ct_idle_seconds_count{policy="payments-egress",state="syn"} 36
`
	g := filterGatherer{m.Gatherer(), "payments-egress", "syn"}
	if err := testutil.GatherAndCompare(g, strings.NewReader(wantIdle), "egwct_ct_idle_seconds"); err != nil {
		t.Error(err)
	}
}

// filterGatherer keeps the series of one policy and state.
type filterGatherer struct {
	g interface {
		Gather() ([]*dto.MetricFamily, error)
	}
	policy, state string
}

func (f filterGatherer) Gather() ([]*dto.MetricFamily, error) {
	fams, err := f.g.Gather()
	for _, fam := range fams {
		fam.Metric = slices.DeleteFunc(fam.Metric, func(m *dto.Metric) bool {
			var p, s string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "policy":
					p = l.GetValue()
				case "state":
					s = l.GetValue()
				}
			}
			return p != f.policy || s != f.state
		})
	}
	return fams, err
}

// TestCountersOnlyForTheSet: once a policy set is known, a sweep does not
// bring back the counters of a policy outside it.
func TestCountersOnlyForTheSet(t *testing.T) {
	m := newMetrics(t, Options{})
	names := map[uint32]string{1: "a", 2: "b"}
	if err := m.Sweep(names, result(1, 2), at); err != nil {
		t.Fatal(err)
	}
	_, fams := scrape(t, m)
	if got := labelsOf(fams, "egwct_ct_expired_total", "policy"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("before any set: %q", got)
	}
	if err := m.Policies([]Policy{{Name: "a", Valid: true, InForce: true}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Sweep(names, result(1, 2), at); err != nil {
		t.Fatal(err)
	}
	_, fams = scrape(t, m)
	if got := labelsOf(fams, "egwct_ct_expired_total", "policy"); !slices.Equal(got, []string{"a"}) {
		t.Errorf("with the set {a}: %q", got)
	}
	if got := labelsOf(fams, "egwct_ct_entries", "policy"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("the last sweep saw a and b: %q", got)
	}
}

// TestLastReloadSuccessful: egwct_last_reload_successful is 1 until a
// reload is refused, 0 from then until a policy set is put in force.
func TestLastReloadSuccessful(t *testing.T) {
	m := newMetrics(t, Options{})
	want := func(ok, refused float64) {
		t.Helper()
		_, fams := scrape(t, m)
		if got := fams["egwct_last_reload_successful"].GetMetric()[0].GetGauge().GetValue(); got != ok {
			t.Errorf("egwct_last_reload_successful = %v, want %v", got, ok)
		}
		if got := fams["egwct_reload_errors_total"].GetMetric()[0].GetCounter().GetValue(); got != refused {
			t.Errorf("egwct_reload_errors_total = %v, want %v", got, refused)
		}
	}
	want(1, 0)
	m.ReloadFailed()
	want(0, 1)
	m.ReloadFailed()
	want(0, 2)
	if err := m.Policies([]Policy{{Name: "", Valid: true}}); err == nil {
		t.Fatal("a policy without a name was accepted")
	}
	want(0, 2) // a refused call changes nothing
	if err := m.Policies([]Policy{{Name: "a", Valid: false, InForce: true}}); err != nil {
		t.Fatal(err)
	}
	want(1, 2) // in force, even with a refused policy in it
}
