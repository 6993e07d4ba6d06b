package nodeconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/egwct/egwct/internal/yamlnode"
	"github.com/egwct/egwct/pkg/profiles"
)

// Config is what one source says about a node's Cilium configuration.
// Settings the source does not give are absent (nil maps, false flags).
type Config struct {
	// File is where the configuration was read from.
	File string
	// Kind says what the file was: "agent-runtime-config.json" or
	// "ConfigMap <namespace>/<name>".
	Kind string
	// Timeouts are the CT timeouts the source sets, by agent flag name
	// (bpf-ct-timeout-regular-tcp, ...).
	Timeouts map[string]time.Duration
	// Clock is the datapath clock, when ClockKnown.
	Clock      Clock
	ClockKnown bool
	// ClockProbe is set when a ConfigMap enables enable-bpf-clock-probe:
	// the node then likely uses jiffies, at an HZ only the node knows.
	ClockProbe bool
	// GCInterval and GCMaxInterval are conntrack-gc-interval and
	// conntrack-gc-max-interval, when set (0 = dynamic / no cap).
	GCInterval, GCMaxInterval *time.Duration
	// NodePortMax is the upper end of the node-port range, when the
	// source gives it (0: not given). Cilium's SNAT picks source ports
	// above it, up to 65535 (NODEPORT_PORT_MIN_NAT is NodePortMax + 1).
	NodePortMax int
	// Notes are problems with the source that are not fatal.
	Notes []Note
}

// Note is a non-fatal remark about a setting, with its place in the file.
type Note struct {
	Line, Column int
	Msg          string
}

// Error is a configuration egwct cannot use; it names the place.
type Error struct {
	File         string
	Line, Column int
	Msg          string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// Agent-flag names of the CT timeouts, as in cilium-config.
var timeoutFlags = []string{
	"bpf-ct-timeout-regular-tcp-syn",
	"bpf-ct-timeout-regular-tcp",
	"bpf-ct-timeout-regular-tcp-fin",
	"bpf-ct-timeout-regular-any",
	"bpf-ct-timeout-service-tcp",
	"bpf-ct-timeout-service-tcp-grace",
	"bpf-ct-timeout-service-any",
}

// runtimeFields maps DaemonConfig's JSON field names (time.Duration,
// encoded as integer nanoseconds) to agent flags (pkg/option/config.go).
var runtimeFields = map[string]string{
	"CTMapEntriesTimeoutSYN":         "bpf-ct-timeout-regular-tcp-syn",
	"CTMapEntriesTimeoutTCP":         "bpf-ct-timeout-regular-tcp",
	"CTMapEntriesTimeoutFIN":         "bpf-ct-timeout-regular-tcp-fin",
	"CTMapEntriesTimeoutAny":         "bpf-ct-timeout-regular-any",
	"CTMapEntriesTimeoutSVCTCP":      "bpf-ct-timeout-service-tcp",
	"CTMapEntriesTimeoutSVCTCPGrace": "bpf-ct-timeout-service-tcp-grace",
	"CTMapEntriesTimeoutSVCAny":      "bpf-ct-timeout-service-any",
}

// MaxSize bounds the files Parse reads; a real agent-runtime-config.json is
// a few tens of KiB.
const MaxSize = 16 << 20

// Parse reads agent-runtime-config.json or a cilium-config ConfigMap
// manifest (YAML or JSON, alone, in a multi-document stream or a List),
// telling them apart by their content.
func Parse(file string, data []byte) (*Config, error) {
	if len(data) > MaxSize {
		return nil, &Error{File: file, Msg: fmt.Sprintf("file is larger than %d MiB", MaxSize>>20)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: file, Msg: "neither agent-runtime-config.json nor a cilium-config ConfigMap"}
		}
		if err != nil {
			return nil, &Error{File: file, Msg: "not YAML or JSON: " + strings.TrimPrefix(err.Error(), "yaml: ")}
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			continue
		}
		top := doc.Content[0]
		if cm := findConfigMap(top, 0); cm != nil {
			return parseConfigMap(file, cm)
		}
		if yamlnode.Get(top, "kind") == nil && (yamlnode.Get(top, "ClockSource") != nil || yamlnode.Get(top, "CTMapEntriesTimeoutTCP") != nil) {
			return parseRuntime(file, top)
		}
	}
}

func findConfigMap(n *yaml.Node, depth int) *yaml.Node {
	kind := yamlnode.Str(yamlnode.Get(n, "kind"))
	if kind == "ConfigMap" {
		name := yamlnode.Str(yamlnode.Get(yamlnode.Get(n, "metadata"), "name"))
		if name == "" || name == "cilium-config" {
			return n
		}
		return nil
	}
	if items := yamlnode.Get(n, "items"); items != nil && items.Kind == yaml.SequenceNode && strings.HasSuffix(kind, "List") && depth < 4 {
		for _, it := range items.Content {
			if cm := findConfigMap(it, depth+1); cm != nil {
				return cm
			}
		}
	}
	return nil
}

func parseRuntime(file string, top *yaml.Node) (*Config, error) {
	c := &Config{File: file, Kind: "agent-runtime-config.json", Timeouts: map[string]time.Duration{}}
	for field, flag := range runtimeFields {
		v := yamlnode.Get(top, field)
		if v == nil {
			continue
		}
		ns, err := strconv.ParseInt(v.Value, 10, 64)
		if err != nil || v.Kind != yaml.ScalarNode || ns <= 0 {
			return nil, &Error{File: file, Line: v.Line, Column: v.Column, Msg: fmt.Sprintf("%s: want a positive duration in nanoseconds, got %q", field, v.Value)}
		}
		c.Timeouts[flag] = time.Duration(ns)
	}
	if v := yamlnode.Get(top, "ClockSource"); v != nil {
		switch v.Value {
		case "0":
			c.Clock, c.ClockKnown = Clock{Mode: Ktime}, true
		case "1":
			hz := yamlnode.Get(top, "KernelHz")
			n, err := strconv.Atoi(yamlnode.Str(hz))
			if hz == nil || err != nil || n <= 0 || n > 100000 {
				line, col := v.Line, v.Column
				if hz != nil {
					line, col = hz.Line, hz.Column
				}
				return nil, &Error{File: file, Line: line, Column: col, Msg: "ClockSource is 1 (jiffies) but KernelHz is missing or not a positive number"}
			}
			c.Clock, c.ClockKnown = Clock{Mode: Jiffies, HZ: n}, true
		default:
			return nil, &Error{File: file, Line: v.Line, Column: v.Column, Msg: fmt.Sprintf("ClockSource: want 0 (ktime) or 1 (jiffies), got %q", v.Value)}
		}
	}
	for field, dst := range map[string]**time.Duration{"ConntrackGCInterval": &c.GCInterval, "ConntrackGCMaxInterval": &c.GCMaxInterval} {
		if v := yamlnode.Get(top, field); v != nil {
			ns, err := strconv.ParseInt(v.Value, 10, 64)
			if err != nil || ns < 0 {
				return nil, &Error{File: file, Line: v.Line, Column: v.Column, Msg: fmt.Sprintf("%s: want a duration in nanoseconds, got %q", field, v.Value)}
			}
			d := time.Duration(ns)
			*dst = &d
		}
	}
	// DaemonConfig's NodePortMin and NodePortMax (pkg/option/config.go),
	// which later versions keep in their load-balancer configuration
	// instead: absent, or 0, says nothing.
	var ports [2]int
	for i, field := range []string{"NodePortMin", "NodePortMax"} {
		v := yamlnode.Get(top, field)
		if v == nil {
			continue
		}
		n, err := strconv.Atoi(v.Value)
		if err != nil || v.Kind != yaml.ScalarNode || n < 0 || n > 65535 {
			return nil, &Error{File: file, Line: v.Line, Column: v.Column, Msg: fmt.Sprintf("%s: want a port, got %q", field, v.Value)}
		}
		ports[i] = n
	}
	if ports[1] != 0 {
		v := yamlnode.Get(top, "NodePortMax")
		if err := c.nodePorts(ports[0], ports[1], v); err != nil {
			return nil, &Error{File: file, Line: v.Line, Column: v.Column, Msg: err.Error()}
		}
	}
	return c, nil
}

// nodePorts sets NodePortMax from a node-port range (given at v), which
// Cilium refuses unless min < max. Cilium takes a maximum of 65535, which
// leaves no port above the range: NodePortMax stays unset (the default
// capacity), with a note.
func (c *Config) nodePorts(lo, hi int, v *yaml.Node) error {
	if hi <= lo {
		return fmt.Errorf("node-port range %d-%d: want its minimum below its maximum, as Cilium does", lo, hi)
	}
	if hi >= 65535 {
		c.Notes = append(c.Notes, Note{Line: v.Line, Column: v.Column, Msg: fmt.Sprintf(
			"node-port range %d-%d leaves no source port above it for SNAT: port use is measured against the default capacity", lo, hi)})
		return nil
	}
	c.NodePortMax = hi
	return nil
}

func parseConfigMap(file string, cm *yaml.Node) (*Config, error) {
	meta := yamlnode.Get(cm, "metadata")
	name, ns := yamlnode.Str(yamlnode.Get(meta, "name")), yamlnode.Str(yamlnode.Get(meta, "namespace"))
	if name == "" {
		name = "cilium-config"
	}
	if ns != "" {
		name = ns + "/" + name
	}
	c := &Config{File: file, Kind: "ConfigMap " + name, Timeouts: map[string]time.Duration{}}
	data := yamlnode.Get(cm, "data")
	for _, flag := range timeoutFlags {
		v := yamlnode.Get(data, flag)
		if v == nil {
			continue
		}
		d, err := c.duration(file, flag, v)
		if err != nil {
			return nil, err
		}
		if d <= 0 {
			return nil, &Error{File: file, Line: v.Line, Column: v.Column, Msg: fmt.Sprintf("%s: %q is not a positive duration", flag, v.Value)}
		}
		c.Timeouts[flag] = d
	}
	c.ClockKnown, c.Clock = true, Clock{Mode: Ktime}
	if v := yamlnode.Get(data, "enable-bpf-clock-probe"); v != nil {
		on, err := strconv.ParseBool(v.Value)
		if err != nil {
			return nil, &Error{File: file, Line: v.Line, Column: v.Column, Msg: fmt.Sprintf("enable-bpf-clock-probe: want true or false, got %q", v.Value)}
		}
		if on {
			c.ClockKnown, c.ClockProbe = false, true
		}
	}
	for flag, dst := range map[string]**time.Duration{"conntrack-gc-interval": &c.GCInterval, "conntrack-gc-max-interval": &c.GCMaxInterval} {
		if v := yamlnode.Get(data, flag); v != nil {
			d, err := c.duration(file, flag, v)
			if err != nil {
				return nil, err
			}
			*dst = &d
		}
	}
	// MIN,MAX as the agent reads it (--node-port-range, a string slice
	// that a ConfigMap gives as one string; older agents split it at white
	// space); empty: the default. Cilium is the judge of its own setting:
	// one egwct cannot read only costs the capacity, with a note.
	if v := yamlnode.Get(data, "node-port-range"); v != nil && strings.TrimSpace(v.Value) != "" {
		fields := strings.FieldsFunc(v.Value, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		err := fmt.Errorf("want MIN,MAX as Cilium reads it (30000,32767), got %q", v.Value)
		if len(fields) == 2 && v.Kind == yaml.ScalarNode {
			lo, err1 := strconv.ParseUint(fields[0], 10, 16)
			hi, err2 := strconv.ParseUint(fields[1], 10, 16)
			if err1 == nil && err2 == nil {
				err = c.nodePorts(int(lo), int(hi), v)
			}
		}
		if err != nil {
			c.Notes = append(c.Notes, Note{Line: v.Line, Column: v.Column, Msg: "node-port-range: " + err.Error() + ": port use is measured against the default capacity"})
		}
	}
	return c, nil
}

// duration reads a ConfigMap value the way the agent's flag parser
// (spf13/cast) does: a number without a unit is nanoseconds. That is
// almost never what was meant, so it is noted.
func (c *Config) duration(file, flag string, v *yaml.Node) (time.Duration, error) {
	s := strings.TrimSpace(v.Value)
	if v.Kind == yaml.ScalarNode && s != "" && !strings.ContainsAny(s, "nsuµmh") {
		d, err := time.ParseDuration(s + "ns")
		if err == nil {
			c.Notes = append(c.Notes, Note{Line: v.Line, Column: v.Column,
				Msg: fmt.Sprintf("%s: %q has no unit, so the agent reads it as %s; write %q if seconds were meant", flag, s, d, s+"s")})
			return d, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || v.Kind != yaml.ScalarNode {
		return 0, &Error{File: file, Line: v.Line, Column: v.Column, Msg: fmt.Sprintf("%s: %q is not a duration", flag, v.Value)}
	}
	return d, nil
}

// Timeout returns the node's timeout for an agent flag: the source's value
// when it sets one, else def (the profile default).
func (c *Config) Timeout(flag string, def time.Duration) (d time.Duration, fromNode bool) {
	if c != nil {
		if d, ok := c.Timeouts[flag]; ok {
			return d, true
		}
	}
	return def, false
}

// PortCapacity returns how many SNAT source ports one egress IP has
// towards one destination on the node: the ports above the source's
// node-port range, when it gives one, else def.
func (c *Config) PortCapacity(def int) (n int, fromNode bool) {
	if c != nil && c.NodePortMax > 0 {
		return 65535 - c.NodePortMax, true
	}
	return def, false
}

// NodeTimeouts returns the node's timeout for each state of profile p: the
// source's value where it sets one, else the profile default.
func (c *Config) NodeTimeouts(p *profiles.Profile) map[profiles.State]time.Duration {
	out := make(map[profiles.State]time.Duration, len(p.Parameters))
	for _, prm := range p.Parameters {
		out[prm.State], _ = c.Timeout(prm.Flag, prm.Default)
	}
	return out
}
