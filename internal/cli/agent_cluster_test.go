package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/k8stest"
	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/sweep"
)

// startClusterAgent runs `egwct agent --from-cluster` on a lab node with
// the given kubeconfig, and a sweep interval long enough that only the
// watches can explain a change seen in the test.
func startClusterAgent(t *testing.T, dir, kubeconfig string, interval time.Duration, opts ...func(*agentOptions)) (logs *testutil.SyncBuffer, metrics func() string) {
	t.Helper()
	a := launchClusterAgent(t, dir, kubeconfig, interval, opts...)
	eventually(t, "the agent to start", func() bool { return strings.Contains(a.logs.String(), "agent started") })
	return a.logs, func() string { _, body := a.get("/metrics"); return body }
}

// launchedAgent is an agent running in the test, as launchClusterAgent
// started it.
type launchedAgent struct {
	logs *testutil.SyncBuffer
	addr string
	done chan struct{} // closed when runAgent returned
}

// get returns the status and body of a path of the agent's metrics
// server, 0 while it does not answer.
func (a *launchedAgent) get(path string) (int, string) {
	resp, err := http.Get("http://" + a.addr + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// launchClusterAgent is startClusterAgent without waiting for the agent
// to start.
func launchClusterAgent(t *testing.T, dir, kubeconfig string, interval time.Duration, opts ...func(*agentOptions)) *launchedAgent {
	t.Helper()
	a := &launchedAgent{logs: &testutil.SyncBuffer{}, addr: freeAddr(t), done: make(chan struct{})}
	o := &agentOptions{
		apply:       applyOptions{io: &IO{Out: io.Discard, ErrOut: a.logs}, Mode: "reclaim"},
		Interval:    interval,
		MetricsAddr: a.addr,
		LogFormat:   "text",
		SyncTimeout: 5 * time.Minute,
	}
	o.apply.node = nodeFlags{BPFFS: dir, CiliumVersion: "1.18.3", StateDir: dir + ".state"}
	o.apply.cluster = clusterOptions{From: true, Namespace: "kube-system", flags: cluster.Flags{Kubeconfig: kubeconfig, Timeout: 5 * time.Second}}
	for _, opt := range opts {
		opt(o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var err error
	go func() {
		err = runAgent(ctx, o)
		close(a.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-a.done
		if err != nil {
			t.Errorf("agent: %v\n%s", err, a.logs)
		}
	})
	return a
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
	createLab(t, env, dir+".state", "burst")
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
	createLab(t, env, dir+".state", "burst")

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
// start exits 3 and says why: at once when it is refused (a bound of 10
// minutes only the test binary's timeout would end), at --sync-timeout
// when the API server does not answer.
func TestAgentClusterErrorsAtStart(t *testing.T) {
	env := k8stest.Shared(t)
	bpffs := testutil.PrivateBPFFS(t)
	kubeconfig := func(addr string) string {
		path := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(path, []byte(deadKubeconfig(addr)), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	api, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, kubeconfig, syncTimeout, want string
	}{
		{"unreachable", kubeconfig(freeAddr(t)), "2s",
			"--sync-timeout: list and watch ciliumegressgatewaypolicies.cilium.io and ciliumendpoints.cilium.io: no first list within 2s: cluster unreachable at https://127.0.0.1:"},
		{"forbidden", env.User(t, "nobody"), "10m", `permission denied: egwct needs "list" and "watch" on cilium`},
		{"not authenticated", kubeconfig(api.Host), "10m", "not authenticated: check the kubeconfig's credentials"},
		{"list but not watch", env.Lister(t), "10m", `permission denied: egwct needs "list" and "watch" on cilium`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := run(t, "", "agent", "--from-cluster", "--kubeconfig", tt.kubeconfig, "--request-timeout", "1s", "--sync-timeout", tt.syncTimeout,
				"--cilium-version", "1.18.3", "--bpffs", bpffs, "--cilium-state-dir", t.TempDir(), "--metrics-addr", "")
			if code != ExitEnv || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, want %d and %q: %s", code, ExitEnv, tt.want, errOut)
			}
		})
	}
	if code, _, errOut := run(t, "", "agent", "--from-cluster", "--sync-timeout", "0s"); code != ExitUsage || !strings.Contains(errOut, "--sync-timeout must be positive") {
		t.Errorf("--sync-timeout 0s: exit %d: %s", code, errOut)
	}
}

// TestAgentWaitsForSlowFirstList: a first list that takes longer than
// --request-timeout (tens of thousands of endpoints, a busy API server)
// is awaited up to --sync-timeout; meanwhile /healthz answers and /readyz
// says not ready, and afterwards the agent sweeps. A proxy in front of
// the API server holds the first request for the endpoints until the
// test lets it go, four request timeouts later.
func TestAgentWaitsForSlowFirstList(t *testing.T) {
	env := k8stest.Shared(t)
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "100", "--clock", "jiffies", "--hz", "250"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	env.Reset(t)
	endpoints := createLab(t, env, dir+".state")

	held, release := make(chan struct{}), make(chan struct{})
	proxy := holdFirst(t, env, "/apis/cilium.io/v2/ciliumendpoints", held, release)
	const requestTimeout = 500 * time.Millisecond
	a := launchClusterAgent(t, dir, proxy, 200*time.Millisecond, func(o *agentOptions) {
		o.apply.cluster.flags.Timeout = requestTimeout
		o.SyncTimeout = 10 * time.Minute
	})
	<-held
	eventually(t, "/healthz to answer", func() bool { code, _ := a.get("/healthz"); return code == http.StatusOK })
	if code, body := a.get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for the first list of the cluster's policies and endpoints") {
		t.Errorf("/readyz while waiting: %d %s", code, body)
	}
	// Not a measurement: only lets --request-timeout pass, four times.
	time.Sleep(4 * requestTimeout)
	select {
	case <-a.done:
		t.Fatalf("the agent stopped while its first list was held:\n%s", a.logs)
	default:
	}
	close(release)
	eventually(t, "the agent to sweep", func() bool {
		code, _ := a.get("/readyz")
		return code == http.StatusOK && len(keysNow(t, dir)) > 0
	})
	logs := a.logs.String()
	for _, want := range []string{
		`msg="waiting for the first list of the cluster's policies and endpoints" sync-timeout=10m0s`,
		`msg="synced with the cluster"`,
		fmt.Sprintf(`endpoints=%d`, endpoints),
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

// TestAgentWaitsForUnreachableAPIServer: while the API server does not
// answer at start the agent waits (up to --sync-timeout), logs each
// failure, shows it in its metrics, is live but not ready, and stops
// cleanly when told to.
func TestAgentWaitsForUnreachableAPIServer(t *testing.T) {
	dead := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(dead, []byte(deadKubeconfig(freeAddr(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	a := launchClusterAgent(t, testutil.PrivateBPFFS(t), dead, time.Minute, func(o *agentOptions) {
		o.apply.node.StateDir = t.TempDir()
		o.SyncTimeout = 10 * time.Minute
	})
	eventually(t, "two failures logged and counted", func() bool {
		_, m := a.get("/metrics")
		return strings.Count(a.logs.String(), "cannot list the cluster yet; waiting for the first list") >= 2 &&
			strings.Contains(m, "egwct_cluster_up 0") && !strings.Contains(m, "egwct_cluster_errors_total 0")
	})
	if code, body := a.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while waiting: %d %s", code, body)
	}
	if code, body := a.get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") {
		t.Errorf("/readyz while waiting: %d %s", code, body)
	}
	// The cleanup stops the agent and wants no error from it.
}

// holdFirst serves the API server of env, as its administrator, on a TLS
// proxy of its own on loopback, and returns a kubeconfig for it. The first
// request for path is held: held is closed when it arrives, and it goes on
// when release is closed.
func holdFirst(t *testing.T, env *k8stest.Env, path string, held, release chan struct{}) string {
	return proxyFirst(t, env, path, func(w http.ResponseWriter, r *http.Request) bool {
		close(held)
		select {
		case <-release:
			return false
		case <-r.Context().Done():
			return true
		}
	})
}

// failFirst is holdFirst whose proxy answers the first request for path
// with the status code instead.
func failFirst(t *testing.T, env *k8stest.Env, path string, code int) string {
	return proxyFirst(t, env, path, func(w http.ResponseWriter, _ *http.Request) bool {
		http.Error(w, http.StatusText(code), code)
		return true
	})
}

// proxyFirst serves the API server of env, as its administrator, on a TLS
// proxy of its own on loopback, and returns a kubeconfig for it. The first
// request for path goes to first, and on to the API server unless first
// answered it (returns true).
func proxyFirst(t *testing.T, env *k8stest.Env, path string, first func(http.ResponseWriter, *http.Request) bool) string {
	t.Helper()
	target, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := rest.TransportFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Header.Del("Authorization") // the proxy's client certificate speaks
		},
		Transport:     rt,
		FlushInterval: -1, // watches stream
	}
	var once sync.Once
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			isFirst := false
			once.Do(func() { isFirst = true })
			if isFirst && first(w, r) {
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(deadKubeconfig(strings.TrimPrefix(srv.URL, "https://"))), 0o600); err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}

// TestAgentWaitsToDetectCilium: without --cilium-version the agent asks
// the cilium DaemonSet for the version at start; an API server that does
// not answer that request (here: a proxy holds it past --request-timeout)
// is asked again, within --sync-timeout, instead of the agent exiting and
// its DaemonSet crash-looping. One that never answers ends the wait at the
// bound, with exit 3.
func TestAgentWaitsToDetectCilium(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	const ns = "cilium-detect"
	env.Namespaces(t, ns)
	env.Create(t, strings.ReplaceAll(ciliumDaemonSet, "NS", ns))
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.17.4", "--flows", "10"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)

	held, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	proxy := holdFirst(t, env, "/apis/apps/v1/namespaces/"+ns+"/daemonsets/cilium", held, release)
	a := launchClusterAgent(t, dir, proxy, 200*time.Millisecond, func(o *agentOptions) {
		o.apply.node.CiliumVersion = ""
		o.apply.cluster.Namespace = ns
		o.apply.cluster.flags.Timeout = 500 * time.Millisecond
		o.SyncTimeout = 10 * time.Minute
	})
	<-held
	defer func() {
		if t.Failed() {
			t.Logf("agent:\n%s", a.logs)
		}
	}()
	eventually(t, "the version detected at the second asking", func() bool {
		return strings.Contains(a.logs.String(), `msg="Cilium version detected" version=v1.17.4`)
	})
	if logs := a.logs.String(); !strings.Contains(logs, `msg="cannot detect Cilium's version yet; asking again"`) {
		t.Errorf("the first failure is not logged:\n%s", logs)
	}
	eventually(t, "the agent to sync", func() bool { return strings.Contains(a.logs.String(), `msg="synced with the cluster"`) })

	t.Run("never answers", func(t *testing.T) {
		dead := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(dead, []byte(deadKubeconfig(freeAddr(t))), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := run(t, "", "agent", "--from-cluster", "--kubeconfig", dead, "--request-timeout", "1s", "--sync-timeout", "2s",
			"--bpffs", dir, "--cilium-state-dir", t.TempDir(), "--metrics-addr", "")
		want := "--sync-timeout: detect the Cilium version: no answer within 2s: "
		if code != ExitEnv || !strings.Contains(errOut, want) || !strings.Contains(errOut, "cluster unreachable") {
			t.Errorf("exit %d, want %d and %q: %s", code, ExitEnv, want, errOut)
		}
	})
}
