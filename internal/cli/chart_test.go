package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
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
	"--set", "prometheus.serviceMonitor.relabelings[0].targetLabel=cluster,prometheus.serviceMonitor.relabelings[0].replacement=test",
	"--set", "prometheus.serviceMonitor.metricRelabelings[0].action=drop,prometheus.serviceMonitor.metricRelabelings[0].sourceLabels[0]=__name__,prometheus.serviceMonitor.metricRelabelings[0].regex=go_.*",
	"--set", "dashboards.enabled=true",
	"--set", "prometheusRule.enabled=true",
	"--set", "admissionPolicy.enabled=true,admissionPolicy.ciliumVersion=1.18,admissionPolicy.validationActions={Warn,Audit}",
	"--set", "image.useDigest=true,image.digest=" + testDigest,
	"--set", "agent.mode=mark,agent.engine=foreach,agent.logFormat=text,agent.interval=30s",
	"--set", "priorityClassName=",
	"--set", "bpf.root=/run/cilium/bpffs,daemon.runPath=/run/cilium",
	"--set", "securityContext.capabilities={SYS_ADMIN,SYS_RESOURCE},securityContext.seccompProfile.type=Unconfined",
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
		// The agent sets GOMEMLIMIT to 90 % of its container's memory
		// limit (TestSetMemoryLimit); one in the env would replace that.
		if slices.Contains(names, "GOMEMLIMIT") {
			t.Errorf("the agent's env %v sets GOMEMLIMIT", names)
		}
		if limit, _, _ := unstructured.NestedString(c, "resources", "limits", "memory"); limit != "256Mi" {
			t.Errorf("the agent's memory limit is %q, want 256Mi", limit)
		}
	}
}

// TestChartAllToggles renders the chart with every toggle on, creates the
// result on an API server of its own (it installs an admission policy;
// the monitoring CRDs are in internal/k8stest/testdata), checks what each
// toggle made, that the admission policy warns of a bad timeout text with
// egwct's message, and
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
		} else {
			// The node label first (the alerts name it), then the value's;
			// the server kept them: the fields are the operator's.
			rel, _, _ := unstructured.NestedSlice(eps[0].(map[string]any), "relabelings")
			met, _, _ := unstructured.NestedSlice(eps[0].(map[string]any), "metricRelabelings")
			if len(rel) != 2 || rel[0].(map[string]any)["targetLabel"] != "node" || rel[1].(map[string]any)["targetLabel"] != "cluster" ||
				len(met) != 1 || met[0].(map[string]any)["action"] != "drop" {
				t.Errorf("ServiceMonitor relabelings %v, metricRelabelings %v", rel, met)
			}
		}
	}
	agent := agentContainer(t, created)
	if img := agent["image"]; img != "ghcr.io/egwct/egwct:v"+chartAppVersion(t)+"@"+testDigest {
		t.Errorf("image %v", img)
	}
	args, _, _ := unstructured.NestedStringSlice(agent, "args")
	for _, want := range []string{"--mode=mark", "--engine=foreach", "--log-format=text", "--interval=30s", "--cilium-namespace=cilium",
		"--bpffs=/run/cilium/bpffs", "--cilium-state-dir=/run/cilium/state"} {
		if !slices.Contains(args, want) {
			t.Errorf("agent args %q lack %s", args, want)
		}
	}
	mounts, _, _ := unstructured.NestedSlice(agent, "volumeMounts")
	var paths []string
	for _, m := range mounts {
		paths = append(paths, m.(map[string]any)["mountPath"].(string))
	}
	if !slices.Equal(paths, []string{"/run/cilium/bpffs", "/run/cilium/state"}) {
		t.Errorf("mounts %v", paths)
	}
	caps, _, _ := unstructured.NestedStringSlice(agent, "securityContext", "capabilities", "add")
	seccomp, _, _ := unstructured.NestedString(agent, "securityContext", "seccompProfile", "type")
	if !slices.Equal(caps, []string{"SYS_ADMIN", "SYS_RESOURCE"}) || seccomp != "Unconfined" {
		t.Errorf("capabilities %v, seccomp %s", caps, seccomp)
	}
	if b := byKind["ValidatingAdmissionPolicyBinding"]; len(b) > 0 {
		acts, _, _ := unstructured.NestedStringSlice(b[0].Object, "spec", "validationActions")
		if !slices.Equal(acts, []string{"Warn", "Audit"}) {
			t.Errorf("validationActions %v, want the value's [Warn Audit]", acts)
		}
	}
	// The policy comes into force once the server has compiled it: the
	// deadline only bounds a hang. Warn, so that checkDeployment may create
	// its invalid policy (the Deny of the default is
	// internal/admission's test).
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
	warned := &warningLog{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = warned
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pols := dyn.Resource(cluster.PolicyResource)
	ctx := context.Background()
	for deadline := time.Now().Add(90 * time.Second); ; {
		if _, err := pols.Create(ctx, u.DeepCopy(), metav1.CreateOptions{}); err != nil {
			t.Fatalf("under Warn the bad policy was refused: %v", err)
		}
		if err := pols.Delete(ctx, "chart-probe", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if w := warned.String(); w != "" {
			if !strings.Contains(w, `unknown key "bpfCtTimeoutRegularTCP"`) {
				t.Errorf("the warning does not carry egwct's message: %s", w)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the chart's admission policy did not warn of a bad timeout text in 90 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkDeployment(t, env, created, "egwct-monitoring", "cilium")
}

// warningLog keeps the warnings the API server sends.
type warningLog struct {
	sync.Mutex
	text []string
}

func (w *warningLog) HandleWarningHeader(_ int, _ string, text string) {
	w.Lock()
	defer w.Unlock()
	w.text = append(w.text, text)
}

func (w *warningLog) String() string {
	w.Lock()
	defer w.Unlock()
	return strings.Join(w.text, "\n")
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
		"agent.mode=delete":                       "mode",
		"agent.intervall=10s":                     "intervall",
		"agent.engine=bpf":                        "engine",
		"agent.interval=10":                       "interval",
		"metrics.port=0":                          "port",
		"image.digest=latest":                     "digest",
		"image.useDigest=true":                    "image.digest",
		"cilium.namespace=Kube_System":            "namespace",
		"prometheus.serviceMonitor.interval=1.5s": "interval",
		"prometheus.podMonitor.metricRelabelings[0].action=delete":        "action",
		"admissionPolicy.validationActions={Deny,Warn}":                   "validationActions",
		"admissionPolicy.validationActions={Block}":                       "validationActions",
		"admissionPolicy.enabled=true":                                    "admissionPolicy.ciliumVersion",
		"bpf.root=sys/fs/bpf":                                             "root",
		"securityContext.seccompProfile.type=None":                        "type",
		"securityContext.capabilities={cap_bpf}":                          "capabilities",
		"admissionPolicy.enabled=true,admissionPolicy.ciliumVersion=1.99": "1.99",
		"prometheusRule.portPressureThreshold=0":                          "portPressureThreshold",
		"prometheusRule.portPressureThreshold=1.5":                        "portPressureThreshold",
		"prometheusRule.portPressureThreshold=80%":                        "portPressureThreshold",
		"resourceQuotas.agent.hard.pods=ten":                              "pods",
		"resourceQuotas.cilium.hard.pods=10k":                             "cilium",
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
			var pos []string
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
					pos = append(pos, f[i])
				}
			}
			if out == "" {
				t.Fatalf("README: %q writes no file this test could apply", line)
			}
			// The renderer, as Go's flag package, wants its flags first.
			files[out] = charttest.Render(t, append(args, pos...)...)
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

// TestChartLint runs helm lint's checks (the Helm Go library's, through
// the renderer's --lint) with the defaults and with every toggle on: no
// warning and no error; and NOTES.txt, as helm install shows it, names
// the release's DaemonSet.
func TestChartLint(t *testing.T) {
	chdirRoot(t)
	for _, args := range [][]string{deployArgs, allToggles} {
		if out, err := charttest.TryRender(t, append([]string{"--lint"}, args...)...); err != nil {
			t.Errorf("lint %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	notes := charttest.Render(t, append([]string{"--notes"}, allToggles...)...)
	for _, want := range []string{"kubectl -n egwct-monitoring rollout status daemonset/egwct", "namespace cilium", "Cilium 1.18", "validationActions Warn,Audit"} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
		}
	}
}

// TestChartEventsOff: with events.enabled=false the agent gets no
// --events and the chart grants nothing for Events or the Lease.
func TestChartEventsOff(t *testing.T) {
	chdirRoot(t)
	objs := parseManifest(t, charttest.Render(t, "-n", "egwct-system", "--set", "events.enabled=false", "deploy/helm/egwct"))
	args, _, _ := unstructured.NestedStringSlice(agentContainer(t, objs), "args")
	for _, a := range args {
		if a == "--events" || strings.HasPrefix(a, "--lease-") {
			t.Errorf("events off, yet the agent gets %s", a)
		}
	}
	for _, o := range objs {
		if strings.HasPrefix(o.GetName(), "egwct-events") {
			t.Errorf("events off, yet the chart makes %s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
		}
	}
	if code, _, errOut := run(t, "", append(args, "--help")...); code != 0 {
		t.Errorf("egwct %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
}

// TestChartAppArmor: the agent runs AppArmor-unconfined (the runtime's
// default profile denies creating and locking files under /sys/fs/bpf,
// where egwct pins its state): with the container's appArmorProfile on
// Kubernetes 1.30 or later, with the annotation the kubelet reads before;
// a Localhost profile by its name; neither with null.
func TestChartAppArmor(t *testing.T) {
	chdirRoot(t)
	const annotation = "container.apparmor.security.beta.kubernetes.io/agent"
	for _, c := range []struct {
		args           []string
		field, annoted string // the container's appArmorProfile.type, the annotation; "" for none
	}{
		{deployArgs, "Unconfined", ""},
		{[]string{"--kube-version", "1.30.0", "deploy/helm/egwct"}, "Unconfined", ""},
		{[]string{"--kube-version", "1.29.0", "deploy/helm/egwct"}, "", "unconfined"},
		{[]string{"--kube-version", "1.29.0", "--set", "securityContext.appArmorProfile.type=Localhost,securityContext.appArmorProfile.localhostProfile=egwct", "deploy/helm/egwct"}, "", "localhost/egwct"},
		{[]string{"--kube-version", "1.29.0", "--set", "securityContext.appArmorProfile.type=RuntimeDefault", "deploy/helm/egwct"}, "", "runtime/default"},
		{[]string{"--set", "securityContext.appArmorProfile=null", "deploy/helm/egwct"}, "", ""},
		{[]string{"--kube-version", "1.29.0", "--set", "securityContext.appArmorProfile=null", "deploy/helm/egwct"}, "", ""},
	} {
		objs := parseManifest(t, charttest.Render(t, c.args...))
		field, _, _ := unstructured.NestedString(agentContainer(t, objs), "securityContext", "appArmorProfile", "type")
		var annoted string
		for _, o := range objs {
			if o.GetKind() == "DaemonSet" {
				annoted, _, _ = unstructured.NestedString(o.Object, "spec", "template", "metadata", "annotations", annotation)
			}
		}
		if field != c.field || annoted != c.annoted {
			t.Errorf("%s: appArmorProfile %q and annotation %q, want %q and %q", strings.Join(c.args, " "), field, annoted, c.field, c.annoted)
		}
	}
	if _, err := charttest.TryRender(t, "--kube-version", "1.29.0", "--set", "securityContext.appArmorProfile.type=Localhost", "deploy/helm/egwct"); err == nil || !strings.Contains(err.Error(), "localhostProfile") {
		t.Errorf("a Localhost profile without its name: %v, want an error naming localhostProfile", err)
	}
}

// TestInstallDocListsEveryValue: docs/install.md names every value of the
// chart's values.yaml, by its path, or by its last name in a row of its
// parent's (`prometheus.serviceMonitor.enabled` (`labels`, ...)).
func TestInstallDocListsEveryValue(t *testing.T) {
	chdirRoot(t)
	doc, err := os.ReadFile("docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("deploy/helm/egwct/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			path := prefix + k
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 && k != "resources" && k != "nodeSelector" && k != "updateStrategy" && k != "seccompProfile" && k != "appArmorProfile" && k != "seLinuxOptions" {
				walk(path+".", sub)
				continue
			}
			parent := strings.TrimSuffix(prefix, ".")
			if !strings.Contains(string(doc), "`"+path+"`") && !(parent != "" && strings.Contains(string(doc), "`"+parent+".") && strings.Contains(string(doc), "`"+k+"`")) {
				t.Errorf("docs/install.md does not name the value %s", path)
			}
		}
	}
	walk("", values)
}

// TestHelmCLI runs the helm CLI itself (hack/helm.sh: the version the
// renderer links, stamped as helm stamps a release) on the chart: helm
// template prints exactly what the renderer prints, with the defaults and
// with every toggle, and for Kubernetes 1.29; helm lint --strict passes
// them; the README's helm install installs the chart on the test API
// server (its DaemonSet and service account are there, the release is
// deployed), and helm uninstall removes it.
func TestHelmCLI(t *testing.T) {
	chdirRoot(t)
	helm := charttest.Helm(t)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(helm, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return string(out)
	}
	// Kubernetes before 1.30 gets the AppArmor annotation (TestChartAppArmor).
	before130 := append([]string{"--kube-version", "1.29.0"}, deployArgs...)
	for _, args := range [][]string{deployArgs, allToggles, before130} {
		chart, flags := args[len(args)-1], args[:len(args)-1]
		got := run(append([]string{"template", "egwct", chart}, flags...)...)
		if want := charttest.Render(t, append([]string{"--name", "egwct"}, args...)...); got != want {
			t.Errorf("helm template %s differs from the renderer's:\n%s", strings.Join(flags, " "), firstDifference(got, want))
		}
		var lint []string
		for i := 0; i < len(flags); i++ {
			if flags[i] == "--api-versions" { // helm lint has no such flag
				i++
				continue
			}
			lint = append(lint, flags[i])
		}
		run(append([]string{"lint", "--strict", chart}, lint...)...)
	}

	// An API server of its own: the README's namespace is the one the
	// other install tests fill on the shared server.
	env := k8stest.Start(t)
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, install, ok := strings.Cut(string(readme), "`helm install ")
	install, _, ok2 := strings.Cut(install, "`")
	if !ok || !ok2 {
		t.Fatal("README.md names no `helm install …` command")
	}
	f := strings.Fields(install)
	ns := ""
	for i := range f[:len(f)-1] {
		if f[i] == "--namespace" || f[i] == "-n" {
			ns = f[i+1]
		}
	}
	if len(f) < 2 || ns == "" {
		t.Fatalf("README's helm install %q: want a release, the chart and --namespace", install)
	}
	release, kc := f[0], []string{"--kubeconfig", env.Kubeconfig}
	out := run(append(append([]string{"install"}, f...), kc...)...)
	if !strings.Contains(out, "STATUS: deployed") {
		t.Errorf("helm install said:\n%s", out)
	}
	ctx := context.Background()
	kube := env.Kube(t)
	if _, err := kube.AppsV1().DaemonSets(ns).Get(ctx, release, metav1.GetOptions{}); err != nil {
		t.Errorf("after helm install: %v", err)
	}
	if _, err := kube.CoreV1().ServiceAccounts(ns).Get(ctx, release, metav1.GetOptions{}); err != nil {
		t.Errorf("after helm install: %v", err)
	}
	run(append([]string{"uninstall", release, "--namespace", ns}, kc...)...)
	if _, err := kube.AppsV1().DaemonSets(ns).Get(ctx, release, metav1.GetOptions{}); err == nil {
		t.Error("the DaemonSet is still there after helm uninstall")
	}
}

// firstDifference shows the first line where two texts differ.
func firstDifference(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < min(len(al), len(bl)); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\n  helm:     %q\n  renderer: %q", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("helm printed %d lines, the renderer %d", len(al), len(bl))
}

// TestChartScrapeAnnotations: the pods carry prometheus.io/scrape only
// when no monitor of the Prometheus operator scrapes them, so that a
// Prometheus that does both does not scrape every agent twice.
func TestChartScrapeAnnotations(t *testing.T) {
	chdirRoot(t)
	for _, c := range []struct {
		set    string
		scrape bool
	}{
		{"", true},
		{"metrics.scrapeAnnotations=false", false},
		{"prometheus.serviceMonitor.enabled=true", false},
		{"prometheus.podMonitor.enabled=true", false},
	} {
		args := []string{"-n", "egwct-system"}
		if c.set != "" {
			args = append(args, "--set", c.set)
		}
		args = append(args, "deploy/helm/egwct")
		var scrape string
		for _, o := range parseManifest(t, charttest.Render(t, args...)) {
			if o.GetKind() == "DaemonSet" {
				scrape, _, _ = unstructured.NestedString(o.Object, "spec", "template", "metadata", "annotations", "prometheus.io/scrape")
			}
		}
		if got := scrape == "true"; got != c.scrape {
			t.Errorf("--set %q: prometheus.io/scrape %q, want it %v", c.set, scrape, c.scrape)
		}
	}
}

// TestChartSELinux: the agent runs as spc_t (container_t may not use
// bpf() on SELinux nodes), another type when set, none with null.
func TestChartSELinux(t *testing.T) {
	chdirRoot(t)
	for _, c := range []struct {
		set         string
		typ, level  string
		wantOptions bool
	}{
		{"", "spc_t", "s0", true},
		{"securityContext.seLinuxOptions.type=egwct_t", "egwct_t", "s0", true},
		{"securityContext.seLinuxOptions=null", "", "", false},
	} {
		args := []string{"-n", "egwct-system"}
		if c.set != "" {
			args = append(args, "--set", c.set)
		}
		args = append(args, "deploy/helm/egwct")
		opts, found, _ := unstructured.NestedStringMap(agentContainer(t, parseManifest(t, charttest.Render(t, args...))), "securityContext", "seLinuxOptions")
		if found != c.wantOptions || opts["type"] != c.typ || opts["level"] != c.level {
			t.Errorf("--set %q: seLinuxOptions %v (set: %v), want type %q level %q", c.set, opts, found, c.typ, c.level)
		}
	}
}

// gkeAdmission limits the system-* priority classes as GKE's admission
// configuration does: a pod of one is admitted only in a namespace with a
// ResourceQuota whose scope matches its class.
const gkeAdmission = `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: ResourceQuota
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: ResourceQuotaConfiguration
    limitedResources:
    - resource: pods
      matchScopes:
      - scopeName: PriorityClass
        operator: In
        values: [system-node-critical, system-cluster-critical]
`

// TestChartResourceQuota: with resourceQuotas.enabled the chart makes a
// ResourceQuota whose scope is the agent's priorityClassName (none by
// default; refused without a class). On an API server whose admission
// configuration limits system-node-critical, as GKE's does, the agent's
// pod is refused without the quota and admitted with it.
func TestChartResourceQuota(t *testing.T) {
	chdirRoot(t)
	quotas := func(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
		var out []*unstructured.Unstructured
		for _, o := range objs {
			if o.GetKind() == "ResourceQuota" {
				out = append(out, o)
			}
		}
		return out
	}
	for _, c := range []struct {
		set   string
		class string // the quota's scope; "" for no quota
		pods  string
	}{
		{"", "", ""},
		{"resourceQuotas.enabled=true", "system-node-critical", "10k"},
		{"resourceQuotas.enabled=true,priorityClassName=egwct-critical,resourceQuotas.agent.hard.pods=500", "egwct-critical", "500"},
	} {
		args := []string{"-n", "egwct-system"}
		if c.set != "" {
			args = append(args, "--set", c.set)
		}
		q := quotas(parseManifest(t, charttest.Render(t, append(args, "deploy/helm/egwct")...)))
		if c.class == "" {
			if len(q) != 0 {
				t.Errorf("--set %q: %d ResourceQuotas, want none", c.set, len(q))
			}
			continue
		}
		if len(q) != 1 {
			t.Fatalf("--set %q: %d ResourceQuotas, want one", c.set, len(q))
		}
		exprs, _, _ := unstructured.NestedSlice(q[0].Object, "spec", "scopeSelector", "matchExpressions")
		pods, _, _ := unstructured.NestedString(q[0].Object, "spec", "hard", "pods")
		if len(exprs) != 1 || fmt.Sprint(exprs[0]) != fmt.Sprint(map[string]any{"operator": "In", "scopeName": "PriorityClass", "values": []any{c.class}}) || pods != c.pods {
			t.Errorf("--set %q: scope %v, pods %q; want PriorityClass In [%s], %s", c.set, exprs, pods, c.class, c.pods)
		}
	}
	if _, err := charttest.TryRender(t, "--set", "resourceQuotas.enabled=true,priorityClassName=", "deploy/helm/egwct"); err == nil || !strings.Contains(err.Error(), "priorityClassName") {
		t.Errorf("a quota without a priority class: %v, want an error naming priorityClassName", err)
	}
	// Without a count the quota's pods would be null, which the API
	// server reads as 0: every agent pod refused.
	for _, set := range []string{"resourceQuotas.agent.hard.pods=null", "resourceQuotas.agent.hard=null", "resourceQuotas.agent=null"} {
		if _, err := charttest.TryRender(t, "--set", "resourceQuotas.enabled=true,"+set, "deploy/helm/egwct"); err == nil || !strings.Contains(err.Error(), "schema") {
			t.Errorf("--set %s: %v, want the schema to refuse it", set, err)
		}
	}

	env := k8stest.StartWithAdmission(t, gkeAdmission)
	ctx := context.Background()
	kube := env.Kube(t)
	const ns = "egwct-system"
	created := env.Create(t, charttest.Render(t, deployArgs...))
	var pod corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(agentPodTemplate(t, created), &pod); err != nil {
		t.Fatal(err)
	}
	pod.Namespace, pod.Name = ns, "egwct-probe"
	if pod.Spec.PriorityClassName != "system-node-critical" {
		t.Fatalf("the agent's priority class is %q, want system-node-critical", pod.Spec.PriorityClassName)
	}
	_, err := kube.CoreV1().Pods(ns).Create(ctx, &pod, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "insufficient quota to match these scopes") {
		t.Fatalf("the agent's pod without a quota: %v, want it refused for want of a quota", err)
	}
	created = env.Create(t, charttest.Render(t, append([]string{"--set", "resourceQuotas.enabled=true"}, deployArgs...)...))
	q := quotas(created)
	if len(q) != 1 {
		t.Fatalf("%d ResourceQuotas created, want one", len(q))
	}
	// No controller manager here: give the quota the status its
	// controller would, which the admission plugin needs.
	rq, err := kube.CoreV1().ResourceQuotas(ns).Get(ctx, q[0].GetName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rq.Status.Hard = rq.Spec.Hard
	rq.Status.Used = corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}
	if _, err := kube.CoreV1().ResourceQuotas(ns).UpdateStatus(ctx, rq, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Pods(ns).Create(ctx, &pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the agent's pod beside the chart's quota: %v", err)
	}
	rq, err = kube.CoreV1().ResourceQuotas(ns).Get(ctx, q[0].GetName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if used := rq.Status.Used[corev1.ResourcePods]; used.Value() != 1 {
		t.Errorf("the quota counts %s pods, want the agent's 1", used.String())
	}
}

// agentPodTemplate returns the DaemonSet's pod template from a rendered
// or created manifest.
func agentPodTemplate(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "DaemonSet" {
			tpl, _, _ := unstructured.NestedMap(o.Object, "spec", "template")
			return tpl
		}
	}
	t.Fatal("no DaemonSet")
	return nil
}
