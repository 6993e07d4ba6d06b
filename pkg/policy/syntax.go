package policy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	yamlv4 "go.yaml.in/yaml/v4"
)

// locate finds where the syntax error msg (the YAML reader's own text,
// without its "line N: ") is, and says it for that place. The reader
// (go.yaml.in/yaml/v3) gives a line only, and the line of the construct it
// was reading rather than of the problem: a mis-indented key is reported at
// the mapping above it, a parser error one line short. Version 4 of the
// same parser gives the problem's line and column and the construct's; it
// reads the file again, only when there is an error. ok is false when it
// does not find the same error.
//
// The place is the problem's, except where the parser finds a problem far
// from its cause: a quote, "[" or "{" left open is found at the end of the
// file or at the next block key, so the finding is at the opening
// character; a scalar that is not a key, at the scalar; a key indented
// deeper than the line above (which the parser reads as the rest of that
// line's value), at the key. Something missing at the end of the file is
// missing after its last character outside a comment.
func (s *Source) locate(msg string) (pos Position, text string, ok bool) {
	dec := yamlv4.NewDecoder(bytes.NewReader(s.data))
	var le *yamlv4.LoadError
	for {
		var doc yamlv4.Node
		err := dec.Decode(&doc)
		if err == nil {
			continue
		}
		if !errors.As(err, &le) || le.Message != msg || le.Mark.Line < 1 {
			return Position{}, "", false
		}
		break
	}
	m, c := le.Mark, le.ContextMark
	eof := s.atEnd(m.Line, m.Column)
	if eof { // perhaps on a line after the last
		m.Line, m.Column = s.end()
	}
	pos = Position{File: s.File, Line: m.Line, Column: m.Column}
	switch ctx := le.ContextMsg; {
	case c.Line > 0 && (ctx == "while scanning a simple key" || unclosed[ctx] && (eof || s.leftOpen(c.Line, m.Line, m.Column))):
		if !eof {
			msg += fmt.Sprintf(" at line %d, column %d,", m.Line, m.Column)
		}
		return Position{File: s.File, Line: c.Line, Column: c.Column}, msg + " " + ctx + " that starts here", true
	case msg == "mapping values are not allowed in this context":
		if col, ok := s.continuedKey(m.Line, m.Column); ok {
			pos.Column = col
			msg += " (the line above has a value, and this line, indented deeper, is read as the rest of it)"
		}
	}
	return pos, msg, true
}

// unclosed are the parser's contexts of a construct that ends with a
// character of its own.
var unclosed = map[string]bool{
	"while parsing a flow sequence":  true,
	"while parsing a flow mapping":   true,
	"while scanning a quoted scalar": true,
}

// leftOpen tells whether a construct opened on line open and found broken
// at line, col was left open: the file ends, or block structure resumes on
// a later line indented no deeper than the opening line.
func (s *Source) leftOpen(open, line, col int) bool {
	return s.atEnd(line, col) || line > open && indent(s.line(line)) <= indent(s.line(open))
}

// atEnd tells whether nothing but white space follows line, col.
func (s *Source) atEnd(line, col int) bool {
	raw, ok := s.Line(line)
	if !ok {
		return true
	}
	off := s.starts[line-1] + byteOffset(raw, col)
	if line == 1 && bytes.HasPrefix(s.data, bom) {
		off += len(bom)
	}
	return len(bytes.TrimSpace(s.data[min(off, len(s.data)):])) == 0
}

// byteOffset is the offset in line of column col (1-based, in characters),
// or the line's length past its end.
func byteOffset(line string, col int) int {
	for i := range line {
		if col <= 1 {
			return i
		}
		col--
	}
	return len(line)
}

// continuedKey gives the column of the key on line when the ":" at col is
// the first on that line and the line is indented deeper than the one above
// (blank lines aside): the parser then reads the key as the rest of a plain
// value above, and finds its ":" out of place.
func (s *Source) continuedKey(line, col int) (int, bool) {
	raw := s.line(line)
	n := indent(raw)
	head := []rune(raw)
	if col-1 > len(head) || n >= col-1 {
		return 0, false
	}
	key := string(head[n : col-1])
	if strings.Contains(key, ": ") || strings.ContainsAny(key[:1], "-?#{[\"'") {
		return 0, false
	}
	for above := line - 1; above >= 1; above-- {
		prev := s.line(above)
		if strings.TrimSpace(prev) != "" {
			return n + 1, indent(prev) < n
		}
	}
	return 0, false
}

// tabError are the YAML reader's errors about a tab where it wants spaces.
var tabError = map[string]bool{
	"found a tab character that violates indentation": true,
	"found character that cannot start any token":     true,
}

// indentTab finds the first tab among the blanks that begin a line, from
// line from (1 when 0) to the first later line with content.
func (s *Source) indentTab(from int) (Position, bool) {
	for n := max(from, 1); ; n++ {
		raw, ok := s.Line(n)
		if !ok {
			return Position{}, false
		}
		rest := strings.TrimLeft(raw, " \t")
		if i := strings.IndexByte(raw[:len(raw)-len(rest)], '\t'); i >= 0 {
			return Position{File: s.File, Line: n, Column: i + 1}, true
		}
		if n > from && strings.TrimSpace(rest) != "" && !strings.HasPrefix(rest, "#") {
			return Position{}, false
		}
	}
}

// end is the line and column just after the last character of the file
// that is neither white space nor in a comment: the parser reads past
// comments to the end of the file before it finds something missing, and
// the place of what is missing is after the last thing written.
func (s *Source) end() (line, col int) {
	s.Line(1) // counts the lines
	for line = len(s.starts); line > 1; line-- {
		if strings.TrimSpace(uncommented(s.line(line))) != "" {
			break
		}
	}
	text := strings.TrimRight(uncommented(s.line(line)), " \t\r")
	return line, utf8.RuneCountInString(text) + 1
}

// uncommented is line without its comment, a "#" at the start of the line
// or after white space, outside a quoted scalar that starts on the line.
func uncommented(line string) string {
	var quote rune
	escaped, prev := false, ' '
	for i, r := range line {
		switch {
		case escaped:
			escaped = false
		case quote == '"' && r == '\\':
			escaped = true
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '#' && (prev == ' ' || prev == '\t'):
			return line[:i]
		case (r == '"' || r == '\'') && strings.ContainsRune(" \t[{,", prev):
			quote = r
		}
		prev = r
	}
	return line
}

// line is Line without its carriage return, empty past the end.
func (s *Source) line(n int) string {
	raw, _ := s.Line(n)
	return strings.TrimSuffix(raw, "\r")
}

// indent is the number of spaces that begin line.
func indent(line string) int {
	return len(line) - len(strings.TrimLeft(line, " "))
}
