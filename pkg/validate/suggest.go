package validate

import (
	"strings"

	"github.com/egwct/egwct/pkg/profiles"
)

// normalize folds the spellings people use for a key into one: camelCase,
// kebab-case, snake_case and agent flags with leading dashes.
func normalize(s string) string {
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

// Short names people write for a state's key.
var stateAliases = map[string]profiles.State{
	"syn": profiles.StateSyn, "tcpsyn": profiles.StateSyn, "synsent": profiles.StateSyn, "handshake": profiles.StateSyn,
	"tcp": profiles.StateEstablished, "established": profiles.StateEstablished, "tcpestablished": profiles.StateEstablished,
	"fin": profiles.StateClosing, "tcpfin": profiles.StateClosing, "close": profiles.StateClosing, "closing": profiles.StateClosing,
	"any": profiles.StateNonTCP, "udp": profiles.StateNonTCP, "nontcp": profiles.StateNonTCP, "icmp": profiles.StateNonTCP, "other": profiles.StateNonTCP,
}

// suggestKey returns the parameter key a misspelt key most likely means,
// or "" when none is close.
func suggestKey(p *profiles.Profile, key string) string {
	n := normalize(key)
	if len(n) > 64 {
		return ""
	}
	for _, prm := range p.Parameters {
		full := normalize(prm.Key)
		if n == full || n == strings.TrimPrefix(full, "bpfcttimeout") || n == strings.TrimPrefix(full, "bpfcttimeoutregular") {
			return prm.Key
		}
	}
	trimmed := strings.TrimPrefix(strings.TrimPrefix(n, "bpfcttimeout"), "regular")
	if s, ok := stateAliases[trimmed]; ok {
		return p.ParameterFor(s).Key
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
