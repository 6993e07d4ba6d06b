package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/k8stest"
	"github.com/egwct/egwct/internal/lab"
	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/sweep"
)

// startClusterAgent runs `egwct agent --from-cluster` on a lab node with
// the given kubeconfig, and a sweep interval long enough that only the
// watches can explain a change seen in the test.
func startClusterAgent(t *testing.T, dir, kubeconfig string, interval time.Duration, opts ...func(*agentOptions)) (logs *syncBuffer, metrics func() string) {
	t.Helper()
	logs = &syncBuffer{}
	addr := freeAddr(t)
	o := &agentOptions{
		apply:       applyOptions{io: &IO{Out: io.Discard, ErrOut: logs}, Mode: "reclaim"},
		Interval:    interval,
		MetricsAddr: addr,
		LogFormat:   "text",
	}
	o.apply.node = nodeFlags{BPFFS: dir, CiliumVersion: "1.18.3", StateDir: dir + ".state"}
	o.apply.cluster = clusterOptions{From: true, Namespace: "kube-system", flags: cluster.Flags{Kubeconfig: kubeconfig, Timeout: 5 * time.Second}}
	for _, opt := range opts {
		opt(o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runAgent(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v\n%s", err, logs)
		}
	})
	metrics = func() string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	eventually(t, "the agent to start", func() bool { return strings.Contains(logs.String(), "agent started") })
	return logs, metrics
}

// keysNow reads the (pod, destination) keys of the policy set in force
// from egwct's pinned maps, read-only (the running agent holds the
// state's lock).
func keysNow(t *testing.T, dir string) map[sweep.Key]bool {
	t.Helper()
	out := map[sweep.Key]bool{}
	st, err := sweep.OpenStateReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, err := st.CurrentKeys()
	if err != nil {
		return out // swapped out meanwhile; the next poll sees the new one
	}
	for k := range keys {
		k.Excluded = false
		out[k] = true
	}
	return out
}

func hasKey(keys map[sweep.Key]bool, pod, dest string) bool {
	return keys[sweep.Key{Pod: netip.MustParseAddr(pod), Dest: netip.MustParsePrefix(dest)}]
}

func endpointYAML(name, app, ip string) string {
	return `apiVersion: cilium.io/v2
kind: CiliumEndpoint
metadata:
  name: ` + name + `
  namespace: burst
status:
  identity:
    labels:
    - k8s:app=` + app + `
    - k8s:io.kubernetes.pod.namespace=burst
  networking:
    addressing:
    - ipv4: ` + ip + `
`
}

const burstPolicy = `apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: burst
  annotations:
    egwct.io/connection-timeouts: |
      bpfCtTimeoutRegularTcp: 120s
spec:
  selectors:
  - podSelector:
      matchLabels:
        app: burst
  destinationCIDRs:
  - 203.0.113.0/24
`

// TestAgentFollowsCluster: `egwct agent --from-cluster`, running as the
// service account of deploy/egwct.yaml, reflects every kind of change of
// policies and endpoints in egwct's policy map within 1 s.
func TestAgentFollowsCluster(t *testing.T) {
	env := k8stest.Shared(t)
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "1000", "--clock", "jiffies", "--hz", "250"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	env.Reset(t)
	deploy(t, env)
	var manifests []string
	for _, f := range []string{lab.PoliciesFile, lab.EndpointsFile} {
		data, err := os.ReadFile(filepath.Join(dir+".state", f))
		if err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, string(data))
	}
	env.Namespaces(t, append(namespacesOf(manifests[1]), "burst")...)
	env.Create(t, manifests[0])
	env.Create(t, manifests[1])
	env.Create(t, endpointYAML("burst-1", "burst", "10.99.0.1"))

	sa := env.User(t, serviceAccount[0], serviceAccount[1:]...)
	logs, metrics := startClusterAgent(t, dir, sa, time.Minute)
	initial := keysNow(t, dir)
	if len(initial) == 0 {
		t.Fatalf("no keys from the lab's policies: %s", logs)
	}

	dyn := env.Dynamic(t)
	ctx := context.Background()
	pols := dyn.Resource(cluster.PolicyResource)
	eps := dyn.Resource(cluster.EndpointResource).Namespace("burst")
	update := func(get func() (*unstructured.Unstructured, error), change func(*unstructured.Unstructured), put func(*unstructured.Unstructured) error) {
		t.Helper()
		u, err := get()
		if err != nil {
			t.Fatal(err)
		}
		change(u)
		if err := put(u); err != nil {
			t.Fatal(err)
		}
	}
	updatePolicy := func(name string, change func(*unstructured.Unstructured)) {
		update(func() (*unstructured.Unstructured, error) { return pols.Get(ctx, name, metav1.GetOptions{}) }, change,
			func(u *unstructured.Unstructured) error {
				_, err := pols.Update(ctx, u, metav1.UpdateOptions{})
				return err
			})
	}
	updateEndpoint := func(name string, change func(*unstructured.Unstructured)) {
		update(func() (*unstructured.Unstructured, error) { return eps.Get(ctx, name, metav1.GetOptions{}) }, change,
			func(u *unstructured.Unstructured) error {
				_, err := eps.Update(ctx, u, metav1.UpdateOptions{})
				return err
			})
	}
	for _, step := range []struct {
		name   string
		change func()
		done   func(map[sweep.Key]bool) bool
	}{
		{"policy created", func() { env.Create(t, burstPolicy) },
			func(k map[sweep.Key]bool) bool { return hasKey(k, "10.99.0.1", "203.0.113.0/24") }},
		{"policy changed", func() {
			updatePolicy("burst", func(u *unstructured.Unstructured) {
				_ = unstructured.SetNestedStringSlice(u.Object, []string{"203.0.113.0/25"}, "spec", "destinationCIDRs")
			})
		}, func(k map[sweep.Key]bool) bool {
			return hasKey(k, "10.99.0.1", "203.0.113.0/25") && !hasKey(k, "10.99.0.1", "203.0.113.0/24")
		}},
		{"endpoint appeared", func() { env.Create(t, endpointYAML("burst-2", "burst", "10.99.0.2")) },
			func(k map[sweep.Key]bool) bool { return hasKey(k, "10.99.0.2", "203.0.113.0/25") }},
		{"endpoint IP changed", func() {
			updateEndpoint("burst-2", func(u *unstructured.Unstructured) {
				_ = unstructured.SetNestedSlice(u.Object, []any{map[string]any{"ipv4": "10.99.0.3"}}, "status", "networking", "addressing")
			})
		}, func(k map[sweep.Key]bool) bool {
			return hasKey(k, "10.99.0.3", "203.0.113.0/25") && !hasKey(k, "10.99.0.2", "203.0.113.0/25")
		}},
		{"endpoint labels changed", func() {
			updateEndpoint("burst-2", func(u *unstructured.Unstructured) {
				_ = unstructured.SetNestedStringSlice(u.Object, []string{"k8s:app=other", "k8s:io.kubernetes.pod.namespace=burst"}, "status", "identity", "labels")
			})
		}, func(k map[sweep.Key]bool) bool { return !hasKey(k, "10.99.0.3", "203.0.113.0/25") }},
		{"endpoint deleted", func() {
			if err := eps.Delete(ctx, "burst-1", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, func(k map[sweep.Key]bool) bool { return !hasKey(k, "10.99.0.1", "203.0.113.0/25") }},
		{"burst of 20 endpoints", func() {
			var b strings.Builder
			for i := range 20 {
				b.WriteString("---\n" + endpointYAML(fmt.Sprintf("many-%d", i), "burst", fmt.Sprintf("10.99.1.%d", i)))
			}
			env.Create(t, b.String())
		}, func(k map[sweep.Key]bool) bool { return hasKey(k, "10.99.1.19", "203.0.113.0/25") }},
		{"policy deleted", func() {
			if err := pols.Delete(ctx, "burst", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, func(k map[sweep.Key]bool) bool {
			for key := range k {
				if key.Dest.Addr() == netip.MustParseAddr("203.0.113.0") {
					return false
				}
			}
			return len(k) == len(initial)
		}},
	} {
		reloads := strings.Count(logs.String(), "policy set reloaded")
		start := time.Now()
		step.change()
		took := time.Duration(0)
		// The deadline only bounds a hang: how fast the agent follows is a
		// benchmark's business (BenchmarkAgentCluster), not a test's.
		for deadline := start.Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if step.done(keysNow(t, dir)) {
				took = time.Since(start)
				break
			}
		}
		if took == 0 {
			t.Fatalf("%s: not in the policy map after 60 s\n%s", step.name, logs)
		}
		t.Logf("%s: in the policy map after %s", step.name, took.Round(time.Millisecond))
		// One swap per burst: 20 creations within the debounce window
		// take one or two swaps, not 20.
		if n := strings.Count(logs.String(), "policy set reloaded") - reloads; n > 3 {
			t.Errorf("%s: %d swaps", step.name, n)
		}
	}
	if m := metrics(); !strings.Contains(m, "egwct_cluster_up 1") || !strings.Contains(m, "egwct_cluster_errors_total 0") {
		t.Errorf("metrics:\n%s", m)
	}
}

// TestAgentSurvivesAPIServerRestart: while the API server is down the
// agent keeps sweeping with the last known set, and says so in logs and
// metrics; when it is back, changes flow again.
func TestAgentSurvivesAPIServerRestart(t *testing.T) {
	dir := labDir(t)
	env := k8stest.StartRestartable(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "1000", "--clock", "jiffies", "--hz", "250"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	var manifests []string
	for _, f := range []string{lab.PoliciesFile, lab.EndpointsFile} {
		data, err := os.ReadFile(filepath.Join(dir+".state", f))
		if err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, string(data))
	}
	env.Namespaces(t, append(namespacesOf(manifests[1]), "burst")...)
	env.Create(t, manifests[0])
	env.Create(t, manifests[1])

	logs, metrics := startClusterAgent(t, dir, env.Kubeconfig, 200*time.Millisecond)
	initial := keysNow(t, dir)
	if len(initial) == 0 {
		t.Fatal("no keys")
	}
	sweeps := func() int {
		n := 0
		for _, l := range strings.Split(metrics(), "\n") {
			if v, ok := strings.CutPrefix(l, "egwct_sweeps_total "); ok {
				fmt.Sscan(v, &n)
			}
		}
		return n
	}

	if err := env.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the agent to notice", func() bool {
		return strings.Contains(metrics(), "egwct_cluster_up 0") && strings.Contains(logs.String(), "cannot reach the cluster")
	})
	before := sweeps()
	eventually(t, "sweeps to go on", func() bool { return sweeps() >= before+3 })
	if got := keysNow(t, dir); len(got) != len(initial) {
		t.Errorf("keys changed while the API server was down: %d → %d", len(initial), len(got))
	}

	if err := env.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	env.Create(t, endpointYAML("burst-1", "burst", "10.99.0.1"))
	env.Create(t, burstPolicy)
	for deadline := time.Now().Add(30 * time.Second); !hasKey(keysNow(t, dir), "10.99.0.1", "203.0.113.0/24"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("changes after the restart not applied:\n%s", logs)
		}
	}
	if !strings.Contains(metrics(), "egwct_cluster_up 1") || !strings.Contains(logs.String(), "the cluster is reachable again") {
		t.Errorf("egwct_cluster_up not back to 1:\n%s\n%s", metrics(), logs)
	}
}

// TestAgentClusterErrorsAtStart: an agent that cannot list both kinds at
// start exits 3 and says why.
func TestAgentClusterErrorsAtStart(t *testing.T) {
	env := k8stest.Shared(t)
	bpffs := testutil.PrivateBPFFS(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dead := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(dead, []byte(deadKubeconfig(addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, kubeconfig, want string
	}{
		{"unreachable", dead, "cluster unreachable"},
		{"forbidden", env.User(t, "nobody"), `needs "list" and "watch" on cilium`},
		{"list but not watch", env.Lister(t), `needs "list" and "watch" on cilium`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, _, errOut := run(t, "", "agent", "--from-cluster", "--kubeconfig", tt.kubeconfig, "--request-timeout", "2s",
				"--cilium-version", "1.18.3", "--bpffs", bpffs, "--cilium-state-dir", t.TempDir(), "--metrics-addr", "")
			if code != ExitEnv || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d after %s: %s", code, time.Since(start).Round(time.Millisecond), errOut)
			}
		})
	}
}
