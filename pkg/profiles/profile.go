package profiles

import (
	"fmt"
	"time"
)

// State is the connection-tracking state of a CT entry as egwct classifies
// it; each state has one node timeout and one timeout key.
type State uint8

// The CT states a timeout applies to (cilium-datapath.md §5).
const (
	// StateSyn is a TCP entry that has seen only SYNs (seen_non_syn = 0).
	StateSyn State = iota
	// StateEstablished is a TCP entry past the handshake, not closing on both sides.
	StateEstablished
	// StateClosing is a TCP entry with both rx_closing and tx_closing set.
	StateClosing
	// StateNonTCP is an entry of any other protocol (UDP, ICMP, SCTP, ...).
	StateNonTCP
)

// States lists every State in display order.
var States = []State{StateSyn, StateEstablished, StateClosing, StateNonTCP}

// String returns the short name used in output: syn, established, closing, non-tcp.
func (s State) String() string {
	switch s {
	case StateSyn:
		return "syn"
	case StateEstablished:
		return "established"
	case StateClosing:
		return "closing"
	case StateNonTCP:
		return "non-tcp"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MinTimeout is the smallest timeout egwct can enforce: the datapath's
// lifetime has a resolution of one second (one 256-jiffy unit with jiffies).
const MinTimeout = time.Second

// MaxTimeout is the largest timeout the datapath can represent: lifetime is a
// u32 of seconds. In practice the node's own timeout is the upper bound, since
// egwct can only shorten.
const MaxTimeout = time.Duration(1<<32-1) * time.Second

// Parameter is one key of the timeout text.
type Parameter struct {
	// Key is the camelCase key of the timeout text, e.g. bpfCtTimeoutRegularTcp.
	Key string
	// Flag is the cilium-agent flag (and cilium-config key) the key mirrors,
	// without dashes in front, e.g. bpf-ct-timeout-regular-tcp.
	Flag string
	// Macro is the datapath macro the agent writes the flag into.
	Macro string
	// State is the CT state the timeout governs.
	State State
	// Default is the node default of this Cilium version.
	Default time.Duration
	// Summary says in a few words what the timeout is for.
	Summary string
}

// ServiceTimer is a CT timer that exists in the agent but governs
// service (load-balancer) entries, never egress-gateway flows.
type ServiceTimer struct {
	Key     string
	Flag    string
	Macro   string
	Default time.Duration
	Summary string
}

// MapType is a BPF map type, numbered as the kernel's enum bpf_map_type.
type MapType uint32

// The BPF map types Cilium uses for the maps egwct touches.
const (
	MapTypeHash        MapType = 1
	MapTypeArray       MapType = 2
	MapTypePerCPUArray MapType = 6
	MapTypeLRUHash     MapType = 9
	MapTypeLPMTrie     MapType = 11
	MapTypeArrayOfMaps MapType = 12
)

// String returns the kernel's name of the type without the BPF_MAP_TYPE_ prefix.
func (t MapType) String() string {
	switch t {
	case MapTypeHash:
		return "HASH"
	case MapTypeArray:
		return "ARRAY"
	case MapTypePerCPUArray:
		return "PERCPU_ARRAY"
	case MapTypeLRUHash:
		return "LRU_HASH"
	case MapTypeLPMTrie:
		return "LPM_TRIE"
	case MapTypeArrayOfMaps:
		return "ARRAY_OF_MAPS"
	}
	return fmt.Sprintf("MAP_TYPE(%d)", uint32(t))
}

// Map flags (BPF_F_*) as the kernel numbers them.
const (
	FlagNoPrealloc  uint32 = 1 << 0
	FlagNoCommonLRU uint32 = 1 << 1
	FlagRdonlyProg  uint32 = 1 << 7
)

// MapRole says what a map holds, so that callers find maps by meaning
// rather than by a version-specific name.
type MapRole string

// The roles of the maps in a profile.
const (
	RoleCTTCP         MapRole = "ct-tcp"
	RoleCTAny         MapRole = "ct-any"
	RoleSNAT          MapRole = "snat"
	RoleEgressPolicy  MapRole = "egress-policy"
	RoleSNATRetries   MapRole = "snat-retries"
	RolePerClusterCT  MapRole = "per-cluster-ct"
	RolePerClusterNAT MapRole = "per-cluster-snat"
)

// MapSpec is the expected shape of one of Cilium's pinned maps.
type MapSpec struct {
	// Name is the pin name under <bpffs>/tc/globals.
	Name string
	Role MapRole
	// Family is 4 or 6.
	Family    int
	Type      MapType
	KeySize   uint32
	ValueSize uint32
	// Flags lists the map_flags values this version may create the map with.
	Flags []uint32
	// DefaultMaxEntries is the agent's default size; the real size depends
	// on the node's RAM and flags, so always read it from the map.
	DefaultMaxEntries uint32
	// Optional maps exist only with a feature (e.g. SNAT maps need BPF
	// NodePort); egwct works without them where it can.
	Optional bool
	Note     string
}

// Field is one field of a fixed binary layout.
type Field struct {
	Name   string
	Offset int
	Size   int
	Note   string
}

// Bit is one bit of a flags bitfield.
type Bit struct {
	Name string
	Mask uint16
}

// CTEntryLayout is the layout of struct ct_entry (the CT map value).
type CTEntryLayout struct {
	Size   int
	Fields []Field
	// FlagsOffset is where the u16 flags bitfield starts; FlagBits names its bits.
	FlagsOffset int
	FlagBits    []Bit
}

// Field returns the field with the given C name.
func (l CTEntryLayout) Field(name string) (Field, bool) {
	for _, f := range l.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Bit returns the mask of the named flag bit.
func (l CTEntryLayout) Bit(name string) (uint16, bool) {
	for _, b := range l.FlagBits {
		if b.Name == name {
			return b.Mask, true
		}
	}
	return 0, false
}

// ClockRules say how the datapath's clock is chosen in a version.
type ClockRules struct {
	// Default is the clock used unless the agent probes jiffies.
	Default string
	// Jiffies says when the datapath uses jiffies instead.
	Jiffies string
	// Shift is BPF_MONO_SCALER: jiffies-mode lifetimes count 2^Shift jiffies.
	Shift uint
	// HZChoices are the values KernelHZ() rounds the measured rate to.
	HZChoices []int
	// Where says where the agent records the mode a node uses.
	Where string
}

// Quirk is a known behaviour of some releases that changes what a user of
// per-policy timeouts can expect.
type Quirk struct {
	// ID is a stable identifier, e.g. restart-deletes-remote-egw.
	ID string
	// Affects is the set of releases showing the quirk.
	Affects []Range
	Summary string
	Source  string
}

// AppliesTo reports whether the quirk is present in version v.
func (q Quirk) AppliesTo(v Version) bool {
	for _, r := range q.Affects {
		if r.Contains(v) {
			return true
		}
	}
	return false
}

// Profile is everything egwct knows about one Cilium minor version.
type Profile struct {
	// Name is how users refer to the profile: "1.18" or "main".
	Name string
	// Major and Minor are the version the profile covers (main: the
	// development version, 1.21).
	Major, Minor int
	// Dev marks the profile of Cilium's development branch.
	Dev bool
	// Checked is the newest release whose sources the facts were read
	// from by hand (Sources); zero when only a branch point was read.
	Checked Version
	// VerifiedAgainst lists the releases hack/verify-profiles checked the
	// profile against with Cilium's own Go code, oldest first
	// (hack/verify-profiles/verified.json records each check).
	VerifiedAgainst []Version
	// Differs lists releases of the minor on which hack/verify-profiles
	// found a fact that differs from the profile; they resolve with a
	// warning.
	Differs []Version
	// Sources lists the upstream commits the facts were read from.
	Sources []string
	// Parameters are the keys of the timeout text, one per State.
	Parameters []Parameter
	// ServiceTimers exist in the agent but do not apply to egress flows.
	ServiceTimers []ServiceTimer
	// Maps lists the pinned maps egwct reads or writes.
	Maps []MapSpec
	// CTEntry is the ct_entry layout.
	CTEntry CTEntryLayout
	// Layouts are the other C structs of the maps' keys and values, by
	// their C name (ipv4_ct_tuple, ipv4_nat_entry, egress_gw_policy_key, ...).
	Layouts []Layout
	// GCInterval are the bounds of the agent's CT GC interval.
	GCInterval GCInterval
	// Clock are the clock-source rules.
	Clock ClockRules
	// SNATRetries is SNAT_COLLISION_RETRIES, the port-allocation retries.
	SNATRetries int
	// GCDeletesNAT says which SNAT entries Cilium's CT GC deletes with a
	// CT entry in this version.
	GCDeletesNAT string
	// Quirks are known behaviours of some of the profile's releases.
	Quirks []Quirk
}

// Layout is the layout of one C struct of a map key or value.
type Layout struct {
	Name   string
	Size   int
	Fields []Field
}

// Layout returns the layout of the named C struct; "ct_entry" is CTEntry.
func (p *Profile) Layout(name string) (Layout, bool) {
	if name == "ct_entry" {
		return Layout{Name: name, Size: p.CTEntry.Size, Fields: p.CTEntry.Fields}, true
	}
	for _, l := range p.Layouts {
		if l.Name == name {
			return l, true
		}
	}
	return Layout{}, false
}

// GCInterval are the bounds of the agent's dynamic CT GC interval: it
// starts at Start and adapts between Min and Max (unless the node sets
// conntrack-gc-interval), so an entry past its lifetime may wait up to
// Max for Cilium's own GC.
type GCInterval struct {
	Start, Min, Max time.Duration
}

// NewestChecked is the newest release the profile's facts were checked
// against, by hand or by hack/verify-profiles; zero if none.
func (p *Profile) NewestChecked() Version {
	v := p.Checked
	for _, r := range p.VerifiedAgainst {
		if v == (Version{}) || r.Compare(v) > 0 {
			v = r
		}
	}
	return v
}

// Parameter returns the timeout-text parameter with the given key.
func (p *Profile) Parameter(key string) (Parameter, bool) {
	for _, prm := range p.Parameters {
		if prm.Key == key {
			return prm, true
		}
	}
	return Parameter{}, false
}

// ParameterFor returns the parameter governing state s.
func (p *Profile) ParameterFor(s State) Parameter {
	for _, prm := range p.Parameters {
		if prm.State == s {
			return prm
		}
	}
	panic(fmt.Sprintf("profile %s has no parameter for state %s", p.Name, s))
}

// ServiceTimer returns the service timer with the given key.
func (p *Profile) ServiceTimer(key string) (ServiceTimer, bool) {
	for _, t := range p.ServiceTimers {
		if t.Key == key {
			return t, true
		}
	}
	return ServiceTimer{}, false
}

// Map returns the map of the given role and address family.
func (p *Profile) Map(role MapRole, family int) (MapSpec, bool) {
	for _, m := range p.Maps {
		if m.Role == role && m.Family == family {
			return m, true
		}
	}
	return MapSpec{}, false
}

// QuirksFor returns the quirks present in version v.
func (p *Profile) QuirksFor(v Version) []Quirk {
	var out []Quirk
	for _, q := range p.Quirks {
		if q.AppliesTo(v) {
			out = append(out, q)
		}
	}
	return out
}

// Covers reports whether the profile is the one for version v.
func (p *Profile) Covers(v Version) bool {
	return v.Major == p.Major && v.Minor == p.Minor
}
