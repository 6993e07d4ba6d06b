package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseText(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		entries []Entry
		errs    []LineError
	}{
		{name: "empty", text: ""},
		{name: "comments and blanks", text: "# a comment\n\n   \n\t# indented comment\n"},
		{
			name: "cfp example",
			text: "bpfCtTimeoutRegularAny: 60s\nbpfCtTimeoutRegularTcp: 21600s\n",
			entries: []Entry{
				{Key: "bpfCtTimeoutRegularAny", Value: "60s", Line: 1, KeyCol: 1, ValueCol: 25},
				{Key: "bpfCtTimeoutRegularTcp", Value: "21600s", Line: 2, KeyCol: 1, ValueCol: 25},
			},
		},
		{
			name:    "indent, trailing comment, no space after colon",
			text:    "  a:5m   # five minutes\n",
			entries: []Entry{{Key: "a", Value: "5m", Line: 1, KeyCol: 3, ValueCol: 5}},
		},
		{
			name:    "hash inside value is kept",
			text:    "a: 5m#x\n",
			entries: []Entry{{Key: "a", Value: "5m#x", Line: 1, KeyCol: 1, ValueCol: 4}},
		},
		{
			name:    "quoted value, CRLF",
			text:    "a: \"30s\"\r\nb: '1m'\r\n",
			entries: []Entry{{Key: "a", Value: "30s", Line: 1, KeyCol: 1, ValueCol: 4}, {Key: "b", Value: "1m", Line: 2, KeyCol: 1, ValueCol: 4}},
		},
		{
			name: "no colon",
			text: "\nbpfCtTimeoutRegularTcp 5m\n",
			errs: []LineError{{Line: 2, Col: 1, Msg: `expected "key: value"`}},
		},
		{
			name: "equals sign",
			text: "  tcp = 5m",
			errs: []LineError{{Line: 1, Col: 3, Msg: `expected "key: value"; write "tcp: 5m"`}},
		},
		{
			name: "missing key and value",
			text: ": 5m\nkey:\nkey2:   # only a comment\n",
			errs: []LineError{
				{Line: 1, Col: 1, Msg: "missing key before ':'"},
				{Line: 2, Col: 5, Msg: `missing value for "key"`},
				{Line: 3, Col: 6, Msg: `missing value for "key2"`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseText(tt.text)
			if !reflect.DeepEqual(got.Entries, tt.entries) {
				t.Errorf("entries = %+v, want %+v", got.Entries, tt.entries)
			}
			if !reflect.DeepEqual(got.Errors, tt.errs) {
				t.Errorf("errors = %+v, want %+v", got.Errors, tt.errs)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in         string
		want       time.Duration
		err        error
		suggestion string
		msg        string // in the error, when set
	}{
		{in: "30s", want: 30 * time.Second},
		{in: "5m", want: 5 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "1.5s", want: 1500 * time.Millisecond},
		{in: "500ms", want: 500 * time.Millisecond},
		{in: "300", err: ErrBareNumber, suggestion: "300s"},
		{in: "+300", err: ErrBareNumber, suggestion: "300s"},
		{in: "2.5", err: ErrBareNumber, suggestion: "2.5s"},
		{in: "0", err: ErrNonPositive},
		{in: "-5", err: ErrNonPositive},
		{in: "0s", err: ErrNonPositive},
		{in: "-1m", err: ErrNonPositive},
		{in: "5 m", err: ErrNotDuration, suggestion: "5m"},
		{in: "5min", err: ErrNotDuration, suggestion: "5m"},
		{in: "10sec", err: ErrNotDuration, suggestion: "10s"},
		{in: "2hours", err: ErrNotDuration, suggestion: "2h"},
		{in: "1d", err: ErrNotDuration, suggestion: "24h"},
		{in: "30S", err: ErrNotDuration, suggestion: "30s"},
		{in: "forever", err: ErrNotDuration},
		{in: "1e3", err: ErrNotDuration},
		{in: "inf", err: ErrNotDuration},
		{in: "NaN", err: ErrNotDuration},
		{in: "99999999999h", err: ErrNotDuration, msg: "too long for a duration: the longest is 2562047h "},
		{in: "2562048h", err: ErrNotDuration, msg: "too long"},
		{in: "1h9223372036s", err: ErrNotDuration, msg: "too long"},
		{in: "2562047h", want: 2562047 * time.Hour},
		{in: "5m30", err: ErrNotDuration, msg: "is not a duration: use a number with a unit"},
		{in: "1h 30m", err: ErrNotDuration, msg: "is not a duration: use a number with a unit"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.err == nil {
				if err != nil || got != tt.want {
					t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("ParseDuration(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			var de *DurationError
			errors.As(err, &de)
			if de.Suggestion != tt.suggestion {
				t.Errorf("suggestion = %q, want %q", de.Suggestion, tt.suggestion)
			}
			if !strings.Contains(err.Error(), tt.in) {
				t.Errorf("error %q does not quote the value", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}
