package enforce

import (
	"os"
	"time"

	"github.com/egwct/egwct/pkg/profiles"
)

// fileStamp identifies one version of a file.
type fileStamp struct {
	ino   uint64
	size  int64
	mtime int64
}

// stamp identifies the version of the file at path (its inode, size and
// modification time), if it exists: a file rewritten in place or
// replaced has another.
func stamp(path string) (fileStamp, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	ino, _ := inode(path)
	return fileStamp{ino: ino, size: fi.Size(), mtime: fi.ModTime().UnixNano()}, true
}

// generation is node timeouts that entries may still carry after the
// node's timeouts changed (Cilium restarted with other CT timeouts, or a
// version with other defaults): an entry refreshed before the restart
// keeps the old timeout in its lifetime until its next packet, and lives
// at most until the longest of them has passed.
type generation struct {
	timeouts map[profiles.State]time.Duration
	until    time.Time
}

// judging returns the timeouts to judge with at now, and the generations
// whose entries may still live. An entry's lifetime does not say which
// timeout set it, so each state is judged with the shortest of the
// node's timeout and those of the generations still live: idle = now −
// (lifetime − T) then never counts an entry as idler than it is,
// whichever timeout set it. Judging with longer new timeouts at once
// would count the flows refreshed under the old ones as idle for longer
// than they are, and reclaim live flows early.
func judging(node map[profiles.State]time.Duration, gens []generation, now time.Time) (map[profiles.State]time.Duration, []generation) {
	judge := make(map[profiles.State]time.Duration, len(node))
	for _, st := range profiles.States {
		judge[st] = node[st]
	}
	var live []generation
	for _, g := range gens {
		if !now.Before(g.until) {
			continue
		}
		live = append(live, g)
		for _, st := range profiles.States {
			judge[st] = min(judge[st], g.timeouts[st])
		}
	}
	return judge, live
}

// retire is the generation of timeouts superseded at now.
func retire(ts map[profiles.State]time.Duration, now time.Time) generation {
	var longest time.Duration
	for _, st := range profiles.States {
		longest = max(longest, ts[st])
	}
	return generation{timeouts: ts, until: now.Add(longest)}
}

func equalTimeouts(a, b map[profiles.State]time.Duration) bool {
	for _, st := range profiles.States {
		if a[st] != b[st] {
			return false
		}
	}
	return true
}

// shorter reports whether a holds a shorter timeout than b for a state.
func shorter(a, b map[profiles.State]time.Duration) bool {
	for _, st := range profiles.States {
		if a[st] < b[st] {
			return true
		}
	}
	return false
}
