package printer

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"time"
)

// Header opens every JSON document: embed it first in a document's struct.
type Header struct {
	// SchemaVersion is SchemaVersion.
	SchemaVersion int `json:"schemaVersion"`
	// Kind names the document's schema (docs/schemas/KIND.json, in kebab case).
	Kind string `json:"kind"`
}

// NewHeader returns the header of a document of kind.
func NewHeader(kind string) Header { return Header{SchemaVersion: SchemaVersion, Kind: kind} }

// Seconds is how every duration appears in a document: a number of seconds
// in a field whose name ends in Seconds; whole seconds are integers,
// others keep millisecond precision (jiffy clocks).
func Seconds(d time.Duration) float64 {
	if d%time.Second == 0 {
		return float64(d / time.Second)
	}
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}

// AppendSeconds appends Seconds(d) as JSON does, without allocating.
func AppendSeconds(b []byte, d time.Duration) []byte {
	if d%time.Second == 0 {
		return strconv.AppendInt(b, int64(d/time.Second), 10)
	}
	return strconv.AppendFloat(b, Seconds(d), 'f', -1, 64)
}

// Stream writes a list document, {"schemaVersion":…,"kind":KIND,"items":[…]},
// one item at a time, so a listing of a million entries is never held in
// memory: JSON puts each item on its own line, YAML writes each as a list
// entry. jsonpath and go-template need the whole document: the stream
// collects it and runs the template at Close.
type Stream struct {
	p    *Printer
	w    *bufio.Writer
	dst  io.Writer
	coll *bytes.Buffer
	n    int
}

// Stream starts a list document of kind on w; the caller encodes each
// item (JSON or, when YAML says so, YAML) and ends with Close.
func (p *Printer) Stream(w io.Writer, kind string) *Stream {
	s := &Stream{p: p, dst: w}
	var out io.Writer = w
	if p.Format == JSONPath || p.Format == GoTemplate {
		s.coll = &bytes.Buffer{}
		out = s.coll
	}
	s.w = bufio.NewWriterSize(out, 64<<10)
	if s.YAML() {
		s.w.WriteString("schemaVersion: " + strconv.Itoa(SchemaVersion) + "\nkind: " + kind + "\nitems:")
	} else {
		s.w.WriteString(`{"schemaVersion":` + strconv.Itoa(SchemaVersion) + `,"kind":"` + kind + `","items":[`)
	}
	return s
}

// YAML says whether items are to be given as YAML.
func (s *Stream) YAML() bool { return s.p.Format == YAML }

// Item writes one item: a JSON object, or for YAML the lines of a list
// entry (the first starting "- ", the others indented by two, each ending
// in a newline).
func (s *Stream) Item(b []byte) error {
	switch {
	case s.YAML() && s.n == 0:
		s.w.WriteByte('\n')
	case s.YAML():
	case s.n == 0:
		s.w.WriteByte('\n')
	default:
		s.w.WriteString(",\n")
	}
	s.n++
	_, err := s.w.Write(b)
	return err
}

// Len is how many items were written.
func (s *Stream) Len() int { return s.n }

// Close ends the document and flushes it.
func (s *Stream) Close() error {
	switch {
	case s.YAML() && s.n == 0:
		s.w.WriteString(" []\n")
	case s.YAML():
	case s.n == 0:
		s.w.WriteString("]}\n")
	default:
		s.w.WriteString("\n]}\n")
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	if s.coll != nil {
		return s.p.PrintJSON(s.dst, s.coll.Bytes())
	}
	return nil
}
