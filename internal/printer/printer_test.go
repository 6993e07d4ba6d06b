package printer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

type testDoc struct {
	Header
	Name  string `json:"name"`
	Count int    `json:"count"`
	Tag   string `json:"tag"`
}

var testSpec = Spec{Default: Table, Formats: []string{Table, Wide, JSON, YAML, Name, JSONPath, GoTemplate},
	Aliases: map[string]string{"text": Table}}

func testView() View {
	d := testDoc{Header: NewHeader("Test"), Name: "a\x1bb", Count: 12345678, Tag: "007"}
	return View{
		Doc:   d,
		Names: func() []string { return []string{"one", "two"} },
		Table: func(w io.Writer, o TableOptions) error {
			cols := []any{"NAME", "COUNT"}
			row := []any{Clean(d.Name), d.Count}
			if o.Wide {
				cols, row = append(cols, "TAG"), append(row, d.Tag)
			}
			t := NewTable(w, o.NoHeaders, cols...)
			_ = t.Append(row...)
			return t.Render()
		},
	}
}

func TestPrint(t *testing.T) {
	tests := []struct {
		output    string
		noHeaders bool
		want      string
	}{
		{"", false, " NAME    COUNT    \n a\\x1bb  12345678 \n"},
		{"table", true, " a\\x1bb  12345678 \n"},
		{"text", false, " NAME    COUNT    \n a\\x1bb  12345678 \n"},
		{"wide", false, " NAME    COUNT     TAG \n a\\x1bb  12345678  007 \n"},
		{"json", false, "{\n  \"schemaVersion\": 2,\n  \"kind\": \"Test\",\n  \"name\": \"a\\u001bb\",\n  \"count\": 12345678,\n  \"tag\": \"007\"\n}\n"},
		{"yaml", false, "schemaVersion: 2\nkind: Test\nname: \"a\\eb\"\ncount: 12345678\ntag: \"007\"\n"},
		{"name", false, "one\ntwo\n"},
		{"jsonpath={.kind} {.count}", false, "Test 12345678"},
		{"go-template={{.name | printf \"%q\"}} {{.count}}", false, `"a\x1bb" 12345678`},
	}
	for _, tt := range tests {
		t.Run(tt.output, func(t *testing.T) {
			p, err := (&Flags{Spec: testSpec, Output: tt.output, NoHeaders: tt.noHeaders}).Printer()
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := p.Print(&b, testView()); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); strings.ReplaceAll(got, " \n", "\n") != strings.ReplaceAll(tt.want, " \n", "\n") {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestPrinterErrors: every bad -o value or template is a UsageError that
// names what the command has.
func TestPrinterErrors(t *testing.T) {
	small := Spec{Default: Table, Formats: []string{Table, JSON}}
	tests := []struct {
		spec      Spec
		output    string
		noHeaders bool
		want      string
	}{
		{small, "xml", false, "use table, json"},
		{small, "yaml", false, `unknown output format "yaml"`},
		{small, "jsonpath={.a}", false, `unknown output format "jsonpath={.a}"`},
		{testSpec, "jsonpath", false, "needs a template"},
		{testSpec, "jsonpath=", false, "needs a template"},
		{testSpec, "json=x", false, "takes no template"},
		{testSpec, "jsonpath={.a", false, "-o jsonpath"},
		{testSpec, "go-template={{.a", false, "-o go-template"},
		{testSpec, "jsonpath-file=/nonexistent", false, "no such file"},
		{testSpec, "json", true, "--no-headers is for table output"},
	}
	for _, tt := range tests {
		t.Run(tt.output, func(t *testing.T) {
			_, err := (&Flags{Spec: tt.spec, Output: tt.output, NoHeaders: tt.noHeaders}).Printer()
			var u *UsageError
			if !errors.As(err, &u) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want a UsageError with %q", err, tt.want)
			}
		})
	}
}

// TestTemplateExecErrors: a template that fails on the document is a
// usage error too (go-template: a field it does not have; jsonpath, as
// kubectl's, prints nothing for a missing key).
func TestTemplateExecErrors(t *testing.T) {
	for _, output := range []string{"jsonpath={.count[0]}", "go-template={{.nosuch}}", "go-template={{index .name 100}}"} {
		p, err := (&Flags{Spec: testSpec, Output: output}).Printer()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Print(io.Discard, testView()); !IsUsage(err) {
			t.Errorf("%s: %v, want a usage error", output, err)
		}
	}
}

func TestTemplateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t")
	if err := os.WriteFile(path, []byte("{{.kind}}"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := (&Flags{Spec: testSpec, Output: "go-template-file=" + path}).Printer()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.Print(&b, testView()); err != nil || b.String() != "Test" {
		t.Errorf("%q %v", b.String(), err)
	}
}

// TestStream: the list document in each format, with no, one and several
// items, is what the whole document would be.
func TestStream(t *testing.T) {
	for _, n := range []int{0, 1, 3} {
		for _, format := range []string{"json", "yaml", "jsonpath={.kind}:{range .items[*]}{.i},{end}", "go-template={{len .items}}"} {
			t.Run(fmt.Sprint(format, n), func(t *testing.T) {
				p, err := (&Flags{Spec: testSpec, Output: format}).Printer()
				if err != nil {
					t.Fatal(err)
				}
				var b bytes.Buffer
				s := p.Stream(&b, "TestList")
				for i := range n {
					if s.YAML() {
						_ = s.Item(fmt.Appendf(nil, "- i: %d\n  s: x\n", i))
					} else {
						_ = s.Item(fmt.Appendf(nil, `{"i":%d,"s":"x"}`, i))
					}
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				items := make([]string, n)
				for i := range n {
					items[i] = fmt.Sprintf(`{"i":%d,"s":"x"}`, i)
				}
				whole := []byte(fmt.Sprintf(`{"schemaVersion":%d,"kind":"TestList","items":[%s]}`, SchemaVersion, strings.Join(items, ",")))
				var exp bytes.Buffer
				if err := p.PrintJSON(&exp, whole); err != nil {
					t.Fatal(err)
				}
				got := b.String()
				switch format {
				case "json":
					var a, e any
					if json.Unmarshal([]byte(got), &a) != nil || json.Unmarshal(whole, &e) != nil || fmt.Sprint(a) != fmt.Sprint(e) {
						t.Errorf("got %q, want %s", got, whole)
					}
					if n > 0 && strings.Count(got, "\n") != n+2 {
						t.Errorf("not one item per line: %q", got)
					}
				default:
					if got != exp.String() {
						t.Errorf("got %q, want %q", got, exp.String())
					}
				}
			})
		}
	}
}

// TestYAMLKeepsTypes: strings that YAML would read as numbers, booleans
// or null stay strings; the order of keys is the document's.
func TestYAMLKeepsTypes(t *testing.T) {
	out, err := JSONToYAML([]byte(`{"z":"1","y":"true","x":"null","w":"","v":1.5,"u":[],"t":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := "z: \"1\"\ny: \"true\"\nx: \"null\"\nw: \"\"\nv: 1.5\nu: []\nt: {}\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

// TestRegister: -o with completion of the command's values, --no-headers
// only for commands with table headers.
func TestRegister(t *testing.T) {
	tests := []struct {
		spec      Spec
		noHeaders bool
		complete  []string
	}{
		{testSpec, true, []string{"table", "wide", "json", "yaml", "name", "jsonpath=", "jsonpath-file=", "go-template=", "go-template-file="}},
		{Spec{Default: Table, Formats: []string{Table, JSON, "github"}, Headerless: true}, false, []string{"table", "json", "github"}},
	}
	for _, tt := range tests {
		cmd := &cobra.Command{Use: "x", Run: func(*cobra.Command, []string) {}}
		NewFlags(tt.spec).Register(cmd)
		if got := cmd.Flags().Lookup("no-headers") != nil; got != tt.noHeaders {
			t.Errorf("%v: --no-headers registered %v", tt.spec.Formats, got)
		}
		fn, ok := cmd.GetFlagCompletionFunc("output")
		if !ok {
			t.Fatal("no completion for -o")
		}
		got, _ := fn(cmd, nil, "")
		if fmt.Sprint(got) != fmt.Sprint(tt.complete) {
			t.Errorf("completion %v, want %v", got, tt.complete)
		}
	}
}
