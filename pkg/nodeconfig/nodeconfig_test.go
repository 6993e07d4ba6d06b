package nodeconfig

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	tests := []struct {
		clock Clock
		d     time.Duration
		units uint64
		eff   time.Duration
	}{
		// Worked examples of cilium-datapath.md §5.1.
		{Clock{Jiffies, 250}, 60 * time.Second, 58, 59392 * time.Millisecond},
		{Clock{Jiffies, 250}, 8000 * time.Second, 7812, 7999488 * time.Millisecond},
		{Clock{Jiffies, 1000}, 8000 * time.Second, 31250, 8000 * time.Second},
		{Clock{Jiffies, 100}, 30 * time.Second, 11, 28160 * time.Millisecond},
		{Clock{Ktime, 0}, 8000 * time.Second, 8000, 8000 * time.Second},
		{Clock{Ktime, 0}, 1500 * time.Millisecond, 1, time.Second},
	}
	for _, tt := range tests {
		if got := tt.clock.Units(tt.d); got != tt.units {
			t.Errorf("%v.Units(%v) = %d, want %d", tt.clock, tt.d, got, tt.units)
		}
		if got := tt.clock.Effective(tt.d); got != tt.eff {
			t.Errorf("%v.Effective(%v) = %v, want %v", tt.clock, tt.d, got, tt.eff)
		}
	}
	if u := (Clock{Jiffies, 250}).Unit(); u != 1024*time.Millisecond {
		t.Errorf("unit at HZ=250 = %v", u)
	}
	// Large lifetimes do not overflow.
	if d := (Clock{Jiffies, 100}).Duration(1<<32 - 1); d != math.MaxInt64 {
		t.Errorf("Duration(max) = %v", d)
	}
}

func TestParseRuntimeConfig(t *testing.T) {
	c, err := Parse("arc.json", []byte(`{"ClockSource": 1, "KernelHz": 250, "CTMapEntriesTimeoutTCP": 3600000000000,
		"CTMapEntriesTimeoutSYN": 60000000000, "ConntrackGCInterval": 0, "Other": {"x": [1,2]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.ClockKnown || c.Clock != (Clock{Jiffies, 250}) || c.Kind != "agent-runtime-config.json" {
		t.Errorf("clock = %+v known=%v kind=%s", c.Clock, c.ClockKnown, c.Kind)
	}
	if d, ok := c.Timeout("bpf-ct-timeout-regular-tcp", 0); !ok || d != time.Hour {
		t.Errorf("tcp = %v %v", d, ok)
	}
	if d, ok := c.Timeout("bpf-ct-timeout-regular-any", 42); ok || d != 42 {
		t.Errorf("any falls back to the default: %v %v", d, ok)
	}
	if c.GCInterval == nil || *c.GCInterval != 0 || c.GCMaxInterval != nil {
		t.Errorf("gc = %v %v", c.GCInterval, c.GCMaxInterval)
	}
	var nilConfig *Config
	if d, ok := nilConfig.Timeout("x", 7); ok || d != 7 {
		t.Error("nil config must give the default")
	}
}

func TestParseConfigMap(t *testing.T) {
	doc := `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: other}
  data: {bpf-ct-timeout-regular-tcp: "1s"}
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: cilium-config
    namespace: kube-system
  data:
    bpf-ct-timeout-regular-tcp: "2h"
    bpf-ct-timeout-regular-any: "90"
    enable-bpf-clock-probe: "true"
    conntrack-gc-max-interval: 5m
`
	c, err := Parse("cm.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != "ConfigMap kube-system/cilium-config" || c.Timeouts["bpf-ct-timeout-regular-tcp"] != 2*time.Hour {
		t.Errorf("config = %+v", c)
	}
	// A bare number is what the agent reads it as: nanoseconds. Noted.
	if c.Timeouts["bpf-ct-timeout-regular-any"] != 90 || len(c.Notes) != 1 || c.Notes[0].Line != 15 ||
		!strings.Contains(c.Notes[0].Msg, `write "90s"`) {
		t.Errorf("bare number: %v notes %+v", c.Timeouts["bpf-ct-timeout-regular-any"], c.Notes)
	}
	if c.ClockKnown || !c.ClockProbe {
		t.Errorf("clock probe on: known=%v probe=%v", c.ClockKnown, c.ClockProbe)
	}
	if c.GCMaxInterval == nil || *c.GCMaxInterval != 5*time.Minute {
		t.Errorf("gc max = %v", c.GCMaxInterval)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
		line            int
	}{
		{"not yaml", "{", "not YAML or JSON", 0},
		{"neither", "apiVersion: v1\nkind: Secret\n", "neither agent-runtime-config.json nor a cilium-config ConfigMap", 0},
		{"bad clock", `{"ClockSource": 7}`, "ClockSource: want 0 (ktime) or 1 (jiffies)", 1},
		{"jiffies without hz", `{"ClockSource": 1}`, "KernelHz is missing", 1},
		{"bad timeout", "{\n\"CTMapEntriesTimeoutTCP\": \"soon\"}", "CTMapEntriesTimeoutTCP: want a positive duration", 2},
		{"bad duration", "kind: ConfigMap\ndata:\n  bpf-ct-timeout-regular-tcp: forever\n", `bpf-ct-timeout-regular-tcp: "forever" is not a duration`, 3},
		{"zero", "kind: ConfigMap\ndata:\n  bpf-ct-timeout-regular-tcp: 0s\n", "not a positive duration", 3},
		{"bad bool", "kind: ConfigMap\ndata:\n  enable-bpf-clock-probe: maybe\n", "want true or false", 3},
		{"bad port", "{\"ClockSource\": 0, \"NodePortMin\": 30000,\n\"NodePortMax\": \"high\"}", "NodePortMax: want a port", 2},
		{"runtime range upside down", "{\"ClockSource\": 0, \"NodePortMin\": 30000,\n\"NodePortMax\": 20000}", "minimum below its maximum", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x", []byte(tt.doc))
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(e.Msg, tt.want) || e.Line != tt.line || e.File != "x" {
				t.Fatalf("err = %#v, want %q at line %d", err, tt.want, tt.line)
			}
		})
	}
}

// TestPortCapacity: the SNAT ports above the node-port range, from
// agent-runtime-config.json (NodePortMin/NodePortMax) or the ConfigMap
// (node-port-range MIN,MAX), else the default given.
func TestPortCapacity(t *testing.T) {
	for _, tt := range []struct {
		name, doc string
		want      int
		fromNode  bool
	}{
		{"runtime, Cilium's default", `{"ClockSource": 0, "NodePortMin": 30000, "NodePortMax": 32767}`, 32768, true},
		{"runtime, a wider range", `{"ClockSource": 0, "NodePortMin": 20000, "NodePortMax": 40000}`, 25535, true},
		{"runtime, no range (1.18 and later)", `{"ClockSource": 0}`, 42, false},
		{"runtime, zeros", `{"ClockSource": 0, "NodePortMin": 0, "NodePortMax": 0}`, 42, false},
		{"ConfigMap range", "kind: ConfigMap\ndata:\n  node-port-range: \"30000,49999\"\n", 15536, true},
		{"ConfigMap empty range", "kind: ConfigMap\ndata:\n  node-port-range: \"\"\n", 42, false},
		{"ConfigMap without", "kind: ConfigMap\ndata: {}\n", 42, false},
		{"ConfigMap range split at white space", "kind: ConfigMap\ndata:\n  node-port-range: \"30000 39999\"\n", 25536, true},
		{"ConfigMap range, comma and space", "kind: ConfigMap\ndata:\n  node-port-range: \"30000, 39999\"\n", 25536, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("x", []byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			if n, ok := c.PortCapacity(42); n != tt.want || ok != tt.fromNode {
				t.Errorf("PortCapacity = %d, %v; want %d, %v", n, ok, tt.want, tt.fromNode)
			}
		})
	}
	// Cilium takes a range up to 65535 (pkg/loadbalancer/config.go
	// refuses only a maximum not above the minimum): the node's
	// timeouts are still read, the capacity is the default, with a note.
	for _, doc := range []string{
		"kind: ConfigMap\ndata:\n  node-port-range: \"30000,65535\"\n",
		"{\"ClockSource\": 0, \"NodePortMin\": 30000,\n\"NodePortMax\": 65535}",
	} {
		c, err := Parse("x", []byte(doc))
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if n, ok := c.PortCapacity(42); n != 42 || ok || len(c.Notes) != 1 || c.Notes[0].Line == 0 || !strings.Contains(c.Notes[0].Msg, "65535") {
			t.Errorf("%q: PortCapacity = %d, %v; notes %+v", doc, n, ok, c.Notes)
		}
	}
	// A range egwct cannot read, or one Cilium would refuse, is Cilium's
	// to judge: it costs only the capacity, with a note at the value, and
	// the node's timeouts are still read.
	for _, tt := range []struct{ name, value, want string }{
		{"a dash", "30000-32767", "want MIN,MAX as Cilium reads it"},
		{"upside down", `"32767,30000"`, "minimum below its maximum"},
		{"three ports", `"1,2,3"`, "want MIN,MAX"},
		{"not a port", `"30000,70000"`, "want MIN,MAX"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("x", []byte("kind: ConfigMap\ndata:\n  bpf-ct-timeout-regular-tcp: 2h\n  node-port-range: "+tt.value+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if n, ok := c.PortCapacity(42); n != 42 || ok || len(c.Notes) != 1 || c.Notes[0].Line != 4 || !strings.Contains(c.Notes[0].Msg, tt.want) {
				t.Errorf("PortCapacity = %d, %v; notes %+v", n, ok, c.Notes)
			}
			if c.Timeouts["bpf-ct-timeout-regular-tcp"] != 2*time.Hour {
				t.Errorf("timeouts not read: %v", c.Timeouts)
			}
		})
	}
	var none *Config
	if n, ok := none.PortCapacity(42); n != 42 || ok {
		t.Errorf("no config: %d, %v", n, ok)
	}
}
