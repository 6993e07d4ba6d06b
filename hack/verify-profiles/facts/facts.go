// Package facts holds what the extractor reads from one Cilium release's
// own Go code and maps, as JSON. The extractor writes one Run per set of
// agent options; the driver compares them with egwct's profiles.
package facts

// Run is what one extractor process found for one set of agent options.
type Run struct {
	// Cilium is the release the extractor was built against, e.g. "1.20.2".
	Cilium string `json:"cilium"`
	// Options names the agent options of the run ("default", or e.g.
	// "bpf-distributed-lru=true"), as the extractor's -run flag names it.
	Options string `json:"options"`
	// Maps are the maps Cilium's own constructors created and pinned in a
	// private bpffs, read back from the kernel.
	Maps []Map `json:"maps"`

	// The rest is filled only in the "default" run.

	// Types are Cilium's Go key and value types, by Go name (e.g.
	// "ctmap.CtEntry").
	Types map[string]Type `json:"types,omitempty"`
	// FlagDefaults are the default values of the agent flags egwct cares
	// about (CT timeouts, GC interval, map sizing), by flag name, as Go
	// values formatted with %v (a time.Duration as Go prints it).
	FlagDefaults map[string]string `json:"flagDefaults,omitempty"`
	// Constants are Go constants of Cilium's packages by qualified name,
	// formatted with %v (e.g. "defaults.ConntrackGCMaxLRUInterval": "12h0m0s").
	Constants map[string]string `json:"constants,omitempty"`
	// GC is what Cilium's own CT garbage collector did to a fixture of
	// egress-gateway flows, per address family.
	GC []GCCase `json:"gc,omitempty"`
	// Notes are things the extractor could not do for this release, in a sentence each.
	Notes []string `json:"notes,omitempty"`
}

// Map is one pinned map as the kernel reports it.
type Map struct {
	Name       string `json:"name"`
	Type       uint32 `json:"type"`
	KeySize    uint32 `json:"keySize"`
	ValueSize  uint32 `json:"valueSize"`
	MaxEntries uint32 `json:"maxEntries"`
	Flags      uint32 `json:"flags"`
}

// Type is a Go struct type of Cilium's, flattened: embedded structs are
// expanded into their fields with offsets from the start of the outer type.
type Type struct {
	Size   int     `json:"size"`
	Fields []Field `json:"fields"`
}

// Field is one leaf field of a Type.
type Field struct {
	// Go is the Go field name (e.g. "Lifetime"), C the C name from Cilium's
	// `align` struct tag (e.g. "lifetime", "$union0"), empty without a tag.
	Go     string `json:"go"`
	C      string `json:"c,omitempty"`
	Offset int    `json:"offset"`
	Size   int    `json:"size"`
}

// GCCase is one pass of Cilium's CT GC (with its NAT purge) over maps
// filled with Cilium's own key and value types.
type GCCase struct {
	Family int `json:"family"`
	// Now is the clock value (seconds) every lifetime of the fixture was
	// set against: expired entries have lifetimes well below it, live ones
	// well above it, so the GC's own reading of the clock decides the same.
	Now uint32 `json:"now"`
	// CT and NAT are the maps' elements before the pass (TCP and non-TCP
	// CT maps together), as hex.
	CT  []Elem `json:"ct"`
	NAT []Elem `json:"nat"`
	// CTAfter and NATAfter are the keys (hex) left after the GC pass,
	// before the orphan purge.
	CTAfter  []string `json:"ctAfter"`
	NATAfter []string `json:"natAfter"`
	// NATAfterPurge are the SNAT keys left after the orphan purge that
	// followed.
	NATAfterPurge []string `json:"natAfterPurge"`
	// Deleted is the number of CT entries Cilium's GC said it deleted.
	Deleted int `json:"deleted"`
	// OrphansPurged is what Cilium's orphan-NAT purge deleted afterwards
	OrphansPurged int `json:"orphansPurged"`
}

// Elem is one map element as hex.
type Elem struct {
	Map   string `json:"map"`
	Key   string `json:"key"`
	Value string `json:"value"`
}
