package printer

import (
	"fmt"
	"strings"
)

// Clean makes text from input files or cluster objects safe for a
// terminal: control characters (escape sequences, newlines, bidi
// overrides) are shown escaped, never sent raw; only tabs are kept.
func Clean(s string) string {
	ok := true
	for _, r := range s {
		if IsControl(r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if IsControl(r) {
			if r > 0xff {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				fmt.Fprintf(&b, `\x%02x`, r)
			}
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// IsControl says whether Clean escapes r.
func IsControl(r rune) bool {
	return (r < 0x20 && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) ||
		r == '\u2028' || r == '\u2029' || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}
