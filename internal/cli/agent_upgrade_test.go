package cli

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/k8stest"
	"github.com/egwct/egwct/pkg/sweep"
)

const upgradePolicy = `apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: upgrade-misspelt
  annotations:
    egwct.io/connection-timeouts: |
      bpfCtTimeoutRegularTCP: 5m
spec:
  selectors:
  - podSelector: {matchLabels: {app: upgrade}}
  destinationCIDRs: ["192.0.2.0/24"]
`

// setCiliumImage sets the image of the cilium DaemonSet's agent, as a
// Cilium upgrade (helm upgrade) does before any pod restarts.
func setCiliumImage(t *testing.T, env *k8stest.Env, ns, image string) {
	t.Helper()
	ctx := context.Background()
	dss := env.Dynamic(t).Resource(cluster.DaemonSetResource).Namespace(ns)
	ds, err := dss.Get(ctx, cluster.DaemonSetName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cs, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "containers")
	cs[0].(map[string]any)["image"] = image
	if err := unstructured.SetNestedSlice(ds.Object, cs, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
	if _, err := dss.Update(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// counterValue is the value of an unlabelled metric in a scrape, -1 when
// it is missing.
func counterValue(scrape, name string) float64 {
	for _, l := range strings.Split(scrape, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// TestAgentFollowsCiliumUpgrade: `egwct agent --from-cluster`, as the
// service account of deploy/egwct.yaml, started on a 1.19 node against a
// cilium DaemonSet of v1.19.5, follows an in-place upgrade: the
// DaemonSet's image turns v1.20.2 (nothing happens: this node's Cilium has
// not restarted), then Cilium restarts on the node and rewrites
// agent-runtime-config.json; the agent detects the version again, logs
// the change, judges the policies for 1.20.2 and sweeps on with the 1.20
// profile; the node-port range changed in cilium-config with it is
// followed too (the port capacity of the metric and of top).
func TestAgentFollowsCiliumUpgrade(t *testing.T) {
	env := k8stest.Shared(t)
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.19.5", "--flows", "100"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	env.Reset(t)
	deploy(t, env)
	// Other tests of the shared server read this DaemonSet too: its image
	// is put back.
	ds := env.Create(t, strings.ReplaceAll(ciliumDaemonSet, "NS", "kube-system"))[0]
	image := cluster.AgentImage(ds)
	t.Cleanup(func() { setCiliumImage(t, env, "kube-system", image) })
	setCiliumImage(t, env, "kube-system", "quay.io/cilium/cilium:v1.19.5")
	env.Create(t, upgradePolicy)
	// The node-port range is in cilium-config only: a 1.19 node's
	// agent-runtime-config.json has none.
	setCiliumConfig(t, env, "kube-system", "node-port-range", "30000,40000")
	sa := env.User(t, serviceAccount[0], serviceAccount[1:]...)
	logs, metrics := startClusterAgent(t, dir, sa, 200*time.Millisecond, func(o *agentOptions) { o.apply.node.CiliumVersion = "" })
	if !strings.Contains(logs.String(), "profile=1.19") {
		t.Fatalf("the agent did not start with profile 1.19:\n%s", logs)
	}
	// The first sweep read the node's settings as they were at start.
	eventually(t, "a sweep", func() bool { return counterValue(metrics(), "egwct_sweeps_total") >= 1 })
	outcome := func() string {
		st, err := sweep.OpenStateReadOnly(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		outs, err := st.Outcomes()
		if err != nil || len(outs) != 1 {
			return ""
		}
		return outs[0].Reason
	}
	if got := outcome(); !strings.Contains(got, "for Cilium 1.19.5") {
		t.Errorf("outcome %q, want the finding for Cilium 1.19.5", got)
	}
	// Read from cilium-config by the agent, which records it for top.
	if m := metrics(); !strings.Contains(m, "egwct_snat_port_capacity 25535\n") {
		t.Errorf("cilium-config's node-port range ends at 40000, yet /metrics says\n%s", grepLines(m, "egwct_snat_port_capacity"))
	}
	code, out, errOut := run(t, "", "top", "--once", "-o", "json", "--bpffs", dir, "--cilium-state-dir", dir+".state", "--cilium-version", "1.19.5")
	if code != 0 || !strings.Contains(out, `"portCapacity": 25535`) {
		t.Errorf("top, exit %d, does not measure against the agent's port capacity 25535: %s\n%s", code, grepLines(out, "portCapacity"), errOut)
	}

	setCiliumImage(t, env, "kube-system", "quay.io/cilium/cilium:v1.20.2@sha256:0123456789abcdef")
	// Sweeps on this node's file, unchanged, ask nothing.
	n := counterValue(metrics(), "egwct_sweeps_total")
	eventually(t, "more sweeps", func() bool { return counterValue(metrics(), "egwct_sweeps_total") >= n+3 })
	if strings.Contains(logs.String(), "Cilium's version changed") {
		t.Fatalf("the agent followed the DaemonSet before this node's Cilium restarted:\n%s", logs)
	}

	// Cilium restarts on the node, with a node-port range changed in
	// cilium-config meanwhile: it writes the file anew.
	setCiliumConfig(t, env, "kube-system", "node-port-range", "30000,35000")
	file := filepath.Join(dir+".state", "agent-runtime-config.json")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file+".tmp", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the agent to follow the upgrade", func() bool {
		return strings.Contains(logs.String(), `msg="Cilium's version changed" old=1.19.5 new=1.20.2 old_profile=1.19 profile=1.20`)
	})
	eventually(t, "the policy judged for 1.20.2", func() bool { return strings.Contains(outcome(), "for Cilium 1.20.2") })
	if !strings.Contains(logs.String(), `msg="the node's SNAT port capacity changed" old=25535 new=30535`) {
		t.Errorf("the agent did not follow cilium-config's new node-port range")
	}
	code, out, errOut = run(t, "", "top", "--once", "-o", "json", "--bpffs", dir, "--cilium-state-dir", dir+".state", "--cilium-version", "1.20.2")
	if code != 0 || !strings.Contains(out, `"portCapacity": 30535`) {
		t.Errorf("top, exit %d, does not measure against the agent's new port capacity 30535: %s\n%s", code, grepLines(out, "portCapacity"), errOut)
	}
	n = counterValue(metrics(), "egwct_sweeps_total")
	eventually(t, "sweeps with the 1.20 profile", func() bool { return counterValue(metrics(), "egwct_sweeps_total") >= n+2 })
	if m := metrics(); counterValue(m, "egwct_sweep_errors_total") != 0 {
		t.Errorf("sweeps failed:\n%s", logs)
	}
	if t.Failed() {
		t.Log(logs)
	}
}

// setCiliumConfig sets key of the cilium-config ConfigMap in namespace to
// value, and removes it when the test ends: other tests of the shared
// server read the ConfigMap too.
func setCiliumConfig(t *testing.T, env *k8stest.Env, namespace, key, value string) {
	t.Helper()
	cms := env.Dynamic(t).Resource(cluster.ConfigMapResource).Namespace(namespace)
	set := func(value *string) error {
		cm, err := cms.Get(context.Background(), cluster.ConfigMapName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if value == nil {
			unstructured.RemoveNestedField(cm.Object, "data", key)
		} else if err := unstructured.SetNestedField(cm.Object, *value, "data", key); err != nil {
			return err
		}
		_, err = cms.Update(context.Background(), cm, metav1.UpdateOptions{})
		return err
	}
	if err := set(&value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := set(nil); err != nil {
			t.Error(err)
		}
	})
}
