package cli

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/egwct/egwct/internal/charttest"
	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/k8stest"
)

// deployArgs render deploy/egwct.yaml from the chart: its defaults, in
// egwct-system, with the Namespace object kubectl apply needs (make deploy).
var deployArgs = []string{"-n", "egwct-system", "--set", "namespace.create=true", "deploy/helm/egwct"}

// testDigest is an image digest for the tests.
var testDigest = "sha256:" + strings.Repeat("ab", 32)

// allToggles turn on everything the chart can add, in namespaces other
// than the defaults, with every agent flag changed.
var allToggles = []string{"-n", "egwct-monitoring", "--api-versions", "monitoring.coreos.com/v1",
	"--set", "namespace.create=true",
	"--set", "cilium.namespace=cilium",
	"--set", "prometheus.serviceMonitor.enabled=true,prometheus.serviceMonitor.interval=30s",
	"--set", "prometheus.podMonitor.enabled=true",
	"--set", "dashboards.enabled=true",
	"--set", "prometheusRule.enabled=true",
	"--set", "admissionPolicy.enabled=true,admissionPolicy.ciliumVersion=1.18",
	"--set", "image.useDigest=true,image.digest=" + testDigest,
	"--set", "agent.mode=mark,agent.engine=foreach,agent.logFormat=text,agent.interval=30s",
	"--set", "priorityClassName=",
	"deploy/helm/egwct"}

// TestDeployIsTheChart: deploy/egwct.yaml is the chart rendered with its
// defaults (make deploy, part of make docs, regenerates it).
func TestDeployIsTheChart(t *testing.T) {
	chdirRoot(t)
	got, err := os.ReadFile("deploy/egwct.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := charttest.Render(t, deployArgs...); string(got) != want {
		t.Fatal("deploy/egwct.yaml is not the chart rendered with its defaults: run `make deploy` and commit the result")
	}
}

// agentContainer returns the DaemonSet's agent container from a rendered or
// created manifest.
func agentContainer(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "DaemonSet" {
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			return cs[0].(map[string]any)
		}
	}
	t.Fatal("no DaemonSet")
	return nil
}

// parseManifest reads a multi-document manifest without a server.
func parseManifest(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, doc := range strings.Split(manifest, "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("rendered manifest: %v\n%s", err, doc)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
	return out
}

// TestChartArgsAreAgentFlags: the agent's args, as the chart renders them
// with its defaults and with every value changed, are flags egwct agent
// accepts with values of their types (cobra parses them before --help).
func TestChartArgsAreAgentFlags(t *testing.T) {
	chdirRoot(t)
	for _, args := range [][]string{deployArgs, allToggles} {
		c := agentContainer(t, parseManifest(t, charttest.Render(t, args...)))
		flags, _, _ := unstructured.NestedStringSlice(c, "args")
		if len(flags) == 0 || flags[0] != "agent" {
			t.Fatalf("args %q do not start with agent", flags)
		}
		if code, _, errOut := run(t, "", append(flags, "--help")...); code != 0 {
			t.Errorf("egwct %s: exit %d: %s", strings.Join(flags, " "), code, errOut)
		}
		env, _, _ := unstructured.NestedSlice(c, "env")
		var names []string
		for _, e := range env {
			names = append(names, e.(map[string]any)["name"].(string))
		}
		// The agent's identity, namespace and node, from the downward API.
		for _, want := range []string{"POD_NAME", "POD_NAMESPACE", "NODE_NAME"} {
			if !slices.Contains(names, want) {
				t.Errorf("the agent's env %v lacks %s", names, want)
			}
		}
	}
}

// TestChartAllToggles renders the chart with every toggle on, creates the
// result on an API server of its own (it installs an admission policy;
// the monitoring CRDs are in internal/k8stest/testdata), checks what each
// toggle made, that the admission policy refuses a bad timeout text, and
// runs the least-privilege checks of deploy/egwct.yaml on it: Cilium's
// namespace comes from the value, in the Role and in the agent's flags.
func TestChartAllToggles(t *testing.T) {
	chdirRoot(t)
	manifest := charttest.Render(t, allToggles...)
	env := k8stest.Start(t)
	env.Namespaces(t, "cilium")
	created := env.Create(t, manifest)
	byKind := map[string][]*unstructured.Unstructured{}
	for _, o := range created {
		byKind[o.GetKind()] = append(byKind[o.GetKind()], o)
	}
	for _, kind := range []string{"ServiceMonitor", "PodMonitor", "PrometheusRule", "Service", "ConfigMap", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		if len(byKind[kind]) == 0 {
			t.Errorf("no %s", kind)
		}
	}
	for _, cm := range byKind["ConfigMap"] {
		if cm.GetLabels()["grafana_dashboard"] != "1" {
			t.Errorf("ConfigMap %s is not labelled for Grafana's sidecar: %v", cm.GetName(), cm.GetLabels())
		}
	}
	if sm := byKind["ServiceMonitor"]; len(sm) > 0 {
		eps, _, _ := unstructured.NestedSlice(sm[0].Object, "spec", "endpoints")
		if len(eps) != 1 || eps[0].(map[string]any)["interval"] != "30s" {
			t.Errorf("ServiceMonitor endpoints %v, want one every 30s", eps)
		}
	}
	agent := agentContainer(t, created)
	if img := agent["image"]; img != "ghcr.io/egwct/egwct:v"+chartAppVersion(t)+"@"+testDigest {
		t.Errorf("image %v", img)
	}
	args, _, _ := unstructured.NestedStringSlice(agent, "args")
	for _, want := range []string{"--mode=mark", "--engine=foreach", "--log-format=text", "--interval=30s", "--cilium-namespace=cilium"} {
		if !slices.Contains(args, want) {
			t.Errorf("agent args %q lack %s", args, want)
		}
	}
	if b := byKind["ValidatingAdmissionPolicyBinding"]; len(b) > 0 {
		acts, _, _ := unstructured.NestedStringSlice(b[0].Object, "spec", "validationActions")
		if !slices.Equal(acts, []string{"Deny"}) {
			t.Errorf("validationActions %v, want the default [Deny]", acts)
		}
	}
	// The policy comes into force once the server has compiled it: the
	// deadline only bounds a hang.
	bad := `apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: chart-probe
  annotations:
    egwct.io/connection-timeouts: |
      bpfCtTimeoutRegularTCP: 5m
spec:
  selectors: [{podSelector: {matchLabels: {app: x}}}]
  destinationCIDRs: ["0.0.0.0/0"]
  egressGateway: {nodeSelector: {matchLabels: {egress: "true"}}}
`
	u := parseManifest(t, bad)[0]
	pols := env.Dynamic(t).Resource(cluster.PolicyResource)
	ctx := context.Background()
	for deadline := time.Now().Add(90 * time.Second); ; {
		_, err := pols.Create(ctx, u, metav1.CreateOptions{})
		if err != nil {
			if !strings.Contains(err.Error(), `unknown key "bpfCtTimeoutRegularTCP"`) {
				t.Errorf("the bad policy was refused without egwct's message: %v", err)
			}
			break
		}
		_ = pols.Delete(ctx, "chart-probe", metav1.DeleteOptions{})
		if time.Now().After(deadline) {
			t.Fatal("the chart's admission policy did not refuse a bad timeout text in 90 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkDeployment(t, env, created, "egwct-monitoring", "cilium")
}

// chartAppVersion is the chart's appVersion.
func chartAppVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("deploy/helm/egwct/Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "appVersion:"); ok {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	t.Fatal("Chart.yaml has no appVersion")
	return ""
}

// TestChartRefusesBadValues: values.schema.json (or the templates, for
// what a schema cannot say) refuses a misspelt or wrong value, naming it.
func TestChartRefusesBadValues(t *testing.T) {
	chdirRoot(t)
	for set, want := range map[string]string{
		"agent.mode=delete":                             "mode",
		"agent.intervall=10s":                           "intervall",
		"agent.engine=bpf":                              "engine",
		"agent.interval=10":                             "interval",
		"metrics.port=0":                                "port",
		"image.digest=latest":                           "digest",
		"image.useDigest=true":                          "image.digest",
		"cilium.namespace=Kube_System":                  "namespace",
		"prometheus.serviceMonitor.interval=1.5s":       "interval",
		"admissionPolicy.validationActions={Deny,Warn}": "validationActions",
		"admissionPolicy.validationActions={Block}":     "validationActions",
		"admissionPolicy.enabled=true":                  "admissionPolicy.ciliumVersion",
		"admissionPolicy.enabled=true,admissionPolicy.ciliumVersion=1.99": "1.99",
	} {
		_, err := charttest.TryRender(t, "--set", set, "deploy/helm/egwct")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: %v, want an error naming %s", set, err, want)
		}
	}
}

// TestReadmeInstall runs the commands of README's "Install on a cluster"
// on the test API server: helm template with the Helm Go library (the
// renderer of hack/chart.sh, given the same arguments) instead of a helm
// binary, kubectl apply -f as Create. A command it does not know fails
// the test, so the README cannot gain a step nobody ran. Then the
// least-privilege checks run on what was created.
func TestReadmeInstall(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	chdirRoot(t)
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "### Install on a cluster")
	_, block, ok2 := strings.Cut(after, "```sh\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no sh block under ### Install on a cluster")
	}
	files := map[string]string{}
	var created []*unstructured.Unstructured
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "helm" && f[1] == "template":
			args := []string{"--name", f[2]}
			out := ""
			for i := 3; i < len(f); i++ {
				switch {
				case (f[i] == "--namespace" || f[i] == "-n") && i+1 < len(f):
					args = append(args, "-n", f[i+1])
					i++
				case f[i] == "--set" && i+1 < len(f):
					args = append(args, "--set", f[i+1])
					i++
				case f[i] == ">" && i+1 < len(f):
					out = f[i+1]
					i++
				case strings.HasPrefix(f[i], "-"):
					t.Fatalf("README: helm template flag %s is not known to this test", f[i])
				default:
					args = append(args, f[i])
				}
			}
			if out == "" {
				t.Fatalf("README: %q writes no file this test could apply", line)
			}
			files[out] = charttest.Render(t, args...)
		case len(f) == 4 && f[0] == "kubectl" && f[1] == "apply" && f[2] == "-f":
			m, ok := files[f[3]]
			if !ok {
				data, err := os.ReadFile(f[3])
				if err != nil {
					t.Fatalf("README: kubectl apply -f %s: neither written before nor in the repository", f[3])
				}
				m = string(data)
			}
			created = append(created, env.Create(t, m)...)
		default:
			t.Fatalf("README: %q is not a command this test knows how to run", line)
		}
	}
	if len(created) == 0 {
		t.Fatal("README's install created nothing")
	}
	checkDeployment(t, env, created, "egwct-system", "kube-system")
}
