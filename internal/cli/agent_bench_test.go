package cli

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/k8stest"
	"github.com/egwct/egwct/internal/lab"
	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
)

// BenchmarkAgentCluster measures `egwct agent --from-cluster`, the built
// binary in a process of its own, against a real API server holding
// synthetic CiliumEndpoints (a tenth of them selected by 50 policies) on a
// small lab node (1,000 flows in CT maps of 4,096 entries, so that the
// sweep itself costs little):
//
//   - cpu-ms/tick: the agent's CPU (user+system, /proc) per 1 s tick while
//     nothing changes, and sweep-ms/tick the sweeps' own share of it;
//   - cep-change-ms, cegp-change-ms: from the update of an endpoint's
//     address (of a policy's CIDRs) to the new key in egwct's pinned map;
//   - rss-MB, hwm-MB: the agent's resident and peak memory.
//
// With EGWCT_AGENT_BENCH_BASELINE=REV the binary built at that revision
// is measured in the same run, and each figure is also reported as the
// baseline's value divided by this one's ("…-x"). Sizes come from
// EGWCT_AGENT_BENCH_EPS (default "10000,50000"):
//
//	go test ./internal/cli -run '^$' -bench AgentCluster -benchtime 1x -timeout 60m
func BenchmarkAgentCluster(b *testing.B) {
	testutil.RequireRoot(b)
	sizes := []int{10000, 50000}
	if s := os.Getenv("EGWCT_AGENT_BENCH_EPS"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatalf("EGWCT_AGENT_BENCH_EPS: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	bins := map[string]string{"": buildAt(b, "")}
	if rev := os.Getenv("EGWCT_AGENT_BENCH_BASELINE"); rev != "" {
		bins["baseline"] = buildAt(b, rev)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			env := k8stest.Start(b)
			populate(b, env, n)
			var base map[string]float64
			if bin, ok := bins["baseline"]; ok {
				base = measureAgent(b, env, bin, n)
			}
			got := measureAgent(b, env, bins[""], n)
			for _, k := range slices.Sorted(mapsKeys(got)) {
				b.ReportMetric(got[k], k)
				if v, ok := base[k]; ok && got[k] > 0 {
					b.ReportMetric(v/got[k], strings.SplitN(k, "/", 2)[0]+"-x")
				}
			}
			for range b.N {
			}
		})
	}
}

func mapsKeys(m map[string]float64) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// buildAt builds egwct from this tree, or from a git revision of it.
func buildAt(tb testing.TB, rev string) string {
	tb.Helper()
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	bin := filepath.Join(tb.TempDir(), "egwct")
	src := root
	if rev != "" {
		src = filepath.Join(tb.TempDir(), "src")
		if out, err := exec.Command("git", "-C", root, "worktree", "add", "--detach", src, rev).CombinedOutput(); err != nil {
			tb.Fatalf("git worktree add %s: %v\n%s", rev, err, out)
		}
		tb.Cleanup(func() { _ = exec.Command("git", "-C", root, "worktree", "remove", "--force", src).Run() })
	}
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/egwct")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build at %q: %v\n%s", rev, err, out)
	}
	return bin
}

// Synthetic cluster: n endpoints in 50 namespaces, in 500 apps; policy j
// (of 50) selects app j towards two CIDRs, so a tenth are selected.
const benchPolicies, benchApps = 50, 500

func benchIP(i int) string { return fmt.Sprintf("10.%d.%d.%d", 64+i>>16, i>>8&255, i&255) }

func populate(tb testing.TB, env *k8stest.Env, n int) {
	tb.Helper()
	var nss []string
	for i := range 50 {
		nss = append(nss, fmt.Sprintf("ns-%d", i))
	}
	env.Namespaces(tb, nss...)
	for j := range benchPolicies {
		env.Create(tb, fmt.Sprintf(`apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: pol-%d
  annotations:
    egwct.io/connection-timeouts: |
      bpfCtTimeoutRegularTcp: 5m
spec:
  selectors:
  - podSelector:
      matchLabels: {app: app-%d}
  destinationCIDRs: [203.0.%d.0/24, 198.51.%d.0/24]
`, j, j, j, j))
	}
	env.CreateMany(tb, cluster.EndpointResource, n, benchEndpoint)
}

func benchEndpoint(i int) *unstructured.Unstructured {
	ns, app := fmt.Sprintf("ns-%d", i%50), fmt.Sprintf("app-%d", i%benchApps)
	var u unstructured.Unstructured
	data := fmt.Sprintf(`apiVersion: cilium.io/v2
kind: CiliumEndpoint
metadata: {name: ep-%d, namespace: %s}
status:
  id: %d
  identity:
    id: %d
    labels: ["k8s:app=%s", "k8s:io.kubernetes.pod.namespace=%s", "k8s:io.cilium.k8s.policy.serviceaccount=default", "k8s:pod-template-hash=7d9f8c6b5"]
  networking:
    node: 10.0.0.10
    addressing: [{ipv4: %s}]
  state: ready
`, i, ns, i+1, 10000+i%benchApps, app, ns, benchIP(i))
	if err := yaml.Unmarshal([]byte(data), &u.Object); err != nil {
		panic(err)
	}
	return &u
}

// benchRuns numbers the agents measured, so that each one's changes are
// new to the cluster (the same address twice would be no change).
var benchRuns int

// measureAgent runs the agent binary and returns its figures.
func measureAgent(b *testing.B, env *k8stest.Env, bin string, n int) map[string]float64 {
	b.Helper()
	dir := labDir(b)
	res, _ := profiles.Resolve("1.18.3")
	if _, err := lab.Up(lab.Config{BPFFS: dir, StateDir: dir + ".state", Version: res, Flows: 1000, Policies: 2, Seed: 1, Clock: nodeconfig.Clock{Mode: nodeconfig.Ktime}, CTMax: 4096, NATMax: 8192}); err != nil {
		b.Fatal(err)
	}
	defer lab.Down(dir+".state", nil)
	addr := freeAddr(b)
	cmd := exec.Command(bin, "agent", "--from-cluster", "--kubeconfig", env.Kubeconfig, "--cilium-version", "1.18.3",
		"--bpffs", dir, "--cilium-state-dir", dir+".state", "--interval", "1s", "--metrics-addr", addr, "--log-format", "json")
	logs := &testutil.SyncBuffer{}
	cmd.Stderr = logs
	if d := os.Getenv("EGWCT_AGENT_BENCH_GODEBUG"); d != "" {
		// e.g. gctrace=1: the agent's log, GC trace included, is kept in
		// EGWCT_AGENT_BENCH_LOG (default agent-bench.log in the temp dir).
		cmd.Env = append(os.Environ(), "GODEBUG="+d)
		path := os.Getenv("EGWCT_AGENT_BENCH_LOG")
		if path == "" {
			path = filepath.Join(os.TempDir(), "agent-bench.log")
		}
		defer func() {
			_ = os.WriteFile(path, []byte(logs.String()), 0o644)
			b.Logf("the agent's log is in %s", path)
		}()
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	metric := func(name string) float64 {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return -1
	}
	wantKeys := float64(benchPolicies * (n / benchApps) * 2)
	start := time.Now()
	for metric("egwct_policy_keys") != wantKeys {
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("the agent never put %v keys in force:\n%s", wantKeys, tail(logs.String()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := map[string]float64{"startup-s": time.Since(start).Seconds()}

	// Idle: nothing changes for 20 ticks.
	time.Sleep(2 * time.Second)
	const ticks = 20
	// One scrape before and one after, as Prometheus would (a scrape
	// costs the agent CPU too): the ticks between are counted, not timed.
	cpu0, sw0, sweeps0 := cpuTime(b, cmd.Process.Pid), metric("egwct_sweep_duration_seconds_sum"), metric("egwct_sweeps_total")
	time.Sleep(ticks * time.Second)
	cpu1, sw1, sweeps1 := cpuTime(b, cmd.Process.Pid), metric("egwct_sweep_duration_seconds_sum"), metric("egwct_sweeps_total")
	if sweeps1 <= sweeps0 {
		b.Fatalf("no sweep in %d s", ticks)
	}
	out["cpu-ms/tick"] = float64((cpu1 - cpu0).Milliseconds()) / (sweeps1 - sweeps0)
	if sw0 >= 0 { // the baseline may not have the histogram
		out["sweep-ms/tick"] = (sw1 - sw0) * 1000 / (sweeps1 - sweeps0)
	}
	rss, hwm := memory(b, cmd.Process.Pid)
	out["rss-MB"], out["hwm-MB"] = rss, hwm

	// Changes: an endpoint's address, then a policy's CIDRs.
	dyn := env.Dynamic(b)
	ctx := context.Background()
	var cepMs, cegpMs []float64
	benchRuns++
	for k := range 5 {
		i := k * benchApps % n // selected by pol-0
		ip := fmt.Sprintf("10.200.%d.%d", benchRuns, 1+k)
		eps := dyn.Resource(cluster.EndpointResource).Namespace(fmt.Sprintf("ns-%d", i%50))
		u, err := eps.Get(ctx, fmt.Sprintf("ep-%d", i), metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		_ = unstructured.SetNestedSlice(u.Object, []any{map[string]any{"ipv4": ip}}, "status", "networking", "addressing")
		t0 := time.Now()
		if _, err := eps.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		waitKey(b, dir, ip, "203.0.0.0/24")
		cepMs = append(cepMs, float64(time.Since(t0).Microseconds())/1000)

		pols := dyn.Resource(cluster.PolicyResource)
		p, err := pols.Get(ctx, "pol-1", metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		cidr := fmt.Sprintf("192.%d.%d.0/24", benchRuns, 100+k)
		_ = unstructured.SetNestedStringSlice(p.Object, []string{cidr}, "spec", "destinationCIDRs")
		t0 = time.Now()
		if _, err := pols.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		waitKey(b, dir, benchIP(1), cidr)
		cegpMs = append(cegpMs, float64(time.Since(t0).Microseconds())/1000)
	}
	out["cep-change-ms"], out["cegp-change-ms"] = median(cepMs), median(cegpMs)
	// Put the policy back for the next agent of the run.
	p, _ := dyn.Resource(cluster.PolicyResource).Get(ctx, "pol-1", metav1.GetOptions{})
	_ = unstructured.SetNestedStringSlice(p.Object, []string{"203.0.1.0/24", "198.51.1.0/24"}, "spec", "destinationCIDRs")
	_, _ = dyn.Resource(cluster.PolicyResource).Update(ctx, p, metav1.UpdateOptions{})
	return out
}

func waitKey(b *testing.B, dir, pod, dest string) {
	b.Helper()
	want := sweep.Key{Pod: netip.MustParseAddr(pod), Dest: netip.MustParsePrefix(dest)}
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		st, err := sweep.OpenStateReadOnly(dir)
		if err == nil {
			keys, err := st.CurrentKeys()
			st.Close()
			if err == nil {
				if _, ok := keys[want]; ok {
					return
				}
			}
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("key %v never in force", want)
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// cpuTime is a process's user+system CPU time from /proc/PID/stat.
func cpuTime(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name in parentheses: utime is the 14th
	// field of the line, stime the 15th, in clock ticks (USER_HZ = 100).
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// memory is a process's VmRSS and VmHWM in MB.
func memory(tb testing.TB, pid int) (rss, hwm float64) {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		for _, x := range []struct {
			name string
			dst  *float64
		}{{"VmRSS:", &rss}, {"VmHWM:", &hwm}} {
			if v, ok := strings.CutPrefix(l, x.name); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				*x.dst = kb / 1024
			}
		}
	}
	return rss, hwm
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}
