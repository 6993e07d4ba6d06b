package cli

import (
	"encoding/hex"
	"net/netip"
	"strconv"
	"unicode/utf8"
)

// record is one output object with ordered fields, encoded by hand as a
// JSON line or a YAML list item: listing a million CT entries must not
// allocate per field.
type record struct {
	fields []field
}

type fieldKind uint8

const (
	kString fieldKind = iota
	kInt
	kUint
	kFloat
	kBool
	kHex
	kNested
	kAddr
)

type field struct {
	key  string
	kind fieldKind
	s    string
	i    int64
	u    uint64
	f    float64
	b    []byte
	sub  *record
	a    netip.Addr
}

func (r *record) addr(k string, v netip.Addr) {
	r.fields = append(r.fields, field{key: k, kind: kAddr, a: v})
}
func (r *record) reset()                { r.fields = r.fields[:0] }
func (r *record) str(k, v string)       { r.fields = append(r.fields, field{key: k, kind: kString, s: v}) }
func (r *record) int(k string, v int64) { r.fields = append(r.fields, field{key: k, kind: kInt, i: v}) }
func (r *record) uint(k string, v uint64) {
	r.fields = append(r.fields, field{key: k, kind: kUint, u: v})
}
func (r *record) float(k string, v float64) {
	r.fields = append(r.fields, field{key: k, kind: kFloat, f: v})
}
func (r *record) bool(k string, v bool) {
	r.fields = append(r.fields, field{key: k, kind: kBool, b: boolByte(v)})
}
func (r *record) hex(k string, v []byte) {
	r.fields = append(r.fields, field{key: k, kind: kHex, b: v})
}
func (r *record) nested(k string, v *record) {
	r.fields = append(r.fields, field{key: k, kind: kNested, sub: v})
}

func boolByte(v bool) []byte {
	if v {
		return []byte{1}
	}
	return nil
}

// appendJSON appends the record as one JSON object.
func (r *record) appendJSON(b []byte) []byte {
	b = append(b, '{')
	for i, f := range r.fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, f.key)
		b = append(b, ':')
		if f.kind == kNested {
			b = f.sub.appendJSON(b)
			continue
		}
		b = appendScalar(b, f)
	}
	return append(b, '}')
}

// appendYAML appends the record as YAML mapping lines; the first line
// starts with first (e.g. "- "), the others with indent.
func (r *record) appendYAML(b []byte, first, indent string) []byte {
	for i, f := range r.fields {
		if i == 0 {
			b = append(b, first...)
		} else {
			b = append(b, indent...)
		}
		b = append(b, f.key...)
		b = append(b, ':')
		if f.kind == kNested {
			b = append(b, '\n')
			b = f.sub.appendYAML(b, indent+"  ", indent+"  ")
			continue
		}
		b = append(b, ' ')
		b = appendScalar(b, f) // JSON scalars are valid YAML scalars
		b = append(b, '\n')
	}
	return b
}

func appendScalar(b []byte, f field) []byte {
	switch f.kind {
	case kString:
		return appendJSONString(b, f.s)
	case kInt:
		return strconv.AppendInt(b, f.i, 10)
	case kUint:
		return strconv.AppendUint(b, f.u, 10)
	case kFloat:
		return strconv.AppendFloat(b, f.f, 'f', -1, 64)
	case kBool:
		return strconv.AppendBool(b, len(f.b) > 0)
	case kHex:
		b = append(b, '"')
		b = hex.AppendEncode(b, f.b)
		return append(b, '"')
	case kAddr:
		b = append(b, '"')
		b = f.a.AppendTo(b)
		return append(b, '"')
	}
	return append(b, "null"...)
}

// appendJSONString appends s quoted for JSON; control characters and
// invalid UTF-8 are escaped, so input never reaches a terminal raw.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, `\u00`...)
				b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || isControl(r) {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
