package enforce

import (
	"fmt"
	"time"

	"github.com/egwct/egwct/pkg/profiles"
)

// DetectRetry is the least time between two detections of Cilium's
// version after one failed.
const DetectRetry = time.Minute

// detection is the answer to one detection of Cilium's version: the
// cilium DaemonSet's image tag, or why it could not be read.
type detection struct {
	tag string
	err error
}

// versionDue says whether the agent asks for Cilium's version before a
// sweep: when Cilium restarted (it rewrote the node's settings since
// egwct last read them, perhaps as another version), or when a retry of a
// failed detection is due (retryAt; zero: none failed).
func versionDue(restarted bool, retryAt, now time.Time) bool {
	return restarted || (!retryAt.IsZero() && !now.Before(retryAt))
}

// versionOf resolves the answer d of a detection to the resolution the
// agent judges with, when to retry (zero: no retry pending), and why the
// detection failed: a failure (the API server unreachable, a tag that is
// not a version, a version egwct has no profile for) keeps cur and is
// retried DetectRetry after now.
func versionOf(cur profiles.Resolution, d detection, now time.Time) (profiles.Resolution, time.Time, error) {
	if d.err != nil {
		return cur, now.Add(DetectRetry), d.err
	}
	res, err := profiles.Resolve(d.tag)
	if err != nil {
		return cur, now.Add(DetectRetry), fmt.Errorf("Cilium %s: %w", d.tag, err)
	}
	return res, time.Time{}, nil
}
