package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"github.com/egwct/egwct/internal/bpffs"
	"github.com/egwct/egwct/internal/enforce"
	"github.com/egwct/egwct/internal/lab"
	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
)

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// A generous bound: it only ends a test that would hang; a busy
	// machine is slow, never wrong.
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestAgent runs the agent against a lab node whose datapath is being
// driven: it sweeps, serves metrics, reloads changed manifests, keeps the
// last good set on a bad one, and re-opens a CT map Cilium re-created.
func TestAgent(t *testing.T) {
	// Every profile: IPv4-only ones, and dual-stack ones (1.18+) whose
	// IPv6 flows the agent sweeps too.
	for _, p := range profiles.All() {
		version := p.Name
		t.Run(version, func(t *testing.T) {
			dir := labDir(t)
			if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", version, "--flows", "3000"); code != 0 {
				t.Fatalf("lab up: %s %s", out, errOut)
			}
			defer run(t, "", "lab", "down", "--bpffs", dir)
			state := dir + ".state"
			// A node-port range above Cilium's default: SNAT has the
			// 25,535 ports above 40000 (egwct_snat_port_capacity).
			arc := filepath.Join(state, lab.RuntimeConfigFile)
			var node map[string]any
			if data, err := os.ReadFile(arc); err != nil || json.Unmarshal(data, &node) != nil {
				t.Fatalf("the lab's %s: %v", arc, err)
			}
			node["NodePortMin"], node["NodePortMax"] = 30000, 40000
			if data, err := json.Marshal(node); err != nil || os.WriteFile(arc, data, 0o644) != nil {
				t.Fatal(err)
			}
			manifests := t.TempDir()
			for _, f := range []string{lab.PoliciesFile, lab.EndpointsFile} {
				data, _ := os.ReadFile(filepath.Join(state, f))
				os.WriteFile(filepath.Join(manifests, filepath.Base(f)), data, 0o644)
			}
			logs := &testutil.SyncBuffer{}
			addr := freeAddr(t)
			o := &agentOptions{
				apply:       applyOptions{io: &IO{Out: io.Discard, ErrOut: logs}, Files: []string{manifests}, Mode: "reclaim"},
				Interval:    200 * time.Millisecond,
				MetricsAddr: addr,
				LogFormat:   "text",
			}
			o.apply.node = nodeFlags{BPFFS: dir, CiliumVersion: version, StateDir: state}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- runAgent(ctx, o) }()

			// A datapath at work meanwhile.
			d, err := lab.NewDriver(state)
			if err != nil {
				t.Fatal(err)
			}
			driveCtx, stopDrive := context.WithCancel(context.Background())
			var driving sync.WaitGroup
			driving.Add(1)
			go func() {
				defer driving.Done()
				for driveCtx.Err() == nil {
					if _, err := d.Step(200, 20, 10); err != nil {
						t.Error(err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()

			metrics := func() string {
				resp, err := http.Get("http://" + addr + "/metrics")
				if err != nil {
					return ""
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return string(b)
			}
			eventually(t, "sweeps with deletions", func() bool {
				m := metrics()
				return strings.Contains(m, `egwct_ct_deleted_total{policy="payments-egress",state="established"}`) &&
					strings.Contains(m, "egwct_sweeps_total 3") && strings.Contains(m, "egwct_snat_ports_in_use{")
			})
			if m := metrics(); !strings.Contains(m, "egwct_snat_port_capacity 25535\n") {
				t.Errorf("the node's node-port range ends at 40000, yet /metrics says\n%s", grepLines(m, "egwct_snat_port_capacity"))
			}
			stopDrive()
			driving.Wait()
			d.Close()
			// Within an interval or two every idle flow of a timed policy is gone:
			// what a sweep would still find is what crossed its timeout since.
			time.Sleep(2 * o.Interval)
			n, err := o.apply.node.open()
			if err != nil {
				t.Fatal(err)
			}
			objs, err := o.apply.objects(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			plan, err := enforce.MakePlan(n.Env, enforce.NewResolver(n.Env).Resolve(objs).Set)
			if err != nil {
				t.Fatal(err)
			}
			left := 0
			for _, p := range plan.Policies {
				left += p.ExpireTotal()
			}
			if left > 10 {
				t.Errorf("with the agent running, %d entries are past their policy's timeout", left)
			}

			// Changed manifests are picked up; a broken one is refused and the
			// last good set stays.
			pf := filepath.Join(manifests, "policies.yaml")
			data, _ := os.ReadFile(pf)
			os.WriteFile(pf, bytes.Replace(data, []byte("bpfCtTimeoutRegularTcp: 15m"), []byte("bpfCtTimeoutRegularTcp: 10m"), 1), 0o644)
			defer func() {
				if t.Failed() {
					t.Log(logs.String())
				}
			}()
			eventually(t, "a reload", func() bool {
				return strings.Contains(logs.String(), `msg="policy timeouts in force" policy=payments-egress keys=`) &&
					strings.Contains(logs.String(), "established=10m0s")
			})
			os.WriteFile(pf, bytes.Replace(data, []byte("bpfCtTimeoutRegularTcp: 15m"), []byte("bpfCtTimeoutRegularTCP: 10m"), 1), 0o644)
			eventually(t, "a refused reload", func() bool {
				return strings.Contains(logs.String(), `msg="policy refused; its last valid timeouts stay in force" policy=payments-egress`) &&
					strings.Contains(logs.String(), "timeouts=\"established=10m0s") &&
					strings.Contains(metrics(), `egwct_policy_valid{policy="payments-egress"} 0`) &&
					strings.Contains(metrics(), `egwct_policy_valid{policy="billing-egress"} 1`)
			})

			// Cilium re-creates its TCP CT map: the agent sweeps the new one.
			r, _ := profiles.Resolve(version)
			spec, _ := r.Profile.Map(profiles.RoleCTTCP, 4)
			os.Remove(ctmap.PinPath(dir, spec))
			m, err := ctmap.Create(dir, spec, 1024)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			eventually(t, "the re-created map to be re-opened", func() bool {
				return strings.Contains(logs.String(), "re-opening them") && strings.Contains(metrics(), "egwct_map_reopens_total 1")
			})

			cancel()
			if err := <-done; err != nil {
				t.Fatalf("agent: %v", err)
			}

			if !strings.Contains(logs.String(), "agent stopped") {
				t.Errorf("logs: %s", logs.String())
			}
			if strings.Contains(logs.String(), "level=ERROR msg=\"sweep failed") {
				t.Errorf("a sweep failed: %s", logs.String())
			}
		})
	}
}

// TestAgentNotReadyWhileSweepsFail: on a node without Cilium's maps the
// agent runs (the maps may come), but /readyz fails with the reason and
// /healthz still answers; sweep failures are counted.
func TestAgentNotReadyWhileSweepsFail(t *testing.T) {
	dir := labDir(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := bpffs.Mount(dir); err != nil {
		t.Fatal(err)
	}
	manifests := t.TempDir()
	os.WriteFile(filepath.Join(manifests, "p.yaml"), []byte(burstPolicy), 0o644)
	// A refused policy: its findings go to the JSON log as records.
	os.WriteFile(filepath.Join(manifests, "typo.yaml"), []byte(strings.NewReplacer("bpfCtTimeoutRegularTcp", "bpfCtTimeoutRegularTCP", "name: burst", "name: typo").Replace(burstPolicy)), 0o644)
	logs := &testutil.SyncBuffer{}
	addr := freeAddr(t)
	o := &agentOptions{
		apply:       applyOptions{io: &IO{Out: io.Discard, ErrOut: logs}, Files: []string{manifests}, Mode: "reclaim"},
		Interval:    100 * time.Millisecond,
		MetricsAddr: addr,
		LogFormat:   "json",
	}
	o.apply.node = nodeFlags{BPFFS: dir, CiliumVersion: "1.18.3", StateDir: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runAgent(ctx, o) }()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually(t, "failed sweeps to be counted", func() bool {
		code, body := get("/metrics")
		return code == 200 && strings.Contains(body, "egwct_sweep_errors_total 3")
	})
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "cilium_ct4_global") {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	findings := 0
	for i, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %d is not JSON: %s", i+1, line)
		}
		if rec["msg"] == "policy finding" {
			findings++
			if rec["rule"] != "unknown-key" || !strings.HasSuffix(fmt.Sprint(rec["file"]), "typo.yaml") || rec["suggestion"] == nil {
				t.Errorf("finding record %v", rec)
			}
		}
	}
	if findings != 1 {
		t.Errorf("%d finding records, want 1:\n%s", findings, logs)
	}
}

// TestSetMemoryLimit: the agent's GOMEMLIMIT is 90 % of the container's
// memory limit, the runtime's default without one, and what the
// environment says when GOMEMLIMIT or AUTOMEMLIMIT is set there.
func TestSetMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const before = 1 << 40
	noLimit := func() (uint64, error) { return 0, memlimit.ErrNoLimit }
	for _, c := range []struct {
		name  string
		env   map[string]string
		limit memlimit.Provider
		want  int64
	}{
		{"the chart's 256 MiB", nil, memlimit.Limit(256 << 20), 256 << 20 * 9 / 10},
		{"no limit", nil, noLimit, math.MaxInt64},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "100MiB"}, memlimit.Limit(256 << 20), before},
		{"AUTOMEMLIMIT off", map[string]string{"AUTOMEMLIMIT": "off"}, memlimit.Limit(256 << 20), before},
		{"AUTOMEMLIMIT 0.5", map[string]string{"AUTOMEMLIMIT": "0.5"}, memlimit.Limit(256 << 20), 128 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			debug.SetMemoryLimit(before)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			setMemoryLimit(ctx, slog.New(slog.DiscardHandler), c.limit)
			if got := debug.SetMemoryLimit(-1); got != c.want {
				t.Errorf("GOMEMLIMIT %d, want %d", got, c.want)
			}
		})
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
