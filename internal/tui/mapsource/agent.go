package mapsource

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// holder is the process holding egwct's state lock, read from /proc/locks
// without touching the lock itself.
type holder struct {
	PID  int
	Args []string
}

// lockHolder finds who holds a flock on dir, by its device and inode.
func lockHolder(procLocks, dir string) (holder, bool) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return holder{}, false
	}
	f, err := os.Open(procLocks)
	if err != nil {
		return holder{}, false
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[5] != want {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil {
			continue
		}
		h := holder{PID: pid}
		if b, err := os.ReadFile(filepath.Join("/proc", fields[4], "cmdline")); err == nil {
			h.Args = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		}
		return h, true
	}
	return holder{}, false
}

// agentInfo is what a holder's command line says about its sweeps.
type agentInfo struct {
	Agent    bool // egwct agent (else: an apply or reset at work)
	Mode     string
	Interval time.Duration
}

// parseArgs reads an egwct command line as cobra would for the flags that
// matter here.
func parseArgs(args []string) agentInfo {
	info := agentInfo{Mode: "reclaim", Interval: 10 * time.Second}
	value := func(i int, name string) (string, bool) {
		a := args[i]
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
		return "", false
	}
	for i, a := range args {
		if a == "agent" {
			info.Agent = true
		}
		if v, ok := value(i, "--mode"); ok {
			info.Mode = v
		}
		if v, ok := value(i, "--interval"); ok {
			if d, err := time.ParseDuration(v); err == nil {
				info.Interval = d
			}
		}
	}
	return info
}
