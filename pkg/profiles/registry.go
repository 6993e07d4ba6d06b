package profiles

import (
	"fmt"
	"sort"
	"strings"
)

var registry []*Profile

// register adds a profile; each profile file calls it from init.
func register(p *Profile) {
	for _, q := range registry {
		if q.Name == p.Name || (q.Major == p.Major && q.Minor == p.Minor) {
			panic("profiles: duplicate profile " + p.Name)
		}
	}
	if len(p.Parameters) != len(States) {
		panic("profiles: profile " + p.Name + " must have one parameter per state")
	}
	registry = append(registry, p)
	sort.Slice(registry, func(i, j int) bool {
		a, b := registry[i], registry[j]
		if a.Major != b.Major {
			return a.Major < b.Major
		}
		return a.Minor < b.Minor
	})
}

// All returns every profile, oldest Cilium version first.
func All() []*Profile {
	return append([]*Profile(nil), registry...)
}

// Names returns the names of all profiles, oldest first.
func Names() []string {
	names := make([]string, len(registry))
	for i, p := range registry {
		names[i] = p.Name
	}
	return names
}

// Resolution is the result of mapping a version string to a profile.
type Resolution struct {
	Profile *Profile
	// Version is the parsed version (for "main", the development version).
	Version Version
	// Unverified is set when the profile's facts may not hold for Version:
	// a development build, a release of a minor that is still in
	// development, a profile checked against no release, or a release on
	// which hack/verify-profiles found a difference.
	Unverified bool
	// NewerPatch is set when Version is a patch release newer than any the
	// profile was checked against, of a minor whose released patches all
	// matched: worth a note, not a warning.
	NewerPatch bool
}

// Reason says in a sentence why the profile was chosen.
func (r Resolution) Reason() string {
	p := r.Profile
	s := fmt.Sprintf("Cilium %s uses profile %s", r.Version, p.Name)
	switch {
	case p.Dev:
		s += fmt.Sprintf(" (%d.%d development; checked against %s)", p.Major, p.Minor, p.Sources[0])
	case len(p.VerifiedAgainst) > 0:
		s += " (verified against " + joinVersions(p.VerifiedAgainst) + " with Cilium's own code)"
	case p.Checked == (Version{}):
		s += fmt.Sprintf(" (checked against the v%d.%d branch point, no release checked)", p.Major, p.Minor)
	default:
		s += " (checked against " + p.Checked.String() + ")"
	}
	return s
}

func joinVersions(vs []Version) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.String()
	}
	return strings.Join(parts, ", ")
}

func contains(vs []Version, v Version) bool {
	for _, x := range vs {
		if x.Compare(v) == 0 {
			return true
		}
	}
	return false
}

// UnknownVersionError is returned for a version no profile covers.
type UnknownVersionError struct {
	Version string
}

func (e *UnknownVersionError) Error() string {
	return fmt.Sprintf("no profile for Cilium version %q; known: %s", e.Version, knownList())
}

func knownList() string {
	var parts []string
	for _, p := range registry {
		if p.Dev {
			parts = append(parts, fmt.Sprintf("%s (%d.%d-dev)", p.Name, p.Major, p.Minor))
			continue
		}
		parts = append(parts, p.Name)
	}
	return strings.Join(parts, ", ")
}

// Resolve maps a version string ("1.18.3", "v1.17.0-rc.1", "1.20.0-dev",
// "1.16", or a profile name such as "main") to its profile.
func Resolve(s string) (Resolution, error) {
	name := strings.TrimSpace(s)
	for _, p := range registry {
		if name == p.Name || (p.Dev && strings.EqualFold(name, "main")) {
			v := Version{Major: p.Major, Minor: p.Minor, Patch: -1}
			if p.Dev {
				v = Version{Major: p.Major, Minor: p.Minor, Patch: 0, Pre: "dev"}
			}
			return Resolution{Profile: p, Version: v, Unverified: p.Dev}, nil
		}
	}
	v, err := ParseVersion(name)
	if err != nil {
		return Resolution{}, fmt.Errorf("%w; known profiles: %s", err, knownList())
	}
	for _, p := range registry {
		if !p.Covers(v) {
			continue
		}
		r := Resolution{Profile: p, Version: v}
		newest := p.NewestChecked()
		switch {
		case p.Dev:
			// Development builds and releases of a minor still in
			// development: nothing released was checked.
			r.Unverified = true
		case v.Patch < 0:
		case v.Pre != "":
			// A pre-release or development build of a released minor.
			r.Unverified = true
		case contains(p.Differs, v):
			r.Unverified = true
		case newest == (Version{}):
			r.Unverified = true
		case v.Patch > newest.Patch:
			r.NewerPatch = true
		}
		return r, nil
	}
	return Resolution{}, &UnknownVersionError{Version: s}
}
