package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/egwct/egwct/internal/yamlnode"
)

// The places a timeout text can come from.
const (
	// SpecField is the CFP's field, spec.connection-timeouts.
	SpecField = "connection-timeouts"
	// Annotation is egwct's annotation, for clusters whose CRD schema
	// prunes the spec field.
	Annotation = "egwct.io/connection-timeouts"

	// Kind and APIVersion identify the objects egwct reads.
	Kind       = "CiliumEgressGatewayPolicy"
	APIVersion = "cilium.io/v2"
)

// Position is a place in an input file; Line and Column are 1-based, and
// zero when unknown.
type Position struct {
	File         string
	Line, Column int
}

func (p Position) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Column == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// TextSource is a timeout text as found in a manifest.
type TextSource struct {
	// Field names where the text was found, as a person would write it:
	// "spec.connection-timeouts" or "annotation egwct.io/connection-timeouts".
	Field string
	// Text is the text; empty when the value is not a string.
	Text string
	// Pos is the position of the value in the file.
	Pos Position
	// NotText is set when the value is not a string (e.g. a YAML mapping
	// where a "|" block was meant); NodeKind says what it is.
	NotText  bool
	NodeKind string

	node *yaml.Node
	src  *Source
}

// PositionOf maps a line and byte column of the text to the file. exact is
// false when the text's layout in the file is not line for line (quoted or
// folded strings); the position is then that of the value itself.
func (t *TextSource) PositionOf(line, col int) (pos Position, exact bool) {
	if t.node == nil || t.src == nil || t.node.Style != yaml.LiteralStyle || line < 1 {
		return t.Pos, false
	}
	textLine := nthLine(t.Text, line)
	fileLine := t.node.Line + line
	raw, ok := t.src.Line(fileLine)
	if !ok {
		return t.Pos, false
	}
	raw = strings.TrimSuffix(raw, "\r")
	indent := len(raw) - len(textLine)
	if textLine == "" || indent < 0 || raw[indent:] != textLine || strings.Trim(raw[:indent], " ") != "" {
		return t.Pos, false
	}
	return Position{File: t.Pos.File, Line: fileLine, Column: indent + col}, true
}

func nthLine(s string, n int) string {
	for i := 1; i < n; i++ {
		j := strings.IndexByte(s, '\n')
		if j < 0 {
			return ""
		}
		s = s[j+1:]
	}
	if j := strings.IndexByte(s, '\n'); j >= 0 {
		s = s[:j]
	}
	return s
}

// Policy is a CiliumEgressGatewayPolicy read from a manifest.
type Policy struct {
	Name string
	// UID and Generation are the object's metadata.uid and
	// metadata.generation, set on objects read from a cluster.
	UID        string
	Generation int64
	APIVersion string
	// Pos is the position of the object (its first key).
	Pos Position
	// Spec and Annotation are the timeout texts found, nil when absent.
	Spec, Annotation *TextSource
	// Object is the YAML mapping of the whole object, for later decoding.
	Object *yaml.Node
}

// DisplayName is the policy's name, or a placeholder for unnamed objects.
func (p *Policy) DisplayName() string {
	if p.Name == "" {
		return "<unnamed>"
	}
	return p.Name
}

// Skipped is an object of another kind, which validate ignores.
type Skipped struct {
	Kind, APIVersion string
	Pos              Position
}

// SyntaxError is input that is not YAML or JSON.
type SyntaxError struct {
	Pos Position
	Msg string
}

func (e *SyntaxError) Error() string { return e.Pos.String() + ": " + e.Msg }

// Manifest is what Read found in one file.
type Manifest struct {
	Policies []*Policy
	Skipped  []Skipped
}

// Source is one input file. Its policies are visited one document at a
// time, so that memory does not grow with the number of documents.
type Source struct {
	File string
	data []byte
	// starts indexes the lines, built on first use only, so that files
	// without findings cost nothing extra.
	starts []int
}

// NewSource wraps the contents of a file.
func NewSource(file string, data []byte) *Source {
	return &Source{File: file, data: data}
}

// Read decodes the whole file and returns its policies and skipped objects.
func Read(file string, data []byte) (*Manifest, error) {
	m := &Manifest{}
	err := NewSource(file, data).Each(
		func(p *Policy) { m.Policies = append(m.Policies, p) },
		func(s Skipped) { m.Skipped = append(m.Skipped, s) })
	return m, err
}

// Each decodes every YAML or JSON document of the file (multi-document
// streams and kind: List included) and calls policy for each
// CiliumEgressGatewayPolicy and skipped (if not nil) for objects of other
// kinds. A syntax error ends the file: Each returns a *SyntaxError after
// visiting what came before it.
func (s *Source) Each(policy func(*Policy), skipped func(Skipped)) (err error) {
	return s.EachObject(policy, nil, skipped)
}

// EachObject is Each that also delivers CiliumEndpoints to endpoint (when
// not nil) instead of skipping them.
func (s *Source) EachObject(policy func(*Policy), endpoint func(*Endpoint), skipped func(Skipped)) (err error) {
	defer func() {
		// The YAML library is not ours; a panic in it must not take the
		// process down on hostile input.
		if r := recover(); r != nil {
			err = &SyntaxError{Pos: Position{File: s.File}, Msg: fmt.Sprintf("YAML parser failed: %v", r)}
		}
	}()
	if skipped == nil {
		skipped = func(Skipped) {}
	}
	dec := yaml.NewDecoder(bytes.NewReader(s.data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return s.syntaxError(err)
		}
		if len(doc.Content) == 0 {
			continue
		}
		if err := s.duplicateKey(&doc); err != nil {
			return err
		}
		s.collect(yamlnode.Resolve(doc.Content[0]), 0, policy, endpoint, skipped)
	}
}

// collect adds the object in n, descending into the items of lists.
func (s *Source) collect(n *yaml.Node, depth int, policy func(*Policy), endpoint func(*Endpoint), skipped func(Skipped)) {
	pos := Position{File: s.File, Line: n.Line, Column: n.Column}
	if n.Kind != yaml.MappingNode {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return
		}
		skipped(Skipped{Kind: "(not an object)", Pos: pos})
		return
	}
	kind := yamlnode.Str(yamlnode.Get(n, "kind"))
	apiVersion := yamlnode.Str(yamlnode.Get(n, "apiVersion"))
	if items := yamlnode.Get(n, "items"); items != nil && strings.HasSuffix(kind, "List") && depth < 4 {
		if items.Kind == yaml.SequenceNode {
			for _, it := range items.Content {
				s.collect(yamlnode.Resolve(it), depth+1, policy, endpoint, skipped)
			}
		}
		return
	}
	if kind == EndpointKind && endpoint != nil {
		endpoint(readEndpoint(n, pos))
		return
	}
	if kind != Kind {
		skipped(Skipped{Kind: kind, APIVersion: apiVersion, Pos: pos})
		return
	}
	meta := yamlnode.Get(n, "metadata")
	p := &Policy{
		Name:       yamlnode.Str(yamlnode.Get(meta, "name")),
		UID:        yamlnode.Str(yamlnode.Get(meta, "uid")),
		APIVersion: apiVersion,
		Pos:        pos,
		Object:     n,
	}
	p.Generation, _ = strconv.ParseInt(yamlnode.Str(yamlnode.Get(meta, "generation")), 10, 64)
	if v := yamlnode.Get(yamlnode.Get(n, "spec"), SpecField); v != nil {
		p.Spec = s.textSource("spec."+SpecField, v)
	}
	if v := yamlnode.Get(yamlnode.Get(meta, "annotations"), Annotation); v != nil {
		p.Annotation = s.textSource("annotation "+Annotation, v)
	}
	policy(p)
}

func (s *Source) textSource(field string, v *yaml.Node) *TextSource {
	t := &TextSource{Field: field, Pos: Position{File: s.File, Line: v.Line, Column: v.Column}, node: v, src: s}
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!str" && v.Tag != "!!null") {
		t.NotText = true
		t.NodeKind = nodeKind(v)
		return t
	}
	if v.Tag == "!!null" {
		return t // "connection-timeouts:" with nothing: an empty text
	}
	t.Text = v.Value
	return t
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	}
	return "not a string"
}

// duplicateKey finds the first key set twice in one mapping of a
// document. The YAML reader takes such a document, and egwct would read
// the first value, but kubectl refuses the file and the tools that take it
// (helm, kubectl --validate=false) keep the last value, so the text checked
// would not be the text applied.
func (s *Source) duplicateKey(doc *yaml.Node) *SyntaxError {
	stack := []*yaml.Node{doc}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Kind == yaml.MappingNode {
			seen := map[string]*yaml.Node{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
					continue
				}
				if first, dup := seen[k.Value]; dup {
					return &SyntaxError{Pos: Position{File: s.File, Line: k.Line, Column: k.Column}, Msg: fmt.Sprintf(
						"key %q is set again in the same mapping (first on line %d): kubectl refuses the file, and tools that take it keep the last value; remove one of them",
						k.Value, first.Line)}
				}
				seen[k.Value] = k
			}
		}
		if n.Kind != yaml.AliasNode { // an alias's node is visited where it is defined
			for i := len(n.Content) - 1; i >= 0; i-- {
				stack = append(stack, n.Content[i])
			}
		}
	}
	return nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

func (s *Source) syntaxError(err error) *SyntaxError {
	msg := err.Error()
	pos := Position{File: s.File}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		pos.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	if p, text, ok := s.locate(msg); ok {
		pos, msg = p, text
	} else if tabError[msg] {
		// A tab on a line of white space or before a comment: version 4
		// of the reader takes it, version 3 gives the line of the
		// content before it.
		if p, ok := s.indentTab(pos.Line); ok {
			pos = p
		}
	}
	if msg == "control characters are not allowed" {
		// The YAML reader says no more: find the character.
		if p, r, ok := unprintable(s.data); ok {
			pos.Line, pos.Column = p.Line, p.Column
			msg = fmt.Sprintf("control character %U is not allowed in YAML (JSON is read as YAML): remove it, or write it as \\u%04x in a double-quoted string", r, r)
		}
	}
	return &SyntaxError{Pos: pos, Msg: msg}
}

// unprintable finds the first character of data that YAML does not allow
// in a stream (outside its printable set: C0 controls but tab, line feed
// and carriage return, DEL, C1 controls but NEL, surrogates, U+FFFE and
// U+FFFF), and its line and column (1-based, in characters).
func unprintable(data []byte) (Position, rune, bool) {
	line, col := 1, 1
	for _, r := range string(data) {
		switch {
		case r == '\n':
			line, col = line+1, 1
			continue
		case r == '\t' || r == '\r' || r == 0x85 || r == utf8.RuneError:
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0xfffe || r == 0xffff:
			return Position{Line: line, Column: col}, r, true
		}
		col++
	}
	return Position{}, 0, false
}

// bom is the byte order mark a file may begin with. The YAML reader skips
// it: its columns on line 1 count from the character after.
var bom = []byte("\ufeff")

// Line returns line n (1-based) of the file, without its line break, and
// line 1 without a byte order mark, so that its columns are the YAML
// reader's.
func (s *Source) Line(n int) (string, bool) {
	if s.starts == nil {
		s.starts = append(s.starts, 0)
		for i, b := range s.data {
			if b == '\n' {
				s.starts = append(s.starts, i+1)
			}
		}
	}
	if n < 1 || n > len(s.starts) {
		return "", false
	}
	start, end := s.starts[n-1], len(s.data)
	if n < len(s.starts) {
		end = s.starts[n] - 1
	}
	if n == 1 && bytes.HasPrefix(s.data, bom) {
		start += len(bom)
	}
	return string(s.data[start:end]), true
}
