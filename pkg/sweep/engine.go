package sweep

import (
	"errors"
	"fmt"
	"strings"
)

// Engine is how the sweeper walks the CT maps.
type Engine uint8

const (
	// Auto loads the engines in order of cost (AutoOrder) and keeps the
	// first that the kernel accepts (the default).
	Auto Engine = iota
	// ForEach walks each map with bpf_for_each_map_elem in one
	// BPF_PROG_RUN call of a raw_tp program: the least CPU, but the CPU
	// is held for the whole map (about 0.3 s per million entries here).
	ForEach
	// Iterator walks each map with a BPF map-element iterator (a tracing
	// program), in chunks the kernel reschedules between.
	Iterator
	// Userspace walks each map with batch reads and judges every entry in
	// Go, with the program's judgement; it needs map access only, no BPF
	// program: for kernels without map iterators or bpf_for_each_map_elem
	// and for nodes that refuse BPF programs.
	Userspace
)

var engineNames = [...]string{Auto: "auto", ForEach: "foreach", Iterator: "iterator", Userspace: "userspace"}

func (e Engine) String() string {
	if int(e) < len(engineNames) {
		return engineNames[e]
	}
	return fmt.Sprintf("engine(%d)", e)
}

// Engines are the names --engine accepts, auto first.
func Engines() []string { return engineNames[:] }

// ParseEngine reads an engine's name; "" is Auto.
func ParseEngine(s string) (Engine, error) {
	if s == "" {
		return Auto, nil
	}
	for e, name := range engineNames {
		if s == name {
			return Engine(e), nil
		}
	}
	return Auto, fmt.Errorf("unknown engine %q: want one of %s", s, strings.Join(engineNames[:], ", "))
}

// AutoOrder is the order in which Auto tries the engines: the cheapest
// per CT entry first.
var AutoOrder = []Engine{ForEach, Iterator, Userspace}

// Refusal is an engine that could not be loaded, and the kernel's (or
// Config.Refuse's) reason.
type Refusal struct {
	Engine Engine
	Err    error
}

// Choice is the engine a sweeper runs and why: with Auto, the engines
// tried before it and the refusal of each.
type Choice struct {
	Engine  Engine
	Auto    bool
	Refused []Refusal
}

// String says which engine and why, on one line, e.g. "foreach (auto:
// the cheapest engine, loaded)" or "userspace (auto: foreach refused:
// load program: operation not permitted; iterator refused: …)".
func (c Choice) String() string {
	if !c.Auto {
		return c.Engine.String() + " (--engine)"
	}
	if len(c.Refused) == 0 {
		return c.Engine.String() + " (auto: the cheapest engine, loaded)"
	}
	var parts []string
	for _, r := range c.Refused {
		parts = append(parts, r.Engine.String()+" refused: "+shortErr(r.Err))
	}
	return c.Engine.String() + " (auto: " + strings.Join(parts, "; ") + ")"
}

// Reason is String without the engine's name: why it runs.
func (c Choice) Reason() string {
	s := c.String()
	return strings.TrimSuffix(strings.TrimPrefix(s, c.Engine.String()+" ("), ")")
}

// shortErr is an error on one line, at most 160 bytes (a verifier's log
// is long; its first lines say why).
func shortErr(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

// ErrEngineRefused is returned (wrapped in an *EngineError) when the
// engine asked for cannot be loaded on this node.
var ErrEngineRefused = errors.New("sweep engine refused")

// EngineError is an engine asked for explicitly that cannot be loaded:
// the kernel's refusal and the engines that do load.
type EngineError struct {
	Engine Engine
	Err    error
	// Loads are the engines that load on this node.
	Loads []Engine
}

func (e *EngineError) Error() string {
	var loads []string
	for _, l := range e.Loads {
		loads = append(loads, l.String())
	}
	what := "none"
	if len(loads) > 0 {
		what = strings.Join(loads, ", ")
	}
	return fmt.Sprintf("the %s engine cannot be loaded on this node: %s; engines that load here: %s (--engine auto picks the cheapest)",
		e.Engine, shortErr(e.Err), what)
}

func (e *EngineError) Unwrap() []error { return []error{ErrEngineRefused, e.Err} }
