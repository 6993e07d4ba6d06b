package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/sweep"
)

// The series the collector emits at each scrape from what was last
// recorded: they exist only as long as what they describe.
var (
	descEntries = prometheus.NewDesc("egwct_ct_entries",
		"CT entries seen by the last sweep, per policy and state.", []string{"policy", "state"}, nil)
	descIdle = prometheus.NewDesc("egwct_ct_idle_seconds",
		"Idle time of the CT entries of the last sweep, per policy and state; _sum is a lower bound (each entry counts at its bucket's lower bound).",
		[]string{"policy", "state"}, nil)
	descExpired = prometheus.NewDesc("egwct_ct_expired_total",
		"CT entries found idle longer than their policy allows.", []string{"policy", "state"}, nil)
	descDeletedCT = prometheus.NewDesc("egwct_ct_deleted_total",
		"CT entries deleted (reclaim mode).", []string{"policy", "state"}, nil)
	descDeletedNAT = prometheus.NewDesc("egwct_nat_deleted_total",
		"SNAT entries deleted with them.", []string{"policy", "state"}, nil)
	descRefreshed = prometheus.NewDesc("egwct_ct_refreshed_total",
		"Expired entries the datapath refreshed before deletion, kept.", []string{"policy", "state"}, nil)
	descValid = prometheus.NewDesc("egwct_policy_valid",
		"1 when the policy's timeout text is accepted, 0 when it is refused (the policy keeps its last good timeouts, or none).",
		[]string{"policy"}, nil)
	descEngine = prometheus.NewDesc("egwct_sweep_engine_info",
		"Always 1; the label names the sweep engine in use.", []string{"engine"}, nil)
	descClusterUp = prometheus.NewDesc("egwct_cluster_up",
		"1 while the API server answers, 0 while it cannot be reached (--from-cluster).", nil, nil)
	descPorts = prometheus.NewDesc("egwct_snat_ports_in_use",
		"SNAT source ports in use per egress IP and destination, for the tuples with the most.",
		[]string{"egress_ip", "dst_ip", "dst_port", "proto"}, nil)
	descCapacity = prometheus.NewDesc("egwct_snat_port_capacity",
		"SNAT source ports one egress IP has per destination: the ports above the node's node-port range.", nil, nil)
)

// idleBounds are the upper bounds of egwct_ct_idle_seconds, in seconds.
var idleBounds = func() []float64 {
	b := make([]float64, len(sweep.IdleBuckets))
	for i, d := range sweep.IdleBuckets {
		b[i] = d.Seconds()
	}
	return b
}()

// collector is the prometheus.Collector view of Metrics.
type collector Metrics

// Describe sends the descriptions of every series the collector emits.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEntries, descIdle, descExpired, descDeletedCT, descDeletedNAT,
		descRefreshed, descValid, descEngine, descClusterUp, descPorts, descCapacity} {
		ch <- d
	}
}

// Collect emits the series of the last sweep, the per-policy counters and
// gauges, and the port use, as one consistent snapshot.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	out := c.snapshot()
	for _, m := range out {
		ch <- m
	}
}

func (c *collector) snapshot() []prometheus.Metric {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []prometheus.Metric
	emit := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(d, t, v, labels...)
		if err != nil {
			m = prometheus.NewInvalidMetric(d, err)
		}
		out = append(out, m)
	}
	for k, cs := range c.last {
		state := k.state.String()
		emit(descEntries, prometheus.GaugeValue, float64(cs.Seen), k.policy, state)
		count, sum, buckets := idleHistogram(cs)
		h, err := prometheus.NewConstHistogram(descIdle, count, sum, buckets, k.policy, state)
		if err != nil {
			h = prometheus.NewInvalidMetric(descIdle, err)
		}
		out = append(out, h)
	}
	for k, t := range c.counters {
		state := k.state.String()
		emit(descExpired, prometheus.CounterValue, float64(t.expired), k.policy, state)
		emit(descDeletedCT, prometheus.CounterValue, float64(t.deletedCT), k.policy, state)
		emit(descDeletedNAT, prometheus.CounterValue, float64(t.deletedNAT), k.policy, state)
		emit(descRefreshed, prometheus.CounterValue, float64(t.refreshed), k.policy, state)
	}
	for name, ok := range c.valid {
		v := 0.0
		if ok {
			v = 1
		}
		emit(descValid, prometheus.GaugeValue, v, name)
	}
	if c.engine != "" {
		emit(descEngine, prometheus.GaugeValue, 1, c.engine)
	}
	if c.cluster != nil {
		v := 0.0
		if *c.cluster {
			v = 1
		}
		emit(descClusterUp, prometheus.GaugeValue, v)
	}
	for _, p := range c.ports {
		emit(descPorts, prometheus.GaugeValue, float64(p.Used),
			p.Egress.String(), p.Dst.String(), strconv.Itoa(int(p.DstPort)), ctmap.ProtoName(p.Proto))
	}
	emit(descCapacity, prometheus.GaugeValue, float64(c.capacity))
	return out
}

// idleHistogram turns the idle buckets of one sweep's counts into a
// Prometheus histogram: the count, a lower bound of the sum (the first
// bucket counts 0 s, the others their lower bound, the overflow bucket
// the last bound) and the cumulative count per upper bound.
func idleHistogram(c *sweep.Counts) (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(idleBounds))
	for i, n := range c.Idle {
		count += n
		if i > 0 && i-1 < len(idleBounds) {
			sum += float64(n) * idleBounds[i-1]
		}
		if i < len(idleBounds) {
			buckets[idleBounds[i]] = count
		}
	}
	return count, sum, buckets
}
