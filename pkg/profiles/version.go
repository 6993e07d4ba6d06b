package profiles

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a parsed Cilium version such as 1.18.3, v1.17.0-rc.1 or
// 1.20.0-dev. Patch is -1 when the string named only a minor version.
type Version struct {
	Major, Minor, Patch int
	// Pre is the pre-release part without its dash ("rc.1", "dev"), if any.
	Pre string
}

// ParseVersion parses "1.18", "1.18.3", "v1.17.0-rc.1", "1.20.0-dev" and
// "1.18.3+build". It accepts no other forms.
func ParseVersion(s string) (Version, error) {
	in := s
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "v")
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s = s[:i]
	}
	var v Version
	if i := strings.IndexByte(s, '-'); i >= 0 {
		v.Pre = s[i+1:]
		s = s[:i]
		if v.Pre == "" {
			return Version{}, fmt.Errorf("invalid Cilium version %q: empty pre-release after '-'", in)
		}
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return Version{}, fmt.Errorf("invalid Cilium version %q: want MAJOR.MINOR[.PATCH], e.g. 1.18.3", in)
	}
	nums := [3]int{0, 0, -1}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 1<<20 || (len(p) > 1 && p[0] == '0') {
			return Version{}, fmt.Errorf("invalid Cilium version %q: %q is not a version number", in, p)
		}
		nums[i] = n
	}
	if v.Pre != "" && nums[2] < 0 {
		return Version{}, fmt.Errorf("invalid Cilium version %q: a pre-release needs a patch number, e.g. 1.20.0-dev", in)
	}
	v.Major, v.Minor, v.Patch = nums[0], nums[1], nums[2]
	return v, nil
}

// MustParseVersion is ParseVersion for constants in profile files.
func MustParseVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

// String formats the version as Cilium does, without a leading "v".
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d", v.Major, v.Minor)
	if v.Patch >= 0 {
		s += fmt.Sprintf(".%d", v.Patch)
	}
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	return s
}

// Compare orders versions by major, minor and patch; a pre-release sorts
// before its release, and a version without patch sorts before any patch.
func (v Version) Compare(o Version) int {
	for _, d := range [3]int{v.Major - o.Major, v.Minor - o.Minor, v.Patch - o.Patch} {
		if d != 0 {
			if d < 0 {
				return -1
			}
			return 1
		}
	}
	switch {
	case v.Pre == o.Pre:
		return 0
	case v.Pre == "":
		return 1
	case o.Pre == "":
		return -1
	}
	return strings.Compare(v.Pre, o.Pre)
}

// Range is an inclusive range of Cilium versions. A zero To means "every
// later release of From's minor version".
type Range struct {
	From, To Version
}

// Contains reports whether v lies in the range. A version without a patch
// number is in the range when any patch of that minor could be.
func (r Range) Contains(v Version) bool {
	if v.Major != r.From.Major || v.Minor < r.From.Minor {
		return false
	}
	to := r.To
	if to == (Version{}) {
		to = Version{Major: r.From.Major, Minor: r.From.Minor, Patch: 1 << 30}
	}
	if v.Minor > to.Minor {
		return false
	}
	if v.Patch < 0 {
		return true
	}
	probe := Version{Major: v.Major, Minor: v.Minor, Patch: v.Patch}
	return probe.Compare(Version{Major: r.From.Major, Minor: r.From.Minor, Patch: r.From.Patch}) >= 0 &&
		probe.Compare(Version{Major: to.Major, Minor: to.Minor, Patch: to.Patch}) <= 0
}

// String formats the range for people, e.g. "1.15.0–1.15.1" or "1.14.x".
func (r Range) String() string {
	if r.To == (Version{}) {
		if r.From.Patch <= 0 {
			return fmt.Sprintf("%d.%d.x", r.From.Major, r.From.Minor)
		}
		return fmt.Sprintf("%s and later %d.%d releases", r.From, r.From.Major, r.From.Minor)
	}
	return r.From.String() + "–" + r.To.String()
}
