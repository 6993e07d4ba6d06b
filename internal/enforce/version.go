package enforce

import (
	"fmt"
	"time"

	"github.com/egwct/egwct/pkg/profiles"
)

// DetectRetry is the least time between two detections of Cilium's
// version after one failed: one GET of the DaemonSet, bounded by
// --request-timeout, that holds up the sweep it precedes.
const DetectRetry = time.Minute

// nextVersion decides, before a sweep, with which Cilium version the
// agent judges. restarted says that Cilium rewrote the node's settings
// since egwct last read them: it started again, perhaps as another
// version. retryAt is when a failed detection may be tried again (zero:
// none failed). detect is called only when restarted or when a retry is
// due; its tag is resolved to a profile.
//
// It returns the resolution to judge with, when to retry (zero: no
// retry pending), and why the detection failed: a failure (the API
// server unreachable, a tag that is not a version, a version egwct has
// no profile for) keeps cur.
func nextVersion(cur profiles.Resolution, restarted bool, retryAt, now time.Time, detect func() (string, error)) (profiles.Resolution, time.Time, error) {
	if !restarted && (retryAt.IsZero() || now.Before(retryAt)) {
		return cur, retryAt, nil
	}
	tag, err := detect()
	if err != nil {
		return cur, now.Add(DetectRetry), err
	}
	res, err := profiles.Resolve(tag)
	if err != nil {
		return cur, now.Add(DetectRetry), fmt.Errorf("Cilium %s: %w", tag, err)
	}
	return res, time.Time{}, nil
}
