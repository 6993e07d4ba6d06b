package cli

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/k8stest"
	"github.com/egwct/egwct/internal/lab"
	"github.com/egwct/egwct/internal/printer"
)

func TestMain(m *testing.M) {
	code := m.Run()
	k8stest.StopShared()
	os.Exit(code)
}

const clusterPolicies = `apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: crawler-egress
  annotations:
    egwct.io/connection-timeouts: |
      bpfCtTimeoutRegularTcp: 5m
      bpfCtTimeoutRegularTCPFin: 10s
spec:
  selectors:
  - podSelector:
      matchLabels:
        app: crawler
  destinationCIDRs:
  - 0.0.0.0/0
  egressGateway:
    nodeSelector:
      matchLabels:
        egress-gateway: "true"
---
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: payments-egress
  annotations:
    egwct.io/connection-timeouts: |
      bpfCtTimeoutRegularTcp: 300s
spec:
  selectors:
  - podSelector:
      matchLabels:
        app: payments
  destinationCIDRs:
  - 192.0.2.0/24
  egressGateway:
    nodeSelector:
      matchLabels:
        egress-gateway: "true"
`

// TestValidateFromCluster runs validate --from-cluster against a real API
// server: findings name the object (cegp/NAME) and the line of the key in
// the object's YAML; exit codes are those of files.
func TestValidateFromCluster(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	env.Create(t, clusterPolicies)
	kc := []string{"--from-cluster", "--kubeconfig", env.Kubeconfig, "--cilium-version", "1.18.3"}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want []string
		not  []string
	}{
		{"text", kc, 1, []string{"cegp/crawler-egress:", "unknown-key", "bpfCtTimeoutRegularTcpFin", "2 policies"}, []string{"cegp/payments-egress:6:7: error"}},
		{"json", append([]string{"-o", "json"}, kc...), 1, []string{`"file": "cegp/crawler-egress"`, `"rule": "unknown-key"`}, nil},
		{"with files", append([]string{"examples/valid/payments-egress.yaml"}, kc...), 1, []string{"cegp/crawler-egress:", "3 policies"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			chdirRoot(t)
			code, out, errOut := run(t, "", append([]string{"validate"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}

	// The line of the finding is the line of the key in the object.
	_, out, _ := run(t, "", append([]string{"validate", "-o", "json"}, kc...)...)
	var rep struct {
		Findings []struct {
			File, Rule, Key string
			Line, Column    int
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range rep.Findings {
		if f.Rule == "unknown-key" {
			found = true
			if f.File != "cegp/crawler-egress" || f.Line < 3 || f.Column < 5 {
				t.Errorf("finding at %s:%d:%d", f.File, f.Line, f.Column)
			}
		}
	}
	if !found {
		t.Errorf("no unknown-key finding: %s", out)
	}

	// Only valid policies: exit 0.
	env.Reset(t)
	env.Create(t, strings.SplitN(clusterPolicies, "---\n", 2)[1])
	if code, out, errOut := run(t, "", append([]string{"validate"}, kc...)...); code != 0 {
		t.Errorf("valid policies: exit %d: %s %s", code, out, errOut)
	}
}

// TestFromClusterErrors: an unreachable cluster and a missing permission
// are environment errors (exit 3) that say what failed.
func TestFromClusterErrors(t *testing.T) {
	env := k8stest.Shared(t)
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
	nobody := env.User(t, "nobody")
	for _, tt := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"validate unreachable", []string{"validate", "--from-cluster", "--kubeconfig", dead, "--cilium-version", "1.18"}, ExitEnv, []string{"cluster unreachable at https://" + addr}},
		{"apply unreachable", []string{"apply", "--from-cluster", "--kubeconfig", dead, "--cilium-version", "1.18", "--bpffs", t.TempDir(), "--cilium-state-dir", t.TempDir()}, ExitEnv, []string{"cluster unreachable"}},
		{"forbidden", []string{"validate", "--from-cluster", "--kubeconfig", nobody, "--cilium-version", "1.18"}, ExitEnv, []string{`needs "list" on ciliumegressgatewaypolicies.cilium.io`, `User "nobody"`}},
		{"unknown context", []string{"validate", "--from-cluster", "--kubeconfig", nobody, "--context", "nope", "--cilium-version", "1.18"}, ExitEnv, []string{"nope"}},
		{"no input", []string{"validate", "--cilium-version", "1.18"}, ExitUsage, []string{"--from-cluster"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, "", tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d: %s %s", code, tt.code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q: %s", w, errOut)
				}
			}
		})
	}
}

func deadKubeconfig(addr string) string {
	return "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://" + addr +
		"\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n"
}

// TestApplyFromClusterEqualsFiles: on a lab node, apply --from-cluster
// with the lab's policies and endpoints created on the API server does
// what apply -f with the same objects in files does.
func TestApplyFromClusterEqualsFiles(t *testing.T) {
	env := k8stest.Shared(t)
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "3000", "--clock", "jiffies", "--hz", "250"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	state := dir + ".state"
	node := []string{"--bpffs", dir, "--cilium-state-dir", state, "--cilium-version", "1.18.3"}

	env.Reset(t)
	createLab(t, env, state)

	// The preview counts entries by the datapath's clock: when a clock unit
	// passes between the two runs an entry at its timeout's edge counts in
	// one and not the other, so a differing pair is run once more.
	var code int
	var fromFiles, errFiles, fromCluster, errCluster string
	for try := 0; try < 3; try++ {
		_, fromFiles, errFiles = run(t, "", append([]string{"apply", "--dry-run", "-f", filepath.Join(state, "manifests")}, node...)...)
		code, fromCluster, errCluster = run(t, "", append([]string{"apply", "--dry-run", "--from-cluster", "--kubeconfig", env.Kubeconfig}, node...)...)
		if code != 0 || (fromCluster == fromFiles && errCluster == errFiles) {
			break
		}
	}
	if code != 0 || fromCluster != fromFiles || errCluster != errFiles {
		t.Fatalf("dry run from the cluster (exit %d):\n%s%s\nfrom files:\n%s%s", code, fromCluster, errCluster, fromFiles, errFiles)
	}
	if !strings.Contains(fromCluster, "EXPIRE NOW") {
		t.Fatalf("no preview: %s", fromCluster)
	}

	code, out, errOut := run(t, "", append([]string{"apply", "-o", "json", "--from-cluster", "--kubeconfig", env.Kubeconfig}, node...)...)
	if code != 0 {
		t.Fatalf("apply --from-cluster: exit %d: %s", code, errOut)
	}
	var rows []printer.AppliedPolicy
	if err := unmarshalApply(out, &rows); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var expired, keys uint64
	for _, r := range rows {
		expired += r.Expired
		keys += uint64(r.Keys)
	}
	if len(rows) == 0 || keys == 0 || expired == 0 {
		t.Errorf("apply --from-cluster did nothing: %+v", rows)
	}
}

// namespacesOf lists the namespaces named in a manifest.
// createLab creates the policies and endpoints of the lab node whose state
// folder is state in env (and the endpoints' namespaces, and more), and
// returns how many endpoints it created.
func createLab(t *testing.T, env *k8stest.Env, state string, more ...string) int {
	t.Helper()
	var manifests []string
	for _, f := range []string{lab.PoliciesFile, lab.EndpointsFile} {
		data, err := os.ReadFile(filepath.Join(state, f))
		if err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, string(data))
	}
	env.Namespaces(t, append(namespacesOf(manifests[1]), more...)...)
	env.Create(t, manifests[0])
	return len(env.Create(t, manifests[1]))
}

func namespacesOf(manifest string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range strings.Split(manifest, "\n") {
		if ns, ok := strings.CutPrefix(strings.TrimSpace(l), "namespace: "); ok && !seen[ns] {
			seen[ns] = true
			out = append(out, ns)
		}
	}
	return out
}

const ciliumDaemonSet = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: cilium
  namespace: NS
spec:
  selector:
    matchLabels: {k8s-app: cilium}
  template:
    metadata:
      labels: {k8s-app: cilium}
    spec:
      containers:
      - name: cilium-agent
        image: quay.io/cilium/cilium:v1.17.4@sha256:0123456789abcdef
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cilium-config
  namespace: NS
data:
  bpf-ct-timeout-regular-tcp: 1h
`

// TestValidateDetectsCilium: without --cilium-version, validate
// --from-cluster takes the version from the cilium DaemonSet's image and
// the node timeouts from cilium-config, and says so.
func TestValidateDetectsCilium(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	env.Namespaces(t, "cilium-test", "empty")
	env.Create(t, strings.ReplaceAll(ciliumDaemonSet, "NS", "cilium-test"))
	env.Create(t, `apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: long
  annotations:
    egwct.io/connection-timeouts: |
      bpfCtTimeoutRegularTcp: 2h
spec:
  selectors: [{podSelector: {}}]
  destinationCIDRs: [0.0.0.0/0]
`)
	kc := []string{"validate", "--from-cluster", "--kubeconfig", env.Kubeconfig}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"detected", []string{"--cilium-namespace", "cilium-test"}, ExitFindings, []string{
			"version from image quay.io/cilium/cilium:v1.17.4@sha256:0123456789abcdef of daemonset cilium-test/cilium",
			"configmap/cilium-test/cilium-config", "above-node-timeout"}},
		{"flag wins", []string{"--cilium-namespace", "cilium-test", "--cilium-version", "1.18.3"}, ExitOK, []string{"version from --cilium-version"}},
		{"no daemonset", []string{"--cilium-namespace", "empty"}, ExitEnv, []string{"no Cilium DaemonSet in namespace empty"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, "", append(kc, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d: %s %s", code, tt.code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out+errOut, w) {
					t.Errorf("output lacks %q: %s %s", w, out, errOut)
				}
			}
		})
	}
}

// TestApplyDetectsCilium: apply --from-cluster without --cilium-version
// takes the version from the cilium DaemonSet, and the node timeouts from
// cilium-config only when the node has no agent-runtime-config.json.
func TestApplyDetectsCilium(t *testing.T) {
	env := k8stest.Shared(t)
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.17.4", "--flows", "1000"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	env.Reset(t)
	env.Namespaces(t, "cilium-apply")
	// 3h: longer than every lab policy's timeout.
	env.Create(t, strings.NewReplacer("NS", "cilium-apply", "regular-tcp: 1h", "regular-tcp: 3h").Replace(ciliumDaemonSet))
	state := dir + ".state"
	data, err := os.ReadFile(filepath.Join(state, lab.PoliciesFile))
	if err != nil {
		t.Fatal(err)
	}
	env.Create(t, string(data))

	args := []string{"apply", "--dry-run", "--from-cluster", "--kubeconfig", env.Kubeconfig, "--cilium-namespace", "cilium-apply", "--bpffs", dir, "--clock", "ktime"}
	for _, tt := range []struct {
		name, stateDir string
		want, not      []string
	}{
		{"no local file", t.TempDir(), []string{"# Cilium v1.17.4, from the image", "# node timeouts from configmap/cilium-apply/cilium-config"}, nil},
		{"local file wins", state, []string{"# Cilium v1.17.4, from the image"}, []string{"configmap/"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, "", append(args, "--cilium-state-dir", tt.stateDir)...)
			if code != 0 {
				t.Fatalf("exit %d: %s %s", code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q: %s", w, errOut)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(errOut, w) {
					t.Errorf("stderr has %q: %s", w, errOut)
				}
			}
		})
	}
}

// TestUseConfigMapNodePorts: the node's agent-runtime-config.json wins,
// but where it does not say the node-port range (later Cilium versions
// keep it out of the file) the cilium-config ConfigMap's range is used;
// a node without the file takes everything from the ConfigMap.
func TestUseConfigMapNodePorts(t *testing.T) {
	const cm = "kind: ConfigMap\ndata:\n  node-port-range: \"30000,39999\"\n  bpf-ct-timeout-regular-tcp: 2h\n"
	for _, c := range []struct {
		name, file, configMap string
		capacity              int
		from                  string
	}{
		{"file without a range", `{"ClockSource": 0}`, cm, 25536, ""},
		{"file with a range", `{"ClockSource": 0, "NodePortMin": 30000, "NodePortMax": 32767}`, cm, 32768, ""},
		{"no file", "", cm, 25536, "configmap/kube-system/cilium-config"},
		{"file, ConfigMap unreadable", `{"ClockSource": 0}`, "kind: ConfigMap\ndata:\n  node-port-range: 30000-39999\n", 32768, ""},
		{"neither says", `{"ClockSource": 0}`, "kind: ConfigMap\ndata: {}\n", 32768, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			state := t.TempDir()
			if c.file != "" {
				if err := os.WriteFile(filepath.Join(state, "agent-runtime-config.json"), []byte(c.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			n, err := (&nodeFlags{CiliumVersion: "1.18.3", StateDir: state}).open()
			if err != nil {
				t.Fatal(err)
			}
			from, err := n.useConfigMap(&cluster.Cilium{Config: []byte(c.configMap), ConfigFrom: "configmap/kube-system/cilium-config"})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := n.Config.PortCapacity(32768); got != c.capacity || from != c.from {
				t.Errorf("capacity %d from %q, want %d from %q", got, from, c.capacity, c.from)
			}
		})
	}
}
