package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// Expr is one PromQL expression of a rendered chart: where it is, and the
// metric names it selects.
type Expr struct {
	Where   string   `json:"where"`
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
	// Shows are the labels of its result a legend or the alert's
	// templates show.
	Shows []string `json:"shows,omitempty"`
}

// Chart is what a rendered chart holds for Prometheus and Grafana.
type Chart struct {
	// Rules is the spec of each PrometheusRule: a Prometheus rule file.
	Rules []RuleFile
	// Dashboards are the Grafana dashboards of the ConfigMaps, by
	// "ConfigMap NAME key KEY".
	Dashboards map[string]string
}

// RuleFile is a Prometheus rule file, as a PrometheusRule's spec holds it.
type RuleFile struct {
	Name   string      `json:"-"`
	Groups []RuleGroup `json:"groups"`
}

// RuleGroup is one group of rules.
type RuleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []Rule `json:"rules"`
}

// Rule is an alerting or recording rule.
type Rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ReadChart reads a rendered chart (a stream of YAML documents, as
// `helm template` prints) and keeps its PrometheusRules and the .json keys
// of its ConfigMaps.
func ReadChart(r io.Reader) (*Chart, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	c := &Chart{Dashboards: map[string]string{}}
	for i, doc := range splitDocuments(string(data)) {
		var obj struct {
			Kind     string
			Metadata struct{ Name string }
			Data     map[string]string
			Spec     json.RawMessage
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		switch obj.Kind {
		case "PrometheusRule":
			// Strict: a misspelt field would be dropped by the operator.
			dec := json.NewDecoder(bytes.NewReader(obj.Spec))
			dec.DisallowUnknownFields()
			var f RuleFile
			if err := dec.Decode(&f); err != nil {
				return nil, fmt.Errorf("PrometheusRule %s: %w", obj.Metadata.Name, err)
			}
			f.Name = obj.Metadata.Name
			c.Rules = append(c.Rules, f)
		case "ConfigMap":
			for k, v := range obj.Data {
				if strings.HasSuffix(k, ".json") {
					c.Dashboards[fmt.Sprintf("ConfigMap %s key %s", obj.Metadata.Name, k)] = v
				}
			}
		}
	}
	return c, nil
}

// splitDocuments splits a YAML stream at its "---" lines.
func splitDocuments(s string) []string {
	var docs []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		if l := sc.Text(); l == "---" || strings.HasPrefix(l, "--- ") {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(sc.Text() + "\n")
	}
	docs = append(docs, cur.String())
	out := docs[:0]
	for _, d := range docs {
		if strings.TrimSpace(stripComments(d)) != "" {
			out = append(out, d)
		}
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// Exprs returns every PromQL expression of the chart's rules and
// dashboards, with the metrics each selects, in a stable order. An
// expression that does not parse, or selects no metric by name, is an
// error naming where it is.
func (c *Chart) Exprs() ([]Expr, error) {
	var out []Expr
	var errs []error
	add := func(where, expr string, shows []string) {
		names, err := MetricNames(expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q: %w", where, expr, err))
			return
		}
		out = append(out, Expr{Where: where, Expr: expr, Metrics: names, Shows: shows})
	}
	for _, f := range c.Rules {
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				var text []string
				for _, kv := range []map[string]string{r.Labels, r.Annotations} {
					for _, k := range slices.Sorted(maps.Keys(kv)) {
						text = append(text, kv[k])
					}
				}
				add(fmt.Sprintf("PrometheusRule %s group %s rule %s%s", f.Name, g.Name, r.Alert, r.Record), r.Expr, AlertLabels(strings.Join(text, "\n")))
			}
		}
	}
	for _, where := range slices.Sorted(maps.Keys(c.Dashboards)) {
		d, err := ParseDashboard(c.Dashboards[where])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		for _, q := range d.Queries() {
			add(where+" "+q.Where, q.Expr, LegendLabels(q.Legend))
		}
	}
	return out, errors.Join(errs...)
}

// Dashboard is the part of a Grafana dashboard the checks read.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Panel is a Grafana panel (a row holds panels when collapsed).
type Panel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Datasource  *DatasourceRef  `json:"datasource"`
	GridPos     *map[string]int `json:"gridPos"`
	Targets     []Target        `json:"targets"`
	Panels      []Panel         `json:"panels"`
}

// Target is one query of a panel.
type Target struct {
	RefID        string         `json:"refId"`
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat"`
	Datasource   *DatasourceRef `json:"datasource"`
}

// DatasourceRef names a data source.
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Variable is a templating variable.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *DatasourceRef  `json:"datasource"`
}

// ParseDashboard reads a dashboard's JSON.
func ParseDashboard(data string) (*Dashboard, error) {
	var d Dashboard
	if err := json.Unmarshal([]byte(data), &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// AllPanels are the dashboard's panels, those inside rows included.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// Query is one PromQL expression of a dashboard, and its legend.
type Query struct{ Where, Expr, Legend string }

// labelValues is Grafana's label_values(metric, label) variable query.
var labelValues = regexp.MustCompile(`^label_values\(\s*(.+?)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)$`)

// Queries are the expressions of the dashboard's targets and of its
// query variables (for label_values(m, l): m).
func (d *Dashboard) Queries() []Query {
	var out []Query
	for _, p := range d.AllPanels() {
		for _, t := range p.Targets {
			out = append(out, Query{fmt.Sprintf("panel %q target %s", p.Title, t.RefID), t.Expr, t.LegendFormat})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			_ = json.Unmarshal(v.Query, &q.Query)
		}
		expr := q.Query
		if m := labelValues.FindStringSubmatch(expr); m != nil {
			expr = m[1]
		}
		out = append(out, Query{"variable " + v.Name, expr, ""})
	}
	return out
}

// grafanaVar is a Grafana variable in an expression: $name or ${name}.
var grafanaVar = regexp.MustCompile(`\$\{?(__[a-z_]+|[a-zA-Z_][a-zA-Z0-9_]*)\}?`)

// grafanaDurations are what Grafana's interval variables stand for, for
// the parser's sake.
var grafanaDurations = map[string]string{
	"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
}

// substitute replaces Grafana's variables as Grafana would before
// Prometheus sees the expression: its interval variables by durations,
// any other (a label value in a matcher's string) by ".*". A variable
// outside a string then fails to parse, as it would in Prometheus.
func substitute(expr string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		name := grafanaVar.FindStringSubmatch(v)[1]
		if d, ok := grafanaDurations[name]; ok {
			return d
		}
		if strings.HasPrefix(name, "__") {
			return v // unknown built-in: left to fail
		}
		return ".*"
	})
}

// MetricNames parses expr (Grafana's variables substituted) and returns
// the metric names its selectors name, sorted.
func MetricNames(expr string) ([]string, error) {
	sels, err := Selectors(expr)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, s := range sels {
		seen[s.Name] = true
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

// Selector is one vector selector: a metric name and the labels its
// matchers name, with the values of its equality matchers.
type Selector struct {
	Name   string
	Labels []string
	Equals map[string]string
}

// Selectors parses expr (Grafana's variables substituted) and returns its
// vector selectors; one that names no metric is an error.
func Selectors(expr string) ([]Selector, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(substitute(expr))
	if err != nil {
		return nil, err
	}
	var out []Selector
	var errs []error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		s := Selector{Name: vs.Name, Equals: map[string]string{}}
		for _, m := range vs.LabelMatchers {
			if m.Name == "__name__" {
				if m.Type == labels.MatchEqual && s.Name == "" {
					s.Name = m.Value
				}
				continue
			}
			s.Labels = append(s.Labels, m.Name)
			if m.Type == labels.MatchEqual {
				s.Equals[m.Name] = m.Value
			}
		}
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("selector %s names no metric", vs))
			return nil
		}
		out = append(out, s)
		return nil
	})
	if len(out) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("selects no metric"))
	}
	return out, errors.Join(errs...)
}

// Metrics are the series an agent serves, as docs/metrics.md lists them.
type Metrics struct {
	// Labels are the label names of each series name.
	Labels map[string][]string
	// Buckets are the le values of each histogram's _bucket series.
	Buckets map[string][]string
}

// docRow is a row of docs/metrics.md: | `name` | type | labels | help |.
var docRow = regexp.MustCompile("^\\| `([a-zA-Z_:][a-zA-Z0-9_:]*)` \\| ([a-z]+) \\| ([a-z_, ]*) \\|")

// bucketRow is a row of its histograms' buckets: | `name` | 0.1, 1, +Inf |.
var bucketRow = regexp.MustCompile("^\\| `([a-zA-Z_:][a-zA-Z0-9_:]*)` \\| ([0-9.e+-]+(?:, [0-9.e+-]+)*, \\+Inf) \\|$")

// ReadMetrics reads docs/metrics.md (generated by egwct's
// TestMetricsReference from a running agent's /metrics). A histogram x is
// served as x_bucket (with le), x_sum and x_count; a summary as x (with
// quantile), x_sum and x_count.
func ReadMetrics(r io.Reader) (*Metrics, error) {
	m := &Metrics{Labels: map[string][]string{}, Buckets: map[string][]string{}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if row := bucketRow.FindStringSubmatch(sc.Text()); row != nil {
			m.Buckets[row[1]+"_bucket"] = strings.Split(row[2], ", ")
			continue
		}
		row := docRow.FindStringSubmatch(sc.Text())
		if row == nil {
			continue
		}
		name, typ := row[1], row[2]
		var labels []string
		for _, l := range strings.Split(row[3], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
		switch typ {
		case "histogram":
			m.Labels[name+"_bucket"] = append(slices.Clone(labels), "le")
			m.Labels[name+"_sum"], m.Labels[name+"_count"] = labels, labels
		case "summary":
			m.Labels[name] = append(slices.Clone(labels), "quantile")
			m.Labels[name+"_sum"], m.Labels[name+"_count"] = labels, labels
		default:
			m.Labels[name] = labels
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(m.Labels) == 0 {
		return nil, errors.New("no metric rows")
	}
	for name := range m.Buckets {
		if _, ok := m.Labels[name]; !ok {
			return nil, fmt.Errorf("buckets of %s, which is no histogram there", strings.TrimSuffix(name, "_bucket"))
		}
	}
	return m, nil
}

// TargetLabels are the labels Prometheus adds to every series of a
// scrape target (instance and job always; the others with the
// Prometheus operator's ServiceMonitor and PodMonitor).
var TargetLabels = []string{"instance", "job", "namespace", "pod", "container", "service", "endpoint", "node"}

// Check reports each selector of exprs that names a metric the agent does
// not serve, matches on a label its series do not have, or selects a
// histogram bucket (le="...") the histogram does not have; an aggregation
// by, or a matching on, a label its operands do not have; and a legend or
// an alert template that shows a label the result does not have.
func (m *Metrics) Check(exprs []Expr) error {
	var errs []error
	for _, e := range exprs {
		sels, err := Selectors(e.Expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Where, err))
			continue
		}
		for _, s := range sels {
			labels, ok := m.Labels[s.Name]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: %s is not a metric the agent serves (docs/metrics.md)", e.Where, s.Name))
				continue
			}
			for _, l := range s.Labels {
				if !slices.Contains(labels, l) && !slices.Contains(TargetLabels, l) {
					errs = append(errs, fmt.Errorf("%s: %s has no label %s (it has %s)", e.Where, s.Name, l, strings.Join(labels, ", ")))
				}
			}
			if le, ok := s.Equals["le"]; ok {
				if bs := m.Buckets[s.Name]; !slices.Contains(bs, le) {
					errs = append(errs, fmt.Errorf("%s: %s has no bucket le=%q (it has %s)", e.Where, s.Name, le, strings.Join(bs, ", ")))
				}
			}
		}
		result, err := m.ResultLabels(e.Expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Where, err))
		}
		for _, l := range e.Shows {
			if result != nil && !result[l] {
				errs = append(errs, fmt.Errorf("%s: shows label %s, which its result does not have (it has %s)", e.Where, l, result.names()))
			}
		}
	}
	return errors.Join(errs...)
}

// labelSet is the label names the series of an expression may have;
// nil when they cannot be told.
type labelSet map[string]bool

func setOf(names ...string) labelSet {
	s := labelSet{}
	for _, n := range names {
		s[n] = true
	}
	return s
}

func (s labelSet) union(o labelSet) labelSet {
	if s == nil || o == nil {
		return nil
	}
	out := labelSet{}
	for n := range s {
		out[n] = true
	}
	for n := range o {
		out[n] = true
	}
	return out
}

func (s labelSet) names() string { return strings.Join(slices.Sorted(maps.Keys(s)), ", ") }

// ResultLabels returns the label names the result of expr (Grafana's variables
// substituted) may have, and reports an aggregation's by() or a
// matching's on() that names a label its operand's series do not have.
// What a function does to labels is modelled for those the chart uses
// (rate and its kin keep them, histogram_quantile drops le); for others
// the labels are unknown (nil) and not checked.
func (m *Metrics) ResultLabels(expr string) (labelSet, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(substitute(expr))
	if err != nil {
		return nil, err
	}
	var errs []error
	s := m.labelsOf(e, &errs)
	return s, errors.Join(errs...)
}

func (m *Metrics) labelsOf(e parser.Expr, errs *[]error) labelSet {
	need := func(what string, names []string, in labelSet) {
		if in == nil {
			return
		}
		for _, n := range names {
			if !in[n] {
				*errs = append(*errs, fmt.Errorf("%s names %s, which the series there do not have (they have %s)", what, n, in.names()))
			}
		}
	}
	switch e := e.(type) {
	case *parser.VectorSelector:
		if _, ok := m.Labels[e.Name]; !ok {
			return nil // reported by Check
		}
		return setOf(append(slices.Clone(m.Labels[e.Name]), TargetLabels...)...)
	case *parser.MatrixSelector:
		return m.labelsOf(e.VectorSelector, errs)
	case *parser.ParenExpr:
		return m.labelsOf(e.Expr, errs)
	case *parser.SubqueryExpr:
		return m.labelsOf(e.Expr, errs)
	case *parser.StepInvariantExpr:
		return m.labelsOf(e.Expr, errs)
	case *parser.UnaryExpr:
		return m.labelsOf(e.Expr, errs)
	case *parser.NumberLiteral, *parser.StringLiteral:
		return labelSet{}
	case *parser.Call:
		var args []labelSet
		for _, a := range e.Args {
			args = append(args, m.labelsOf(a, errs))
		}
		switch e.Func.Name {
		case "time", "vector", "scalar", "pi":
			return labelSet{}
		case "histogram_quantile":
			if len(args) < 2 || args[1] == nil {
				return nil
			}
			need(e.Func.Name, []string{"le"}, args[1])
			out := args[1].union(labelSet{})
			delete(out, "le")
			return out
		case "rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes",
			"avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
			"last_over_time", "quantile_over_time", "stddev_over_time", "abs", "ceil", "floor",
			"round", "clamp", "clamp_min", "clamp_max", "sqrt", "exp", "ln", "log2", "log10", "timestamp":
			for i, t := range e.Func.ArgTypes {
				if i < len(args) && (t == parser.ValueTypeVector || t == parser.ValueTypeMatrix) {
					return args[i]
				}
			}
		}
		return nil
	case *parser.AggregateExpr:
		in := m.labelsOf(e.Expr, errs)
		if e.Param != nil {
			m.labelsOf(e.Param, errs)
		}
		switch {
		case e.Op == parser.TOPK || e.Op == parser.BOTTOMK || e.Op == parser.LIMITK || e.Op == parser.LIMIT_RATIO:
			if !e.Without {
				need(e.Op.String()+" by", e.Grouping, in)
			}
			return in
		case e.Op == parser.COUNT_VALUES:
			return nil
		case e.Without:
			if in == nil {
				return nil
			}
			out := in.union(labelSet{})
			for _, n := range e.Grouping {
				delete(out, n)
			}
			return out
		default:
			need(e.Op.String()+" by", e.Grouping, in)
			return setOf(e.Grouping...)
		}
	case *parser.BinaryExpr:
		l, r := m.labelsOf(e.LHS, errs), m.labelsOf(e.RHS, errs)
		lScalar := e.LHS.Type() == parser.ValueTypeScalar
		rScalar := e.RHS.Type() == parser.ValueTypeScalar
		switch {
		case lScalar && rScalar:
			return labelSet{}
		case lScalar:
			return r
		case rScalar:
			return l
		}
		vm := e.VectorMatching
		if vm == nil {
			return nil
		}
		if vm.On {
			need("on", vm.MatchingLabels, l)
			need("on", vm.MatchingLabels, r)
		}
		switch {
		case e.Op == parser.LOR:
			return l.union(r)
		case e.Op == parser.LAND || e.Op == parser.LUNLESS:
			return l
		case vm.Card == parser.CardManyToOne:
			need("group_left", vm.Include, r)
			return l.union(setOf(vm.Include...))
		case vm.Card == parser.CardOneToMany:
			need("group_right", vm.Include, l)
			return r.union(setOf(vm.Include...))
		case vm.On:
			return setOf(vm.MatchingLabels...)
		case l == nil:
			return nil
		default:
			out := l.union(labelSet{})
			for _, n := range vm.MatchingLabels {
				delete(out, n)
			}
			return out
		}
	}
	return nil
}

// legendLabel is a label a Grafana legend shows: {{policy}}.
var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// alertLabel is a label an alert's template shows: $labels.policy.
var alertLabel = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)

// LegendLabels are the labels a Grafana legend shows.
func LegendLabels(legend string) []string { return matches(legendLabel, legend) }

// AlertLabels are the labels the templates of an alert's labels and
// annotations show.
func AlertLabels(text string) []string { return matches(alertLabel, text) }

func matches(re *regexp.Regexp, text string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}
