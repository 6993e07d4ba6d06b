package enforce

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

func resolve(t *testing.T, v string) profiles.Resolution {
	t.Helper()
	res, err := profiles.Resolve(v)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestNextVersion: Cilium's version is detected again only when Cilium
// restarted or a retry is due; a failed detection or a version without a
// profile keeps the one in use and asks again a minute later.
func TestNextVersion(t *testing.T) {
	now := time.Unix(1e6, 0)
	cur := resolve(t, "v1.19.5")
	unreachable := errors.New("dial tcp: connection refused")
	for _, tc := range []struct {
		name      string
		restarted bool
		retryAt   time.Time
		answer    detection
		asked     bool
		want      string // the version judged with
		retry     time.Time
		fails     bool
	}{
		{name: "nothing changed", want: "1.19.5"},
		{name: "restarted, same version", restarted: true, answer: detection{tag: "v1.19.5"}, asked: true, want: "1.19.5"},
		{name: "restarted as the next minor", restarted: true, answer: detection{tag: "v1.20.2"}, asked: true, want: "1.20.2"},
		{name: "restarted as another patch", restarted: true, answer: detection{tag: "v1.19.7"}, asked: true, want: "1.19.7"},
		{name: "rolled back", restarted: true, answer: detection{tag: "v1.18.3"}, asked: true, want: "1.18.3"},
		{name: "cluster unreachable", restarted: true, answer: detection{err: unreachable}, asked: true, want: "1.19.5", retry: now.Add(DetectRetry), fails: true},
		{name: "no profile for the version", restarted: true, answer: detection{tag: "v1.99.0"}, asked: true, want: "1.19.5", retry: now.Add(DetectRetry), fails: true},
		{name: "retry not yet due", retryAt: now.Add(time.Second), want: "1.19.5", retry: now.Add(time.Second)},
		{name: "retry due", retryAt: now, answer: detection{tag: "v1.20.2"}, asked: true, want: "1.20.2"},
		{name: "retry fails again", retryAt: now.Add(-time.Second), answer: detection{err: unreachable}, asked: true, want: "1.19.5", retry: now.Add(DetectRetry), fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := versionDue(tc.restarted, tc.retryAt, now)
			if asked != tc.asked {
				t.Fatalf("detected: %v, want %v", asked, tc.asked)
			}
			res, retry, err := cur, tc.retryAt, error(nil)
			if asked {
				res, retry, err = versionOf(cur, tc.answer, now)
			}
			if got := res.Version.String(); got != tc.want {
				t.Errorf("judging with %s, want %s", got, tc.want)
			}
			if !retry.Equal(tc.retry) {
				t.Errorf("retry at %v, want %v", retry, tc.retry)
			}
			if (err != nil) != tc.fails {
				t.Errorf("err %v, want a failure: %v", err, tc.fails)
			}
		})
	}
}

// TestAgentFollowsUpgrade: when Cilium rewrote the node's settings the
// agent asks for Cilium's version again and judges with the new profile,
// saying so; the first reading asks nothing, an unchanged file nothing,
// a failure keeps the profile in use and is retried before a sweep a
// minute later, and a file that cannot be read is asked about once.
func TestAgentFollowsUpgrade(t *testing.T) {
	ts := timeouts(60*time.Second, 8000*time.Second, 10*time.Second, 60*time.Second)
	ktime := nodeconfig.Clock{Mode: nodeconfig.Ktime}
	file := filepath.Join(t.TempDir(), "agent-runtime-config.json")
	clk := clocktesting.NewFakeClock(time.Unix(1e6, 0))
	var logs bytes.Buffer
	tag, detectErr, rereadErr := "v1.19.5", error(nil), error(nil)
	detects := 0
	a := &Agent{
		Env:        &Env{Clock: ktime, Timeouts: ts, Resolution: resolve(t, "v1.19.5")},
		Clock:      clk,
		Log:        slog.New(slog.NewTextHandler(&logs, nil)),
		NodeConfig: file,
		Reread: func(res profiles.Resolution) (*Env, error) {
			return &Env{Clock: ktime, Timeouts: ts, Resolution: res}, rereadErr
		},
		Detect: func() (string, error) {
			detects++
			return tag, detectErr
		},
	}
	n := 0
	write := func() {
		t.Helper()
		n++
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(strings.Repeat("x", n)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step, profile string, wantDetects int, wantLog string) {
		t.Helper()
		logs.Reset()
		a.followNode()
		settle(a)
		if got := a.Env.Profile().Name; got != profile {
			t.Errorf("%s: profile %s, want %s", step, got, profile)
		}
		if detects != wantDetects {
			t.Errorf("%s: %d detections, want %d", step, detects, wantDetects)
		}
		if wantLog != "" && !strings.Contains(logs.String(), wantLog) {
			t.Errorf("%s: log lacks %q:\n%s", step, wantLog, logs.String())
		}
		if wantLog == "" && logs.Len() > 0 {
			t.Errorf("%s: logged\n%s", step, logs.String())
		}
	}

	write()
	check("first reading", "1.19", 0, "")
	check("unchanged", "1.19", 0, "")
	write()
	check("Cilium restarted, same version", "1.19", 1, "")

	tag = "v1.20.2"
	write()
	check("Cilium upgraded", "1.20", 2, `msg="Cilium's version changed" old=1.19.5 new=1.20.2 old_profile=1.19 profile=1.20`)
	check("unchanged after the upgrade", "1.20", 2, "")

	tag, detectErr = "", errors.New("the server is currently unable to handle the request")
	write()
	check("restarted, the cluster unreachable", "1.20", 3, `msg="cannot detect Cilium's version again; judging with the profile in use" profile=1.20`)
	clk.Step(DetectRetry - time.Second)
	check("before the retry", "1.20", 3, "")
	tag, detectErr = "v1.19.7", nil
	clk.Step(time.Second)
	check("the retry: rolled back meanwhile", "1.19", 4, `msg="Cilium's version changed" old=1.20.2 new=1.19.7`)
	clk.Step(DetectRetry)
	check("no retry pending", "1.19", 4, "")

	tag, rereadErr = "v1.20.2", errors.New("unexpected end of JSON input")
	write()
	check("half-written file", "1.19", 5, "cannot read the node's settings again")
	check("still half written: not asked again", "1.19", 5, "cannot read the node's settings again")
	rereadErr = nil
	check("read at last", "1.20", 5, `msg="Cilium's version changed" old=1.19.7 new=1.20.2`)
}

// settle takes in the answers of the agent's detections, as the sweeps
// after a detection would, until none is awaited.
func settle(a *Agent) {
	for a.detected != nil {
		awaitAnswer(a)
		a.followNode()
	}
}

// awaitAnswer waits until the detection under way has answered (its
// answer waits in the agent's channel), however long that takes.
func awaitAnswer(a *Agent) {
	for len(a.detected) == 0 {
		time.Sleep(time.Millisecond)
	}
}

// TestDetectionHoldsNoSweep: a detection that the API server does not
// answer holds up no sweep: followNode returns at once and the agent
// judges with what it judged by; a restart while the detection is under
// way is asked about again after its answer, which may name the version
// before that restart; the answer that follows puts the new version in
// force.
func TestDetectionHoldsNoSweep(t *testing.T) {
	ts := timeouts(60*time.Second, 8000*time.Second, 10*time.Second, 60*time.Second)
	ktime := nodeconfig.Clock{Mode: nodeconfig.Ktime}
	file := filepath.Join(t.TempDir(), "agent-runtime-config.json")
	var logs bytes.Buffer
	asked := make(chan chan string) // each detection waits for its answer here
	rereads := 0
	a := &Agent{
		Env:        &Env{Clock: ktime, Timeouts: ts, Resolution: resolve(t, "v1.19.5")},
		Clock:      clocktesting.NewFakeClock(time.Unix(1e6, 0)),
		Log:        slog.New(slog.NewTextHandler(&logs, nil)),
		NodeConfig: file,
		Reread: func(res profiles.Resolution) (*Env, error) {
			rereads++
			return &Env{Clock: ktime, Timeouts: ts, Resolution: res}, nil
		},
		Detect: func() (string, error) {
			answer := make(chan string)
			asked <- answer
			return <-answer, nil
		},
	}
	n := 0
	write := func() {
		t.Helper()
		n++
		if err := os.WriteFile(file, []byte(strings.Repeat("x", n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write()
	a.followNode()
	write()
	a.followNode() // Cilium restarted: asks, and returns
	first := <-asked
	for range 3 {
		a.followNode() // sweeps while no answer came
	}
	if got := a.Env.Profile().Name; got != "1.19" || rereads != 1 {
		t.Fatalf("while awaiting the answer: profile %s after %d readings, want 1.19 after 1 (the first)", got, rereads)
	}
	write()
	a.followNode() // restarted again while the first detection is under way
	first <- "v1.20.2"
	awaitAnswer(a)
	a.followNode() // takes the first answer in, asks again
	second := <-asked
	if got := a.Env.Profile().Name; got != "1.19" {
		t.Fatalf("after an answer that a restart made stale: profile %s, want 1.19 until the next answer", got)
	}
	second <- "v1.18.3"
	settle(a)
	if got := a.Env.Resolution.Version.String(); got != "1.18.3" || rereads != 2 {
		t.Fatalf("after the last answer: version %s after %d readings, want 1.18.3 after 2", got, rereads)
	}
	if !strings.Contains(logs.String(), `msg="Cilium's version changed" old=1.19.5 new=1.18.3`) {
		t.Errorf("log lacks the switch:\n%s", logs.String())
	}
}

// TestAgentFollowsPortCapacity: a node-port range that changed when Cilium
// restarted (cilium-config read again) changes the port capacity the
// agent measures port use against, and says so, without loading the
// sweeper again.
func TestAgentFollowsPortCapacity(t *testing.T) {
	ts := timeouts(60*time.Second, 8000*time.Second, 10*time.Second, 60*time.Second)
	ktime := nodeconfig.Clock{Mode: nodeconfig.Ktime}
	file := filepath.Join(t.TempDir(), "agent-runtime-config.json")
	var logs bytes.Buffer
	nodePortMax := 32767
	a := &Agent{
		Env:        &Env{Clock: ktime, Timeouts: ts, Resolution: resolve(t, "v1.19.5"), Config: &nodeconfig.Config{NodePortMax: nodePortMax}},
		Clock:      clocktesting.NewFakeClock(time.Unix(1e6, 0)),
		Log:        slog.New(slog.NewTextHandler(&logs, nil)),
		NodeConfig: file,
		Reread: func(res profiles.Resolution) (*Env, error) {
			return &Env{Clock: ktime, Timeouts: ts, Resolution: res, Config: &nodeconfig.Config{NodePortMax: nodePortMax}}, nil
		},
	}
	for i, step := range []struct {
		max, capacity int
		log           string
	}{
		{32767, 32768, ""},
		{40000, 25535, `msg="the node's SNAT port capacity changed" old=32768 new=25535`},
		{0, 32768, `msg="the node's SNAT port capacity changed" old=25535 new=32768`},
	} {
		logs.Reset()
		nodePortMax = step.max
		if err := os.WriteFile(file, []byte(strings.Repeat("x", i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
		a.followNode()
		if got := portCapacity(a.Env); got != step.capacity {
			t.Errorf("node-port range up to %d: capacity %d, want %d", step.max, got, step.capacity)
		}
		if !strings.Contains(logs.String(), step.log) || (step.log == "" && logs.Len() > 0) {
			t.Errorf("node-port range up to %d: log\n%s\nwant %q", step.max, logs.String(), step.log)
		}
	}
}
