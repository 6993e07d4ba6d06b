// Command promcheck checks the PromQL of egwct's Helm chart: it reads the
// rendered chart (hack/chart.sh with dashboards.enabled and
// prometheusRule.enabled) on standard input, parses every expression of
// its Grafana dashboards and PrometheusRules with Prometheus' own parser,
// and fails when one names a metric, or matches on a label, that the
// agent does not serve (docs/metrics.md, generated from a running agent).
// With -rules it writes the PrometheusRule's rules as a Prometheus rule
// file, for promtool.
//
//	hack/chart.sh --set dashboards.enabled=true,prometheusRule.enabled=true deploy/helm/egwct |
//		promcheck -metrics docs/metrics.md [-rules rules.yaml]
//
// A tool module of its own, so that egwct's module never depends on
// Prometheus; its test (make promcheck, part of make test) renders the
// chart, runs these checks, and runs `promtool test rules` on synthetic
// series for every alert.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/yaml"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "promcheck:", err)
		os.Exit(1)
	}
}

func run(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("promcheck", flag.ContinueOnError)
	doc := fs.String("metrics", "docs/metrics.md", "the metrics the agent serves")
	rules := fs.String("rules", "", "write the PrometheusRule's rules to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := ReadChart(in)
	if err != nil {
		return err
	}
	f, err := os.Open(*doc)
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := ReadMetrics(f)
	if err != nil {
		return fmt.Errorf("%s: %w", *doc, err)
	}
	exprs, err := c.Exprs()
	if err != nil {
		return err
	}
	if err := m.Check(exprs); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d expressions checked (%d rule files, %d dashboards)\n", len(exprs), len(c.Rules), len(c.Dashboards))
	if *rules != "" {
		if len(c.Rules) != 1 {
			return fmt.Errorf("-rules: want one PrometheusRule, the chart has %d", len(c.Rules))
		}
		data, err := yaml.Marshal(c.Rules[0])
		if err != nil {
			return err
		}
		return os.WriteFile(*rules, data, 0o644)
	}
	return nil
}
