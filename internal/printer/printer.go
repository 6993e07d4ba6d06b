package printer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/template"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"k8s.io/client-go/util/jsonpath"
)

// SchemaVersion is the schemaVersion of every JSON document egwct prints
// (docs/schemas/). It changes when a field is removed or changes meaning;
// fields are only ever added within one version.
const SchemaVersion = 2

// The formats of -o. Table is the human-readable form of every command.
const (
	Table      = "table"
	Wide       = "wide"
	JSON       = "json"
	YAML       = "yaml"
	Name       = "name"
	JSONPath   = "jsonpath"
	GoTemplate = "go-template"
)

// Templates are the template formats, given as FORMAT=TEMPLATE (or, for a
// file, FORMAT-file=PATH).
var Templates = []string{JSONPath, GoTemplate}

// Spec declares the -o formats of one command.
type Spec struct {
	// Default is the format without -o; "" means the command does
	// something else then (top runs its UI).
	Default string
	// Formats are the formats in the order help lists them; jsonpath and
	// go-template also allow the -file variants. A format the printer does
	// not know (validate's github) is the command's own to print.
	Formats []string
	// Aliases are older names kept working, e.g. "text" for "table".
	Aliases map[string]string
	// Help is the -o flag's help text; "" lists the formats.
	Help string
	// Headerless says the table output has no header line, so the
	// command has no --no-headers.
	Headerless bool
}

// has says whether the command supports format.
func (s Spec) has(format string) bool { return slices.Contains(s.Formats, format) }

// tabular says whether the command has tables with a header.
func (s Spec) tabular() bool { return !s.Headerless && (s.has(Table) || s.has(Wide)) }

// values lists -o's values for help, errors and shell completion.
func (s Spec) values() []string {
	var v []string
	for _, f := range s.Formats {
		if slices.Contains(Templates, f) {
			v = append(v, f+"=", f+"-file=")
			continue
		}
		v = append(v, f)
	}
	return v
}

// Flags are one command's -o and --no-headers.
type Flags struct {
	Spec      Spec
	Output    string
	NoHeaders bool
}

// NewFlags returns the flags of a command with spec, -o at its default.
func NewFlags(spec Spec) *Flags { return &Flags{Spec: spec, Output: spec.Default} }

// Register adds -o/--output (with shell completion of its values) and,
// for commands with tables, --no-headers.
func (f *Flags) Register(cmd *cobra.Command) {
	help := f.Spec.Help
	if help == "" {
		help = "output format: " + strings.Join(f.Spec.values(), ", ")
		if f.Spec.has(JSONPath) || f.Spec.has(GoTemplate) {
			help += " (TEMPLATE after =; see docs/schemas/ for the fields)"
		}
	}
	cmd.Flags().StringVarP(&f.Output, "output", "o", f.Spec.Default, help)
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(f.Spec.values(), cobra.ShellCompDirectiveNoFileComp|cobra.ShellCompDirectiveNoSpace))
	if f.Spec.tabular() {
		cmd.Flags().BoolVar(&f.NoHeaders, "no-headers", false, "omit the header line of table output")
	}
}

// UsageError is a bad -o value or template: the command's usage is wrong
// (exit 2).
type UsageError struct{ Err error }

// Error returns the message.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, a ...any) error { return &UsageError{Err: fmt.Errorf(format, a...)} }

// Printer prints documents in one format.
type Printer struct {
	// Format is the chosen format after aliases, without a template:
	// table, wide, json, yaml, name, jsonpath, go-template or a format of
	// the command's own.
	Format string
	// NoHeaders drops the header of tables.
	NoHeaders bool
	jsonPath  string // parsed again for each document: a JSONPath keeps range state
	tmpl      *template.Template
}

// Printer checks the flags and returns their printer; an unknown format,
// one the command does not have, or a template that does not parse is a
// *UsageError naming what the command supports.
func (f *Flags) Printer() (*Printer, error) {
	format, text, hasText := strings.Cut(f.Output, "=")
	if a, ok := f.Spec.Aliases[format]; ok && !hasText {
		format = a
	}
	if format == "" {
		format = f.Spec.Default
	}
	if format == "" {
		format = Table
	}
	if base, ok := strings.CutSuffix(format, "-file"); ok && slices.Contains(Templates, base) && hasText {
		data, err := os.ReadFile(text)
		if err != nil {
			return nil, usagef("-o %s: %v", f.Output, err)
		}
		format, text = base, string(data)
	}
	p := &Printer{Format: format, NoHeaders: f.NoHeaders}
	if !f.Spec.has(format) {
		return nil, usagef("unknown output format %q: use %s", f.Output, strings.Join(f.Spec.values(), ", "))
	}
	isTemplate := slices.Contains(Templates, format)
	switch {
	case isTemplate && (!hasText || text == ""):
		return nil, usagef("-o %s needs a template: -o %s=TEMPLATE", format, format)
	case !isTemplate && hasText:
		return nil, usagef("-o %s takes no template", format)
	}
	switch format {
	case JSONPath:
		if err := jsonpath.New("output").Parse(text); err != nil {
			return nil, usagef("-o jsonpath: %v", err)
		}
		p.jsonPath = text
	case GoTemplate:
		t, err := template.New("output").Option("missingkey=error").Parse(text)
		if err != nil {
			return nil, usagef("-o go-template: %v", err)
		}
		p.tmpl = t
	}
	if f.NoHeaders && format != Table && format != Wide {
		return nil, usagef("--no-headers is for table output, not -o %s", format)
	}
	return p, nil
}

// Wide says whether the format is wide.
func (p *Printer) Wide() bool { return p.Format == Wide }

// Tabular says whether the format is table or wide.
func (p *Printer) Tabular() bool { return p.Format == Table || p.Format == Wide }

// TableOptions tell a table function how to draw.
type TableOptions struct {
	// Wide asks for the extra columns of -o wide.
	Wide bool
	// NoHeaders drops the header line (NewTable does it).
	NoHeaders bool
}

// View is one document as each format prints it.
type View struct {
	// Doc is the JSON document (json, yaml, jsonpath, go-template): a
	// struct whose json tags are camelCase, with SchemaVersion set by the
	// caller or by Document.
	Doc any
	// Table draws table and wide output.
	Table func(w io.Writer, o TableOptions) error
	// Names are the lines of -o name.
	Names func() []string
}

// Print writes v in the printer's format. A template that fails on the
// document is a *UsageError.
func (p *Printer) Print(w io.Writer, v View) error {
	switch p.Format {
	case Table, Wide:
		if v.Table == nil {
			break
		}
		return v.Table(w, TableOptions{Wide: p.Wide(), NoHeaders: p.NoHeaders})
	case Name:
		if v.Names == nil {
			break
		}
		var b strings.Builder
		for _, n := range v.Names() {
			b.WriteString(n)
			b.WriteByte('\n')
		}
		_, err := io.WriteString(w, b.String())
		return err
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v.Doc)
	case YAML, JSONPath, GoTemplate:
		data, err := json.Marshal(v.Doc)
		if err != nil {
			return err
		}
		return p.PrintJSON(w, data)
	}
	return usagef("-o %s is not available here", p.Format)
}

// PrintJSON writes a document given as JSON in a structured format (json,
// yaml, jsonpath, go-template).
func (p *Printer) PrintJSON(w io.Writer, data []byte) error {
	switch p.Format {
	case JSON:
		var b bytes.Buffer
		if err := json.Indent(&b, data, "", "  "); err != nil {
			return err
		}
		b.WriteByte('\n')
		_, err := w.Write(b.Bytes())
		return err
	case YAML:
		out, err := JSONToYAML(data)
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	case JSONPath, GoTemplate:
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var obj any
		if err := dec.Decode(&obj); err != nil {
			return err
		}
		var b bytes.Buffer
		if p.Format == JSONPath {
			// Missing keys print nothing, as kubectl's default: a range over
			// an empty list must not fail.
			jp := jsonpath.New("output").AllowMissingKeys(true)
			_ = jp.Parse(p.jsonPath) // parsed before
			if err := jp.Execute(&b, obj); err != nil {
				return usagef("-o jsonpath: %v", err)
			}
		} else if err := p.tmpl.Execute(&b, obj); err != nil {
			return usagef("-o go-template: %v", err)
		}
		_, err := w.Write(b.Bytes())
		return err
	}
	return usagef("-o %s is not available here", p.Format)
}

// JSONToYAML converts a JSON document to block-style YAML with the keys in
// the document's order (the order of the Go struct), indented by two.
func JSONToYAML(data []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return nil, err
	}
	plain(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	enc.CompactSeqIndent() // "- " under its key, as kubectl and the streams print lists
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// plain clears the flow and quoting styles JSON syntax gave the nodes; the
// encoder quotes a string again wherever YAML would read it as another type.
func plain(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		plain(c)
	}
}

// IsUsage says whether err is a usage error of the printer.
func IsUsage(err error) bool {
	var u *UsageError
	return errors.As(err, &u)
}
