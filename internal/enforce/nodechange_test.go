package enforce

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// timeouts is the node's timeouts: syn, established, closing, non-tcp.
func timeouts(syn, est, closing, other time.Duration) map[profiles.State]time.Duration {
	return map[profiles.State]time.Duration{
		profiles.StateSyn: syn, profiles.StateEstablished: est,
		profiles.StateClosing: closing, profiles.StateNonTCP: other,
	}
}

// TestJudging: each state is judged with the shortest timeout of the
// node's and of the generations whose entries may still live.
func TestJudging(t *testing.T) {
	now := time.Unix(1000, 0)
	s := func(n int) time.Duration { return time.Duration(n) * time.Second }
	base := timeouts(s(60), s(8000), s(10), s(60))
	for _, tc := range []struct {
		name  string
		node  map[profiles.State]time.Duration
		gens  []generation
		judge map[profiles.State]time.Duration
		live  int
	}{
		{"no change", base, nil, base, 0},
		{"shorter than the old", timeouts(s(60), s(3600), s(10), s(30)),
			[]generation{retire(base, now.Add(-s(10)))}, timeouts(s(60), s(3600), s(10), s(30)), 1},
		{"longer: the old while its entries live", timeouts(s(60), s(21600), s(10), s(60)),
			[]generation{retire(base, now.Add(-s(10)))}, base, 1},
		{"longer: the new once they are gone", timeouts(s(60), s(21600), s(10), s(60)),
			[]generation{retire(base, now.Add(-s(8000)))}, timeouts(s(60), s(21600), s(10), s(60)), 0},
		{"mixed: the shortest of each", timeouts(s(120), s(3600), s(10), s(60)),
			[]generation{retire(base, now.Add(-s(10)))}, timeouts(s(60), s(3600), s(10), s(60)), 1},
		{"two generations", timeouts(s(60), s(21600), s(10), s(60)),
			[]generation{retire(base, now.Add(-s(100))), retire(timeouts(s(60), s(3600), s(10), s(60)), now.Add(-s(50)))},
			timeouts(s(60), s(3600), s(10), s(60)), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			judge, live := judging(tc.node, tc.gens, now)
			if !equalTimeouts(judge, tc.judge) {
				t.Errorf("judge with %v, want %v", timeoutsText(judge), timeoutsText(tc.judge))
			}
			if len(live) != tc.live {
				t.Errorf("%d generations live, want %d", len(live), tc.live)
			}
		})
	}
}

// TestAgentFollowsNode: the agent reads the node's settings again when
// Cilium rewrote agent-runtime-config.json, judges with shorter timeouts
// at once and with longer ones only once the entries of the old ones are
// gone, keeps what it read when the file is gone or unreadable, and
// takes a new clock at once.
func TestAgentFollowsNode(t *testing.T) {
	old := timeouts(60*time.Second, 8000*time.Second, 10*time.Second, 60*time.Second)
	shorter := timeouts(60*time.Second, 3600*time.Second, 10*time.Second, 60*time.Second)
	longer := timeouts(60*time.Second, 21600*time.Second, 10*time.Second, 60*time.Second)
	ktime := nodeconfig.Clock{Mode: nodeconfig.Ktime}
	jiffies := nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: 250}

	file := filepath.Join(t.TempDir(), "agent-runtime-config.json")
	clk := clocktesting.NewFakeClock(time.Unix(1e6, 0))
	var next *Env
	var rereadErr error
	reads := 0
	a := &Agent{
		Env:        &Env{Clock: ktime, Timeouts: old},
		Clock:      clk,
		Log:        slog.New(slog.DiscardHandler),
		NodeConfig: file,
		Reread: func(profiles.Resolution) (*Env, error) {
			reads++
			return next, rereadErr
		},
	}
	write := func(body string) {
		t.Helper()
		// A new file, as Cilium writes it: another inode whatever the
		// clock's granularity.
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, clock nodeconfig.Clock, want map[profiles.State]time.Duration, wantReads int) {
		t.Helper()
		a.followNode()
		if a.Env.Clock != clock || !equalTimeouts(a.Env.Timeouts, want) {
			t.Errorf("%s: judging with %s %s, want %s %s", step, a.Env.Clock, timeoutsText(a.Env.Timeouts), clock, timeoutsText(want))
		}
		if reads != wantReads {
			t.Errorf("%s: %d reads of the node's settings, want %d", step, reads, wantReads)
		}
	}

	check("no file", ktime, old, 0)
	next = &Env{Clock: ktime, Timeouts: old}
	write("1")
	check("the file appears, the same settings", ktime, old, 1)
	check("unchanged file", ktime, old, 1)

	next = &Env{Clock: ktime, Timeouts: shorter}
	write("2")
	check("shorter timeouts", ktime, shorter, 2)

	next = &Env{Clock: ktime, Timeouts: longer}
	write("3")
	// Entries of the first settings (8000 s) may live until 8000 s
	// after the first change, those of the second (3600 s) until 3600 s
	// after the second.
	check("longer timeouts", ktime, shorter, 3)
	clk.Step(3599 * time.Second)
	check("before the shorter ones' entries are gone", ktime, shorter, 3)
	clk.Step(time.Second)
	check("before the first ones' entries are gone", ktime, old, 3)
	clk.Step(4399 * time.Second)
	check("just before", ktime, old, 3)
	clk.Step(time.Second)
	check("once every old entry is gone", ktime, longer, 3)

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	check("file gone (Cilium restarting)", ktime, longer, 3)

	rereadErr = errors.New("unexpected end of JSON input")
	write("4")
	check("half-written file", ktime, longer, 4)
	rereadErr = nil
	next = &Env{Clock: jiffies, Timeouts: longer}
	check("read again, another clock", jiffies, longer, 5)
}
