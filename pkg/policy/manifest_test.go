package policy

import (
	"errors"
	"strings"
	"testing"
)

const literal = `# comment
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: one
spec:
  connection-timeouts: |

    # first line blank
    bpfCtTimeoutRegularTcp: 5m
      indented: 1s
---
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
---
apiVersion: v1
kind: List
items:
- apiVersion: cilium.io/v2
  kind: CiliumEgressGatewayPolicy
  metadata:
    name: two
    annotations:
      egwct.io/connection-timeouts: "bpfCtTimeoutRegularAny: 30s\nx: 1s"
- apiVersion: cilium.io/v2alpha1
  kind: CiliumEgressGatewayPolicy
  metadata: {name: three}
  spec:
    connection-timeouts:
      bpfCtTimeoutRegularTcp: 5m
`

func TestRead(t *testing.T) {
	m, err := Read("f.yaml", []byte(literal))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Policies) != 3 || len(m.Skipped) != 1 {
		t.Fatalf("got %d policies, %d skipped", len(m.Policies), len(m.Skipped))
	}
	if s := m.Skipped[0]; s.Kind != "ConfigMap" || s.Pos.Line != 14 {
		t.Errorf("skipped = %+v", s)
	}
	one, two, three := m.Policies[0], m.Policies[1], m.Policies[2]

	if one.Name != "one" || one.Spec == nil || one.Annotation != nil || one.Pos.Line != 2 {
		t.Fatalf("policy one = %+v", one)
	}
	// Text line 3 is "bpfCtTimeoutRegularTcp: 5m", file line 10, indented 4.
	if pos, exact := one.Spec.PositionOf(3, 1); !exact || pos.Line != 10 || pos.Column != 5 {
		t.Errorf("PositionOf(3,1) = %v %v, want f.yaml:10:5 exact", pos, exact)
	}
	// A more-indented line keeps its extra indentation in the text.
	if pos, exact := one.Spec.PositionOf(4, 3); !exact || pos.Line != 11 || pos.Column != 7 {
		t.Errorf("PositionOf(4,3) = %v %v, want f.yaml:11:7", pos, exact)
	}
	if got, _ := NewSource("f.yaml", []byte(literal)).Line(10); strings.TrimSpace(got) != "bpfCtTimeoutRegularTcp: 5m" {
		t.Errorf("Line(10) = %q", got)
	}

	if two.Annotation == nil || two.Annotation.Text != "bpfCtTimeoutRegularAny: 30s\nx: 1s" {
		t.Fatalf("policy two annotation = %+v", two.Annotation)
	}
	// A quoted string: positions fall back to the value itself.
	if pos, exact := two.Annotation.PositionOf(2, 1); exact || pos.Line != 26 || pos.Column != 37 {
		t.Errorf("quoted PositionOf = %v %v, want f.yaml:26:37 inexact", pos, exact)
	}

	if three.APIVersion != "cilium.io/v2alpha1" || three.Spec == nil || !three.Spec.NotText || three.Spec.NodeKind != "a mapping" {
		t.Errorf("policy three = %+v spec %+v", three, three.Spec)
	}
}

func TestReadJSON(t *testing.T) {
	doc := `{"apiVersion": "cilium.io/v2", "kind": "CiliumEgressGatewayPolicy",
	"metadata": {"name": "j"},
	"spec": {"connection-timeouts": "bpfCtTimeoutRegularTcp: 5m\n"}}`
	m, err := Read("f.json", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Policies) != 1 || m.Policies[0].Spec.Text != "bpfCtTimeoutRegularTcp: 5m\n" {
		t.Fatalf("policies = %+v", m.Policies)
	}
}

func TestReadSyntaxError(t *testing.T) {
	doc := "apiVersion: cilium.io/v2\nkind: CiliumEgressGatewayPolicy\nmetadata:\n  name: a\n---\nkind: [unclosed\n"
	m, err := Read("bad.yaml", []byte(doc))
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *SyntaxError", err)
	}
	if se.Pos.File != "bad.yaml" || se.Pos.Line == 0 || strings.HasPrefix(se.Msg, "yaml:") {
		t.Errorf("syntax error = %+v", se)
	}
	if len(m.Policies) != 1 {
		t.Errorf("policies before the error = %d, want 1", len(m.Policies))
	}
}

// TestReadControlCharacter: a character YAML does not allow (raw in JSON,
// which allows DEL and C1 raw in strings, or in YAML) is named, with its
// line and column, though the YAML reader gives neither.
func TestReadControlCharacter(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		line, col int
		char      string
	}{
		{"DEL in JSON", `{"apiVersion": "cilium.io/v2",` + "\n" + ` "metadata": {"name": "a\u00e9` + "\x7f" + `"}}`, 2, 31, "U+007F"},
		{"C1 in YAML", "kind: CiliumEgressGatewayPolicy\nmetadata:\n  name: \"\u00e9\u0085x\u0080\"\n", 3, 13, "U+0080"},
		{"C0 in YAML", "kind: x\x01\n", 1, 8, "U+0001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read("bad", []byte(tc.doc))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *SyntaxError", err)
			}
			if se.Pos.Line != tc.line || se.Pos.Column != tc.col || !strings.Contains(se.Msg, tc.char) {
				t.Errorf("syntax error at %d:%d %q, want %d:%d naming %s", se.Pos.Line, se.Pos.Column, se.Msg, tc.line, tc.col, tc.char)
			}
		})
	}
}

func TestReadAliasesAndNull(t *testing.T) {
	doc := `
base: &t |
  bpfCtTimeoutRegularTcp: 5m
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: a}
spec:
  connection-timeouts: *t
---
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: b}
spec:
  connection-timeouts:
`
	m, err := Read("a.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if m.Policies[0].Spec.Text != "bpfCtTimeoutRegularTcp: 5m\n" {
		t.Errorf("alias text = %q", m.Policies[0].Spec.Text)
	}
	if s := m.Policies[1].Spec; s == nil || s.NotText || s.Text != "" {
		t.Errorf("null text = %+v", s)
	}
}

// TestReadDuplicateKey: a key set twice in one mapping is refused where the
// second one is, as kubectl refuses it; egwct read the first value, the
// tools that take such a file keep the last.
func TestReadDuplicateKey(t *testing.T) {
	const head = "apiVersion: cilium.io/v2\nkind: CiliumEgressGatewayPolicy\n"
	for _, tc := range []struct {
		name, doc string
		line, col int // 0: no error
		key       string
	}{
		{"text set twice", head + "metadata: {name: a}\nspec:\n  connection-timeouts: |\n    bpfCtTimeoutRegularAny: 30s\n  connection-timeouts: |\n    bpfCtTimeoutRegularTCP: 20s\n", 7, 3, "connection-timeouts"},
		{"annotations twice", head + "metadata:\n  name: a\n  annotations: {}\n  annotations:\n    egwct.io/connection-timeouts: \"bpfCtTimeoutRegularAny: 30s\"\n", 6, 3, "annotations"},
		{"in JSON", `{"apiVersion": "cilium.io/v2", "kind": "CiliumEgressGatewayPolicy",` + "\n" + ` "metadata": {"name": "a", "name": "b"}}`, 2, 28, "name"},
		{"in a list item", "kind: List\nitems:\n- " + strings.ReplaceAll(head, "\n", "\n  ") + "metadata: {name: a}\n  spec: {x: 1, x: 2}\n", 6, 16, "x"},
		{"in a later document", head + "metadata: {name: a}\n---\n" + head + "kind: x\n", 7, 1, "kind"},
		{"same key in two mappings", head + "metadata: {name: a}\nspec: {name: a}\n", 0, 0, ""},
		{"merge keys", "base: &b {x: 1}\n" + head + "metadata: {name: a}\nspec:\n  <<: *b\n  x: 2\n", 0, 0, ""},
		{"aliased mapping", "base: &b {x: 1}\n" + head + "metadata: {name: a}\nspec: *b\n", 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			se := readSyntaxError(t, "dup.yaml", tc.doc, tc.line != 0)
			if se == nil {
				return
			}
			if se.Pos.Line != tc.line || se.Pos.Column != tc.col || !strings.Contains(se.Msg, `"`+tc.key+`" is set again`) {
				t.Errorf("syntax error at %d:%d %q, want %d:%d naming %q", se.Pos.Line, se.Pos.Column, se.Msg, tc.line, tc.col, tc.key)
			}
		})
	}
}

// TestSourceLine: lines without their break; line 1 without a byte order
// mark, whose columns the YAML reader does not count.
func TestSourceLine(t *testing.T) {
	for _, tc := range []struct {
		data string
		n    int
		want string
		ok   bool
	}{
		{"a: 1\nb: 2\n", 1, "a: 1", true},
		{"a: 1\nb: 2\n", 2, "b: 2", true},
		{"a: 1\nb: 2\n", 3, "", true},
		{"a: 1\nb: 2\n", 4, "", false},
		{"a: 1\r\nb: 2", 1, "a: 1\r", true},
		{"a: 1\r\nb: 2", 2, "b: 2", true},
		{"\ufeffa: 1\n", 1, "a: 1", true},
		{"\ufeff", 1, "", true},
		{"x\n\ufeffa: 1\n", 2, "\ufeffa: 1", true},
		{"", 0, "", false},
	} {
		if got, ok := NewSource("f", []byte(tc.data)).Line(tc.n); got != tc.want || ok != tc.ok {
			t.Errorf("Line(%d) of %q = %q, %v; want %q, %v", tc.n, tc.data, got, ok, tc.want, tc.ok)
		}
	}
}
