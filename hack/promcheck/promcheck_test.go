package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// root is the repository's root, from this module's folder.
const root = "../.."

// monitoring turns on what the chart has for Prometheus and Grafana.
var monitoring = []string{"--set", "dashboards.enabled=true,prometheusRule.enabled=true"}

// render renders the chart with the Helm Go library (hack/chart.sh builds
// the renderer into a cache outside the repository the first time).
func render(t *testing.T, args ...string) *Chart {
	t.Helper()
	c, err := ReadChart(strings.NewReader(renderText(t, args...)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// renderText is the rendered chart, as hack/chart.sh prints it.
func renderText(t *testing.T, args ...string) string {
	t.Helper()
	args = append(append([]string{filepath.Join(root, "hack", "chart.sh"), "-n", "egwct-system"}, args...), filepath.Join(root, "deploy", "helm", "egwct"))
	cmd := exec.Command("sh", args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// TestRun: the command checks a rendered chart and writes its rules.
func TestRun(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	var out bytes.Buffer
	err := run([]string{"-metrics", filepath.Join(root, "docs", "metrics.md"), "-rules", rules}, strings.NewReader(renderText(t, monitoring...)), &out)
	if err != nil || !strings.Contains(out.String(), "expressions checked (1 rule files, 1 dashboards)") {
		t.Fatalf("%v: %s", err, out.String())
	}
	data, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	var f RuleFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil || len(f.Groups) != 1 || len(f.Groups[0].Rules) != len(wantAlerts) {
		t.Errorf("%v: %s", err, data)
	}
	bad := strings.Replace(renderText(t, monitoring...), "egwct_cluster_up == 0", "egwct_cluster_upp == 0", 1)
	if err := run([]string{"-metrics", filepath.Join(root, "docs", "metrics.md")}, strings.NewReader(bad), &out); err == nil || !strings.Contains(err.Error(), "egwct_cluster_upp is not a metric") {
		t.Errorf("an unknown metric: %v", err)
	}
}

func agentMetrics(t *testing.T) *Metrics {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := ReadMetrics(f)
	if err != nil {
		t.Fatalf("docs/metrics.md: %v", err)
	}
	return m
}

// TestChartPromQL: every expression of the chart's dashboard and alerts
// parses with Prometheus' parser and names only metrics and labels the
// agent serves, as a running agent's /metrics showed them
// (docs/metrics.md, which egwct's TestMetricsReference keeps true).
func TestChartPromQL(t *testing.T) {
	c := render(t, monitoring...)
	if len(c.Rules) != 1 || len(c.Dashboards) != 1 {
		t.Fatalf("%d PrometheusRules and %d dashboards, want one of each", len(c.Rules), len(c.Dashboards))
	}
	exprs, err := c.Exprs()
	if err != nil {
		t.Fatal(err)
	}
	if err := agentMetrics(t).Check(exprs); err != nil {
		t.Fatal(err)
	}
	// Without the toggles, neither is rendered.
	if off := render(t); len(off.Rules) != 0 || len(off.Dashboards) != 0 {
		t.Errorf("with the defaults: %d PrometheusRules, %d dashboards", len(off.Rules), len(off.Dashboards))
	}
}

// TestDashboard: the dashboard covers what issue 14 asks (sweeps and
// their cost, entries and expirations per policy and state, ports freed,
// SNAT port pressure per egress IP and destination) and is well formed
// for Grafana: unique panel ids, every query on the ${datasource}
// variable, every panel placed.
func TestDashboard(t *testing.T) {
	c := render(t, monitoring...)
	for where, data := range c.Dashboards {
		d, err := ParseDashboard(data)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid %q, title %q", where, d.UID, d.Title)
		}
		ids := map[int]string{}
		used := map[string]bool{}
		for _, p := range d.AllPanels() {
			if other, ok := ids[p.ID]; ok || p.ID == 0 {
				t.Errorf("panel %q: id %d (also %q)", p.Title, p.ID, other)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil {
				t.Errorf("panel %q has no gridPos", p.Title)
			}
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 || p.Description == "" {
				t.Errorf("panel %q: %d targets, description %q", p.Title, len(p.Targets), p.Description)
			}
			for _, ds := range append([]*DatasourceRef{p.Datasource}, targetSources(p)...) {
				if ds == nil || ds.UID != "${datasource}" || ds.Type != "prometheus" {
					t.Errorf("panel %q: data source %+v, want the ${datasource} variable", p.Title, ds)
				}
			}
			for _, tg := range p.Targets {
				names, err := MetricNames(tg.Expr)
				if err != nil {
					t.Errorf("panel %q target %s: %v", p.Title, tg.RefID, err)
				}
				for _, n := range names {
					used[n] = true
				}
			}
		}
		for what, metrics := range map[string][]string{
			"sweeps":                     {"egwct_sweeps_total", "egwct_sweep_errors_total", "egwct_last_sweep_timestamp_seconds"},
			"their cost":                 {"egwct_sweep_duration_seconds_bucket", "egwct_sweep_duration_seconds_sum", "process_cpu_seconds_total", "egwct_sweep_entries"},
			"entries per policy, state":  {"egwct_ct_entries", "egwct_ct_idle_seconds_bucket"},
			"expirations":                {"egwct_ct_expired_total", "egwct_ct_deleted_total"},
			"ports freed":                {"egwct_nat_deleted_total"},
			"port pressure":              {"egwct_snat_ports_in_use", "egwct_snat_port_capacity"},
			"what the alerts watch":      {"egwct_policy_valid", "egwct_reload_errors_total", "egwct_last_reload_successful", "egwct_cluster_up"},
			"the agents' builds, engine": {"egwct_build_info", "egwct_sweep_engine_info"},
		} {
			for _, m := range metrics {
				if !used[m] {
					t.Errorf("%s: no panel shows %s (%s)", where, m, what)
				}
			}
		}
	}
}

func targetSources(p Panel) []*DatasourceRef {
	var out []*DatasourceRef
	for _, tg := range p.Targets {
		out = append(out, tg.Datasource)
	}
	return out
}

// wantAlerts are the alerts the chart ships: what issue 14 asks for
// (sweeps failing or stale, a policy set refused, the cluster
// unreachable, port pressure), and a policy's text refused.
var wantAlerts = []string{
	"EgwctSweepsFailing", "EgwctSweepsStale", "EgwctPolicyRefused", "EgwctPolicySetRefused",
	"EgwctClusterUnreachable", "EgwctSNATPortPressure",
}

func alerts(c *Chart) map[string]Rule {
	out := map[string]Rule{}
	for _, f := range c.Rules {
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Alert != "" {
					out[r.Alert] = r
				}
			}
		}
	}
	return out
}

// TestAlerts runs `promtool test rules` (testdata/alerts_test.yaml) on the
// rules of the PrometheusRule the chart renders with its defaults, and
// checks that each alert has a test case where it fires.
func TestAlerts(t *testing.T) {
	c := render(t, monitoring...)
	got := alerts(c)
	for _, name := range wantAlerts {
		if _, ok := got[name]; !ok {
			t.Errorf("the chart has no alert %s", name)
		}
	}
	for name, r := range got {
		if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("alert %s: severity, summary and description are needed: %+v", name, r)
		}
	}
	tests, err := os.ReadFile("testdata/alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var suite struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &suite); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range suite.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	for name := range got {
		if !fires[name] {
			t.Errorf("testdata/alerts_test.yaml has no case where %s fires", name)
		}
	}

	promtool := os.Getenv("EGWCT_PROMTOOL")
	if promtool == "" {
		promtool, _ = exec.LookPath("promtool")
	}
	if promtool == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no promtool: make promcheck (hack/promtool.sh) provides it")
		}
		t.Skip("no promtool (EGWCT_PROMTOOL or PATH): make promcheck takes Debian's")
	}
	dir := t.TempDir()
	rules, err := yaml.Marshal(c.Rules[0])
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"rules.yaml": rules, "alerts_test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestAlertThresholds: the chart's values set the thresholds of the
// port pressure and stale sweeps alerts.
func TestAlertThresholds(t *testing.T) {
	// A file, as helm -f (a number), and helm --set (which passes 0.5 as
	// a string).
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte("prometheusRule:\n  portPressureThreshold: 0.5\n  sweepStaleAfterSeconds: 120\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		set   []string
		alert string
		want  string
	}{
		{nil, "EgwctSNATPortPressure", "egwct_snat_port_capacity > 0.8"},
		{nil, "EgwctSweepsStale", "egwct_last_sweep_timestamp_seconds)\n) > 300"},
		{[]string{"-f", values}, "EgwctSNATPortPressure", "egwct_snat_port_capacity > 0.5"},
		{[]string{"-f", values}, "EgwctSweepsStale", "egwct_last_sweep_timestamp_seconds)\n) > 120"},
		{[]string{"--set", "prometheusRule.portPressureThreshold=0.5"}, "EgwctSNATPortPressure", "egwct_snat_port_capacity > 0.5"},
		{[]string{"--set", "prometheusRule.portPressureThreshold=1"}, "EgwctSNATPortPressure", "egwct_snat_port_capacity > 1"},
	} {
		r, ok := alerts(render(t, append(slices.Clone(monitoring), tc.set...)...))[tc.alert]
		if !ok {
			t.Fatalf("no %s", tc.alert)
		}
		if !strings.HasSuffix(r.Expr, tc.want) {
			t.Errorf("%v: %s: %q, want it to end in %q", tc.set, tc.alert, r.Expr, tc.want)
		}
	}
}

// TestObservabilityDoc: docs/observability.md names every alert, every
// row of the dashboard and the chart values that tune the alerts.
func TestObservabilityDoc(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "docs", "observability.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	c := render(t, monitoring...)
	var want []string
	for name := range alerts(c) {
		want = append(want, "`"+name+"`")
	}
	for _, data := range c.Dashboards {
		d, err := ParseDashboard(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range d.AllPanels() {
			if p.Type == "row" {
				want = append(want, p.Title)
			}
		}
	}
	want = append(want, "prometheusRule.portPressureThreshold", "prometheusRule.sweepStaleAfterSeconds", "dashboards.enabled", "prometheusRule.enabled")
	for _, w := range want {
		if !strings.Contains(doc, w) {
			t.Errorf("docs/observability.md does not mention %s", w)
		}
	}
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
		err  string
	}{
		{`sum by (instance) (rate(egwct_sweeps_total{instance=~"$instance"}[$__rate_interval]))`, []string{"egwct_sweeps_total"}, ""},
		{`a / ignoring(x) group_left b{instance=~"${instance}"} > 0.8`, []string{"a", "b"}, ""},
		{`{__name__="egwct_cluster_up"} == 0`, []string{"egwct_cluster_up"}, ""},
		{`time() - x offset $__range`, []string{"x"}, ""},
		{`rate(x[$__interval])`, []string{"x"}, ""},
		{`{job="egwct"}`, nil, "names no metric"},
		{`vector(1)`, nil, "selects no metric"},
		{`sum(rate(x[5m])`, nil, "unclosed"},
		{`rate(x[$unknown])`, nil, "parse"},
	} {
		got, err := MetricNames(tc.expr)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.expr, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v %v, want %v", tc.expr, got, err, tc.want)
		}
	}
}

const exampleDoc = "| Metric | Type | Labels | Help |\n|---|---|---|---|\n" +
	"| `egwct_ct_entries` | gauge | policy, state | CT entries. |\n" +
	"| `egwct_sweep_duration_seconds` | histogram |  | Duration. |\n" +
	"| `go_gc_duration_seconds` | summary |  |  |\n" +
	"\n| Histogram | Buckets |\n|---|---|\n" +
	"| `egwct_sweep_duration_seconds` | 0.001, 1, 3600, +Inf |\n"

func TestReadMetrics(t *testing.T) {
	m, err := ReadMetrics(strings.NewReader(exampleDoc))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"egwct_ct_entries":                    {"policy", "state"},
		"egwct_sweep_duration_seconds_bucket": {"le"},
		"egwct_sweep_duration_seconds_sum":    nil,
		"egwct_sweep_duration_seconds_count":  nil,
		"go_gc_duration_seconds":              {"quantile"},
		"go_gc_duration_seconds_sum":          nil,
		"go_gc_duration_seconds_count":        nil,
	}
	if fmt.Sprint(m.Labels) != fmt.Sprint(want) {
		t.Errorf("got %v\nwant %v", m.Labels, want)
	}
	if b := m.Buckets["egwct_sweep_duration_seconds_bucket"]; !slices.Equal(b, []string{"0.001", "1", "3600", "+Inf"}) || len(m.Buckets) != 1 {
		t.Errorf("buckets %v", m.Buckets)
	}
	if _, err := ReadMetrics(strings.NewReader("# nothing\n")); err == nil {
		t.Error("a file without rows was accepted")
	}
	if _, err := ReadMetrics(strings.NewReader(exampleDoc + "| `egwct_ct_entries` | 1, +Inf |\n")); err == nil {
		t.Error("buckets of a gauge were accepted")
	}
}

func TestCheck(t *testing.T) {
	m, err := ReadMetrics(strings.NewReader(exampleDoc))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		expr, err string
	}{
		{`sum by (policy) (egwct_ct_entries{instance=~"$instance", policy=~"$policy"})`, ""},
		{`histogram_quantile(0.9, rate(egwct_sweep_duration_seconds_bucket{le!="+Inf"}[5m]))`, ""},
		{`egwct_sweep_duration_seconds`, "egwct_sweep_duration_seconds is not a metric the agent serves"},
		{`egwct_ct_entry`, "egwct_ct_entry is not a metric"},
		{`egwct_ct_entries{policies="a"}`, "egwct_ct_entries has no label policies"},
		{`rate(go_gc_duration_seconds_count[5m]) and go_gc_duration_seconds{quantile="1"}`, ""},
		{`egwct_sweep_duration_seconds_bucket{le="3600"} - egwct_sweep_duration_seconds_bucket{le="+Inf"}`, ""},
		{`egwct_sweep_duration_seconds_bucket{le="60"}`, `has no bucket le="60"`},
		{`egwct_sweep_duration_seconds_bucket{le=~"1|60"}`, ""},
	} {
		err := m.Check([]Expr{{Where: "here", Expr: tc.expr}})
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %v, want %q", tc.expr, err, tc.err)
		}
	}
}

func TestResultLabels(t *testing.T) {
	m, err := ReadMetrics(strings.NewReader(exampleDoc))
	if err != nil {
		t.Fatal(err)
	}
	target := strings.Join(slices.Sorted(slices.Values(TargetLabels)), ", ")
	for _, tc := range []struct {
		expr, want, err string
	}{
		{`sum by (policy) (egwct_ct_entries)`, "policy", ""},
		{`sum by (polcy) (egwct_ct_entries)`, "", "sum by names polcy"},
		{`sum without (policy) (egwct_ct_entries)`, "container, endpoint, instance, job, namespace, node, pod, service, state", ""},
		{`rate(egwct_sweep_duration_seconds_count[$__rate_interval])`, target, ""},
		{`histogram_quantile(0.5, sum by (le, instance) (rate(egwct_sweep_duration_seconds_bucket[5m])))`, "instance", ""},
		{`histogram_quantile(0.5, sum by (instance) (rate(egwct_sweep_duration_seconds_bucket[5m])))`, "", "histogram_quantile names le"},
		{`1 - sum by (state) (egwct_ct_entries)`, "state", ""},
		{`sum by (policy) (egwct_ct_entries) and on(instance) egwct_ct_entries`, "", "on names instance"},
		{`egwct_ct_entries / ignoring(state) group_left(le) egwct_sweep_duration_seconds_count`, "", "group_left names le"},
		{`egwct_ct_entries / on(instance) group_left egwct_sweep_duration_seconds_count`, "container, endpoint, instance, job, namespace, node, pod, policy, service, state", ""},
		{`topk(3, sum by (policy, state) (egwct_ct_entries))`, "policy, state", ""},
		{`count(egwct_ct_entries == 0) or vector(0)`, "", ""},
		{`absent(egwct_ct_entries)`, "?", ""},
	} {
		got, err := m.ResultLabels(tc.expr)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.expr, err, tc.err)
			}
			continue
		}
		names := "?"
		if got != nil {
			names = got.names()
		}
		if err != nil || names != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.expr, names, err, tc.want)
		}
	}
	shown := m.Check([]Expr{{Where: "legend", Expr: `sum by (policy) (egwct_ct_entries)`, Shows: LegendLabels("{{policy}} on {{instance}}")}})
	if shown == nil || !strings.Contains(shown.Error(), "shows label instance") {
		t.Errorf("a legend showing a label the result does not have: %v", shown)
	}
	if got := AlertLabels("{{ $labels.egress_ip }} {{ $value | humanizePercentage }} {{ $labels.dst_ip }}:{{ $labels.dst_port }} {{ with $labels.node }}{{ . }}{{ else }}x{{ end }}"); !slices.Equal(got, []string{"egress_ip", "dst_ip", "dst_port", "node"}) {
		t.Errorf("AlertLabels: %v", got)
	}
	if got := LegendLabels("{{policy}} {{ state }} → {{dst_ip}}:{{dst_port}}"); !slices.Equal(got, []string{"policy", "state", "dst_ip", "dst_port"}) {
		t.Errorf("LegendLabels: %v", got)
	}
}
