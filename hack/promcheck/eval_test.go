package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
)

// sampleValues are label values for the synthetic series of TestEvaluate:
// two policies, states and destination ports, so that a join that needs
// group_left fails as it would on a real node.
var sampleValues = map[string][]string{
	"policy": {"payments-egress", "billing-egress"}, "state": {"established", "non-tcp"}, "dst_port": {"443", "53"},
	"egress_ip": {"192.0.2.10"}, "dst_ip": {"203.0.113.5"}, "proto": {"TCP"}, "engine": {"iterator"},
	"reason": {"TimeoutsApplied"}, "cause": {"encoding"}, "version": {"v1.0.0"}, "revision": {"abc123"},
	"builddate": {"2026-01-02T15:04:05Z"}, "goversion": {"go1.26.0"}, "quantile": {"0.5"},
}

// syntheticSeries are series shaped as the agent serves them (every
// series name of docs/metrics.md with all its labels, every bucket of
// each histogram), for two agents, in promqltest's load format: counters
// grow, the last sweep is always just now, ports are near their limit.
func syntheticSeries(m *Metrics) string {
	var b strings.Builder
	b.WriteString("load 1m\n")
	for _, name := range slices.Sorted(maps.Keys(m.Labels)) {
		sets := [][]string{nil}
		for _, l := range m.Labels[name] {
			if l == "le" {
				continue
			}
			vs := sampleValues[l]
			if len(vs) == 0 {
				vs = []string{"x"}
			}
			var next [][]string
			for _, set := range sets {
				for _, v := range vs {
					next = append(next, append(slices.Clone(set), fmt.Sprintf("%s=%q", l, v)))
				}
			}
			sets = next
		}
		for _, inst := range []string{"node-a:9978", "node-b:9978"} {
			for _, set := range sets {
				labels := append([]string{fmt.Sprintf("instance=%q", inst), `job="egwct"`}, set...)
				series := func(extra, values string) {
					if extra != "" {
						labels = append(slices.Clone(labels), extra)
					}
					fmt.Fprintf(&b, "  %s{%s} %s\n", name, strings.Join(labels, ", "), values)
				}
				switch {
				case strings.HasSuffix(name, "_bucket"):
					base := labels
					for i, le := range m.Buckets[name] {
						labels = base
						series(fmt.Sprintf("le=%q", le), fmt.Sprintf("0+%dx30", i+1))
					}
				case strings.HasSuffix(name, "_total") || strings.HasSuffix(name, "_count") || strings.HasSuffix(name, "_sum"):
					series("", "0+5x30")
				case name == "egwct_last_sweep_timestamp_seconds":
					series("", "0+60x30")
				case name == "process_start_time_seconds":
					series("", "0x30")
				case name == "egwct_snat_port_capacity":
					series("", "32768x30")
				case name == "egwct_snat_ports_in_use":
					series("", "30000x30")
				case name == "egwct_sweep_entries" || name == "egwct_ct_entries":
					series("", "1000000x30")
				default:
					series("", "1x30")
				}
			}
		}
	}
	return b.String()
}

// filters tells whether expr drops series by value (a comparison without
// bool), so that an empty result may be right.
func filters(expr string) bool {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(substitute(expr))
	if err != nil {
		return false
	}
	found := false
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if b, ok := n.(*parser.BinaryExpr); ok && b.Op.IsComparisonOperator() && !b.ReturnBool {
			found = true
		}
		return nil
	})
	return found
}

// TestEvaluate evaluates every expression of the chart's dashboard and
// alerts with Prometheus' engine on series shaped as the agent serves
// them: none fails at run time (a many-to-one match without group_left, a
// wrong type), and each that does not filter by value returns series
// (its joins match).
func TestEvaluate(t *testing.T) {
	m := agentMetrics(t)
	c := render(t, monitoring...)
	exprs, err := c.Exprs()
	if err != nil {
		t.Fatal(err)
	}
	eval := evaluator(t, m)
	for _, e := range exprs {
		if empty, err := eval(e.Expr); err != nil {
			t.Errorf("%s: %v", e.Where, err)
		} else if empty && !filters(e.Expr) {
			t.Errorf("%s: no result on the agent's series: %s", e.Where, e.Expr)
		}
	}
	// What it catches.
	for expr, want := range map[string]string{
		`egwct_snat_ports_in_use / ignoring(egress_ip, dst_ip, dst_port, proto) egwct_snat_port_capacity`: "many-to-one",
		`egwct_ct_entries / on(instance) group_left egwct_ct_expired_total`:                               "many-to-many",
		`histogram_quantile(0.9, sum by (le) (egwct_ct_idle_seconds_count))`:                              "empty",
	} {
		empty, err := eval(expr)
		if err == nil && !(want == "empty" && empty) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("%s: empty %v, %v; want %s", expr, empty, err, want)
		}
	}
}

// evaluator returns a function that evaluates an expression (Grafana's
// variables substituted) at 30 minutes into the synthetic series.
func evaluator(t *testing.T, m *Metrics) func(expr string) (empty bool, err error) {
	storage := promqltest.LoadedStorage(t, syntheticSeries(m))
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	at := time.Unix(0, 0).Add(30 * time.Minute)
	return func(expr string) (bool, error) {
		q, err := engine.NewInstantQuery(context.Background(), storage, nil, substitute(expr), at)
		if err != nil {
			return false, err
		}
		defer q.Close()
		res := q.Exec(context.Background())
		if res.Err != nil {
			return false, res.Err
		}
		return empty(res.Value), nil
	}
}

func empty(v parser.Value) bool {
	switch v := v.(type) {
	case promql.Vector:
		return len(v) == 0
	case promql.Matrix:
		return len(v) == 0
	}
	return false
}
