package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxTextSize is the largest timeout text egwct reads (64 KiB).
const MaxTextSize = 64 << 10

// Entry is one "key: value" line of a timeout text.
type Entry struct {
	Key   string
	Value string
	// Line is the 1-based line within the text; KeyCol and ValueCol are
	// 1-based byte columns within that line.
	Line, KeyCol, ValueCol int
}

// LineError is a line of the text that is not "key: value".
type LineError struct {
	Line, Col int
	Msg       string
}

// Text is a parsed timeout text.
type Text struct {
	Entries []Entry
	Errors  []LineError
}

// ParseText splits a timeout text into entries. It never fails as a whole:
// lines it cannot read are returned in Errors, so that one run reports
// every problem.
func ParseText(s string) Text {
	var t Text
	for n := 1; len(s) > 0 || n == 1; n++ {
		line := s
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		line = strings.TrimSuffix(line, "\r")
		parseLine(&t, n, line)
		if s == "" {
			break
		}
	}
	return t
}

func parseLine(t *Text, n int, line string) {
	body := strings.TrimLeft(line, " \t")
	indent := len(line) - len(body)
	if body == "" || body[0] == '#' {
		return
	}
	colon := strings.IndexByte(body, ':')
	if colon < 0 {
		msg := "expected \"key: value\""
		if i := strings.IndexByte(body, '='); i > 0 {
			msg += fmt.Sprintf("; write %q", strings.TrimSpace(body[:i])+": "+strings.TrimSpace(body[i+1:]))
		}
		t.Errors = append(t.Errors, LineError{Line: n, Col: indent + 1, Msg: msg})
		return
	}
	key := strings.TrimRight(body[:colon], " \t")
	if key == "" {
		t.Errors = append(t.Errors, LineError{Line: n, Col: indent + 1, Msg: "missing key before ':'"})
		return
	}
	rest := body[colon+1:]
	valStart := indent + colon + 1 + (len(rest) - len(strings.TrimLeft(rest, " \t")))
	value := stripComment(strings.TrimLeft(rest, " \t"))
	if value == "" {
		t.Errors = append(t.Errors, LineError{Line: n, Col: indent + colon + 2, Msg: fmt.Sprintf("missing value for %q", key)})
		return
	}
	if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
		value = value[1 : len(value)-1]
		if value == "" {
			t.Errors = append(t.Errors, LineError{Line: n, Col: valStart + 1, Msg: fmt.Sprintf("empty value for %q", key)})
			return
		}
	}
	t.Entries = append(t.Entries, Entry{Key: key, Value: value, Line: n, KeyCol: indent + 1, ValueCol: valStart + 1})
}

// stripComment removes a trailing " # comment" and surrounding blanks.
func stripComment(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t') {
			s = s[:i]
			break
		}
	}
	return strings.TrimRight(s, " \t")
}

// Errors returned by ParseDuration, for errors.Is.
var (
	// ErrBareNumber: a number without a unit. Cilium's own flag parser
	// (spf13/cast) reads such a value as nanoseconds, so egwct refuses it
	// rather than guess.
	ErrBareNumber = errors.New("a number without a unit")
	// ErrNotDuration: not a Go duration.
	ErrNotDuration = errors.New("not a duration")
	// ErrNonPositive: zero or negative.
	ErrNonPositive = errors.New("not positive")
)

// DurationError explains why a value is not a usable duration.
type DurationError struct {
	Value string
	Err   error
	// Suggestion is a corrected value, when one is obvious.
	Suggestion string
}

func (e *DurationError) Error() string {
	switch e.Err {
	case ErrBareNumber:
		return fmt.Sprintf("%q has no unit: durations need one (s, m, h)", e.Value)
	case ErrNonPositive:
		return fmt.Sprintf("%q is not a positive duration", e.Value)
	}
	if goDuration.MatchString(e.Value) {
		// Written as a duration, but longer than one holds.
		return fmt.Sprintf("%q is too long for a duration: the longest is 2562047h (about 292 years)", e.Value)
	}
	return fmt.Sprintf("%q is not a duration: use a number with a unit, e.g. 30s, 5m, 1h30m", e.Value)
}

func (e *DurationError) Unwrap() error { return e.Err }

// goDuration is the syntax of time.ParseDuration, which refuses a value
// of that syntax only when it overflows.
var goDuration = regexp.MustCompile(`^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$`)

// ParseDuration reads a timeout value: a Go duration ("30s", "5m",
// "1h30m", "1.5s") that is greater than zero. A bare number is refused
// with ErrBareNumber and a suggestion in seconds.
func ParseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(s, 64); err == nil && !strings.ContainsAny(s, "eEnNiIxXpP") {
		if n <= 0 {
			return 0, &DurationError{Value: s, Err: ErrNonPositive}
		}
		return 0, &DurationError{Value: s, Err: ErrBareNumber, Suggestion: valid(strings.TrimPrefix(s, "+") + "s")}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		de := &DurationError{Value: s, Err: ErrNotDuration}
		de.Suggestion = valid(suggestDuration(s))
		return 0, de
	}
	if d <= 0 {
		return 0, &DurationError{Value: s, Err: ErrNonPositive}
	}
	return d, nil
}

// valid returns s if it is a usable duration, else "".
func valid(s string) string {
	if d, err := time.ParseDuration(s); err != nil || d <= 0 {
		return ""
	}
	return s
}

// suggestDuration fixes the usual slips: spaces ("5 m"), capitals ("5M",
// "30S"), long units ("5min", "10sec", "2hours") and days ("1d").
func suggestDuration(s string) string {
	num := strings.TrimRight(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ")
	unit := strings.ToLower(strings.TrimSpace(s[len(num):]))
	num = strings.TrimSpace(num)
	if num == "" {
		return ""
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 || n > 1e9 {
		return ""
	}
	switch unit {
	case "s", "sec", "secs", "second", "seconds":
		return num + "s"
	case "m", "min", "mins", "minute", "minutes":
		return num + "m"
	case "h", "hr", "hrs", "hour", "hours":
		return num + "h"
	case "ms", "msec", "millisecond", "milliseconds":
		return num + "ms"
	case "d", "day", "days":
		return strconv.FormatFloat(n*24, 'f', -1, 64) + "h"
	}
	return ""
}
