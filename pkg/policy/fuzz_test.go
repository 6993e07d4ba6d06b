package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzParseText(f *testing.F) {
	for _, s := range []string{
		"bpfCtTimeoutRegularTcp: 5m\n# c\n\nbpfCtTimeoutRegularAny: '30s' # x\r\n",
		": x\nk:\nk = v\n\t  a:b:c",
		"\x00:\xff\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		text := ParseText(s)
		lines := strings.Count(s, "\n") + 1
		for _, e := range text.Entries {
			if e.Key == "" || e.Value == "" || e.Line < 1 || e.Line > lines || e.KeyCol < 1 || e.ValueCol <= e.KeyCol {
				t.Fatalf("bad entry %+v for %q", e, s)
			}
			if _, err := ParseDuration(e.Value); err != nil && err.Error() == "" {
				t.Fatal("empty error")
			}
		}
		for _, le := range text.Errors {
			if le.Line < 1 || le.Line > lines || le.Col < 1 || le.Msg == "" {
				t.Fatalf("bad error %+v", le)
			}
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30s", "1h30m", "300", "-5", "5 mins", "1d", "1e9", ".5s", "9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && d <= 0 {
			t.Fatalf("ParseDuration(%q) = %v without error", s, d)
		}
		if de, ok := err.(*DurationError); ok && de.Suggestion != "" {
			if _, err := ParseDuration(de.Suggestion); err != nil {
				t.Fatalf("suggestion %q for %q does not parse: %v", de.Suggestion, s, err)
			}
		}
	})
}

// FuzzRead feeds arbitrary bytes to the manifest reader: it must never
// panic, and positions it gives must be inside the file.
func FuzzRead(f *testing.F) {
	files, _ := filepath.Glob("../../examples/*/*")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(literal))
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Add([]byte("\ufeffa: [b,\r\n c: \"d\n"))
	f.Add([]byte("a:\n  b: c\n   d: e\n\t- f\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		src := NewSource("fuzz.yaml", data)
		lines := strings.Count(string(data), "\n") + 1
		check := func(ts *TextSource) {
			if ts == nil {
				return
			}
			for i := 1; i <= strings.Count(ts.Text, "\n")+2; i++ {
				pos, exact := ts.PositionOf(i, 1)
				if exact && (pos.Line < 1 || pos.Line > lines) {
					t.Fatalf("PositionOf(%d) = %v outside the file", i, pos)
				}
			}
		}
		err := src.Each(func(p *Policy) {
			check(p.Spec)
			check(p.Annotation)
		}, nil)
		var se *SyntaxError
		// Source.Line breaks lines at line feeds only, the YAML reader at
		// a lone carriage return, NEL, LS and PS too.
		otherBreaks := strings.ContainsAny(strings.ReplaceAll(string(data), "\r\n", ""), "\r\u0085\u2028\u2029")
		if errors.As(err, &se) && !otherBreaks {
			if se.Msg == "" || se.Pos.Line < 0 || se.Pos.Line > lines || se.Pos.Column < 0 || se.Pos.Line == 0 && se.Pos.Column != 0 {
				t.Fatalf("syntax error %v %q outside the file", se.Pos, se.Msg)
			}
			if raw, _ := src.Line(se.Pos.Line); se.Pos.Column > utf8.RuneCountInString(raw)+1 {
				t.Fatalf("syntax error %v %q past the end of line %q", se.Pos, se.Msg, raw)
			}
		}
	})
}
