package validate

import (
	"strings"

	"github.com/egwct/egwct/pkg/profiles"
)

// Normalize folds the spellings people use for a key into one: camelCase,
// kebab-case, snake_case and agent flags with leading dashes. The
// admission policy (internal/admission) does the same in CEL.
func Normalize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimLeft(s, "-")) {
		switch r {
		case '-', '_', '.', ' ':
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func normalize(s string) string { return Normalize(s) }

// Short names people write for a state's key.
var stateAliases = map[string]profiles.State{
	"syn": profiles.StateSyn, "tcpsyn": profiles.StateSyn, "synsent": profiles.StateSyn, "handshake": profiles.StateSyn,
	"tcp": profiles.StateEstablished, "established": profiles.StateEstablished, "tcpestablished": profiles.StateEstablished,
	"fin": profiles.StateClosing, "tcpfin": profiles.StateClosing, "close": profiles.StateClosing, "closing": profiles.StateClosing,
	"any": profiles.StateNonTCP, "udp": profiles.StateNonTCP, "nontcp": profiles.StateNonTCP, "icmp": profiles.StateNonTCP, "other": profiles.StateNonTCP,
}

// Spellings maps the normalized spellings (Normalize) that certainly mean
// one of the profile's keys to that key: the key in another case or
// style, without its bpfCtTimeout(Regular) prefix, or a short name of its
// state ("udp", "fin"). Near misses beyond these are found by edit
// distance.
func Spellings(p *profiles.Profile) map[string]string {
	m := map[string]string{}
	for _, prm := range p.Parameters {
		full := normalize(prm.Key)
		for _, n := range []string{full, strings.TrimPrefix(full, "bpfcttimeout"), strings.TrimPrefix(full, "bpfcttimeoutregular")} {
			if _, ok := m[n]; !ok {
				m[n] = prm.Key
			}
		}
	}
	for alias, st := range stateAliases {
		key := p.ParameterFor(st).Key
		for _, n := range []string{alias, "regular" + alias, "bpfcttimeout" + alias, "bpfcttimeoutregular" + alias} {
			if _, ok := m[n]; !ok {
				m[n] = key
			}
		}
	}
	return m
}

// suggestKey returns the parameter key a misspelt key most likely means,
// or "" when none is close.
func suggestKey(p *profiles.Profile, key string) string {
	n := normalize(key)
	if len(n) > 64 {
		return ""
	}
	if k, ok := Spellings(p)[n]; ok {
		return k
	}
	best, bestDist := "", 4
	for _, prm := range p.Parameters {
		if d := distance(n, normalize(prm.Key)); d < bestDist {
			best, bestDist = prm.Key, d
		}
	}
	return best
}

// distance is the Levenshtein distance between two short strings.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
