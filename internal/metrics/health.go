package metrics

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// DefaultUnreadyAfter is how many consecutive failed sweeps make /readyz
// fail when Options.UnreadyAfter is 0.
const DefaultUnreadyAfter = 3

// maxReason is the longest reason /readyz writes, in bytes.
const maxReason = 512

// readiness decides /readyz from the recorded outcomes of sweeps: not
// ready until the first successful sweep, nor after unreadyAfter failed
// sweeps in a row; ready again after a success. It holds no clock and no
// lock (Metrics locks around it).
type readiness struct {
	unreadyAfter int
	succeeded    bool   // at least one sweep succeeded
	failures     int    // consecutive failed sweeps since the last success
	lastErr      error  // the error of the last failed sweep
	waiting      string // what the agent waits for before its first sweep
}

func (r *readiness) success() {
	r.succeeded, r.failures, r.lastErr = true, 0, nil
}

func (r *readiness) failure(err error) {
	if err == nil {
		err = errors.New("unknown error")
	}
	r.failures++
	r.lastErr = err
}

// ready returns nil when the agent is ready, or the reason it is not.
func (r *readiness) ready() error {
	switch {
	case !r.succeeded && r.failures == 0 && r.waiting != "":
		return fmt.Errorf("no sweep has run yet: waiting for %s", oneLine(r.waiting))
	case !r.succeeded && r.failures == 0:
		return errors.New("no sweep has run yet")
	case !r.succeeded:
		return fmt.Errorf("no sweep has succeeded yet (%d failed; last: %s)", r.failures, oneLine(r.lastErr.Error()))
	case r.failures >= r.unreadyAfter:
		return fmt.Errorf("the last %d sweeps failed (last: %s)", r.failures, oneLine(r.lastErr.Error()))
	}
	return nil
}

// oneLine makes s fit on one line of an HTTP body or a log: control
// characters become spaces, runs of spaces one, and the text is cut at
// maxReason bytes.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		if b.Len()+len(string(r)) > maxReason {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimRight(b.String(), " ")
}
