package cli

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/k8stest"
)

// serviceAccount is how the API server sees the DaemonSet's pods.
var serviceAccount = []string{"system:serviceaccount:egwct-system:egwct", "system:serviceaccounts", "system:serviceaccounts:egwct-system", "system:authenticated"}

// TestDeployManifests creates deploy/egwct.yaml (the chart rendered with
// its defaults) on the API server (which validates every field), then
// runs egwct as the manifests' service account: the ClusterRole and Roles
// are enough for --from-cluster with version detection and for the
// Events, and grant nothing else.
func TestDeployManifests(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	chdirRoot(t)
	created := deploy(t, env)
	checkDeployment(t, env, created, "egwct-system", "kube-system")
}

// checkDeployment runs the least-privilege checks on objects created from
// the chart (or deploy/egwct.yaml): the agent's service account in
// namespace ns may do what egwct --from-cluster needs with Cilium in
// ciliumNS, create Events in "default" and keep its one Lease in ns, and
// nothing else. Run from the repository's root.
func checkDeployment(t *testing.T, env *k8stest.Env, created []*unstructured.Unstructured, ns, ciliumNS string) {
	t.Helper()
	kinds := map[string]bool{}
	for _, o := range created {
		kinds[o.GetKind()] = true
		switch o.GetKind() {
		case "DaemonSet":
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			args, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
			for _, want := range []string{"--cilium-namespace=" + ciliumNS, "--events", "--lease-namespace=" + ns, "--lease-name=" + cluster.DefaultLeaseName} {
				if !slices.Contains(args, want) {
					t.Errorf("the DaemonSet's args %q lack %s", args, want)
				}
			}
		case "Role", "RoleBinding":
			want := map[string]string{"egwct-cilium-version": ciliumNS, "egwct-events-lease": ns, "egwct-events": "default"}[o.GetName()]
			if o.GetNamespace() != want {
				t.Errorf("%s %s is in namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), want)
			}
		}
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "DaemonSet"} {
		if !kinds[k] {
			t.Errorf("the deployment has no %s", k)
		}
	}
	env.Namespaces(t, ciliumNS)
	env.Create(t, strings.ReplaceAll(ciliumDaemonSet, "NS", ciliumNS))
	env.Create(t, clusterPolicies)

	sa := env.User(t, "system:serviceaccount:"+ns+":egwct", "system:serviceaccounts", "system:serviceaccounts:"+ns, "system:authenticated")
	nsFlag := "--cilium-namespace=" + ciliumNS
	code, out, errOut := run(t, "", "validate", "--from-cluster", "--kubeconfig", sa, nsFlag)
	if code != ExitFindings || !strings.Contains(out, "daemonset "+ciliumNS+"/cilium") || !strings.Contains(out, "cegp/crawler-egress") {
		t.Errorf("validate as the service account: exit %d: %s %s", code, out, errOut)
	}
	// apply lists endpoints too, then refuses the invalid policy.
	code, _, errOut = run(t, "", "apply", "--from-cluster", "--kubeconfig", sa, nsFlag, "--bpffs", t.TempDir(), "--cilium-state-dir", t.TempDir())
	if code != ExitFindings || !strings.Contains(errOut, "Cilium v1.17.4") || !strings.Contains(errOut, "nothing applied") || strings.Contains(errOut, "forbidden") || strings.Contains(errOut, "permission") {
		t.Errorf("apply as the service account: exit %d: %s", code, errOut)
	}

	// The Events writer's: Events in default, the one Lease in ns.
	dyn := dynFor(t, sa)
	ctx := context.Background()
	kube := kubeFor(t, sa)
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "p.1"}, InvolvedObject: corev1.ObjectReference{Kind: "CiliumEgressGatewayPolicy", Name: "p"}, Reason: "TimeoutsApplied"}
	// AlreadyExists (an earlier check on the shared server made it) comes
	// only after the create was authorized.
	if _, err := kube.CoreV1().Events("default").Create(ctx, ev, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Errorf("the service account may not create an Event: %v", err)
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: cluster.DefaultLeaseName}}
	leases := kube.CoordinationV1().Leases(ns)
	// AlreadyExists (an agent of another test made it) comes only after
	// the create was authorized.
	if _, err := leases.Create(ctx, lease, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Errorf("the service account may not create its Lease: %v", err)
	}
	if got, err := leases.Get(ctx, cluster.DefaultLeaseName, metav1.GetOptions{}); err != nil {
		t.Errorf("the service account may not get its Lease: %v", err)
	} else if _, err := leases.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Errorf("the service account may not update its Lease: %v", err)
	}
	env.Kube(t).CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses"}}, metav1.CreateOptions{})
	// Nothing else: no other writes, no other objects.
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("cilium.io/v2")
	u.SetKind("CiliumEgressGatewayPolicy")
	u.SetName("sneaky")
	u.Object["spec"] = map[string]any{"selectors": []any{map[string]any{}}, "destinationCIDRs": []any{"0.0.0.0/0"}}
	elsewhere := "kube-system"
	if ciliumNS == elsewhere {
		elsewhere = "kube-public"
	}
	for what, err := range map[string]error{
		"create a policy":                    second(dyn.Resource(cluster.PolicyResource).Create(ctx, u, metav1.CreateOptions{})),
		"delete an endpoint":                 dyn.Resource(cluster.EndpointResource).Namespace("default").Delete(ctx, "x", metav1.DeleteOptions{}),
		"list configmaps":                    second(dyn.Resource(cluster.ConfigMapResource).Namespace(ciliumNS).List(ctx, metav1.ListOptions{})),
		"get another configmap":              second(dyn.Resource(cluster.ConfigMapResource).Namespace(ciliumNS).Get(ctx, "extension-apiserver-authentication", metav1.GetOptions{})),
		"list daemonsets":                    second(dyn.Resource(cluster.DaemonSetResource).Namespace(ciliumNS).List(ctx, metav1.ListOptions{})),
		"update the cilium config":           second(dyn.Resource(cluster.ConfigMapResource).Namespace(ciliumNS).Update(ctx, configMap("cilium-config", ciliumNS), metav1.UpdateOptions{})),
		"get the cilium DaemonSet elsewhere": second(dyn.Resource(cluster.DaemonSetResource).Namespace(elsewhere).Get(ctx, "cilium", metav1.GetOptions{})),
		"create an Event elsewhere":          second(kube.CoreV1().Events("kube-system").Create(ctx, ev, metav1.CreateOptions{})),
		"list Events":                        second(kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{})),
		"update an Event":                    second(kube.CoreV1().Events("default").Update(ctx, ev, metav1.UpdateOptions{})),
		"patch an Event":                     second(kube.CoreV1().Events("default").Patch(ctx, "p.1", types.MergePatchType, []byte(`{"message":"x"}`), metav1.PatchOptions{})),
		"delete an Event":                    kube.CoreV1().Events("default").Delete(ctx, "p.1", metav1.DeleteOptions{}),
		"get another Lease":                  second(leases.Get(ctx, "someone-elses", metav1.GetOptions{})),
		"update another Lease":               second(leases.Update(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses"}}, metav1.UpdateOptions{})),
		"list Leases":                        second(leases.List(ctx, metav1.ListOptions{})),
		"delete its Lease":                   leases.Delete(ctx, cluster.DefaultLeaseName, metav1.DeleteOptions{}),
		"create a Lease elsewhere":           second(kube.CoordinationV1().Leases(elsewhere).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: cluster.DefaultLeaseName}}, metav1.CreateOptions{})),
	} {
		if !apierrors.IsForbidden(err) {
			t.Errorf("the service account may %s: %v", what, err)
		}
	}
}

// TestMissingPermission: a role without ciliumendpoints gives an error that
// names the verb and the resource.
func TestMissingPermission(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	env.Create(t, `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: policies-only
rules:
- apiGroups: ["cilium.io"]
  resources: ["ciliumegressgatewaypolicies"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: policies-only
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: policies-only}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: policies-only}
`)
	kc := env.User(t, "policies-only")
	if code, out, errOut := run(t, "", "validate", "--from-cluster", "--kubeconfig", kc, "--cilium-version", "1.18"); code != 0 {
		t.Errorf("validate needs only policies: exit %d %s %s", code, out, errOut)
	}
	code, _, errOut := run(t, "", "apply", "--from-cluster", "--kubeconfig", kc, "--cilium-version", "1.18", "--bpffs", t.TempDir(), "--cilium-state-dir", t.TempDir())
	if code != ExitEnv || !strings.Contains(errOut, `egwct needs "list" on ciliumendpoints.cilium.io`) {
		t.Errorf("apply without ciliumendpoints: exit %d: %s", code, errOut)
	}
}

var deployed struct {
	sync.Mutex
	env     *k8stest.Env
	objects []*unstructured.Unstructured
}

// deploy creates deploy/egwct.yaml on env once per test binary, and
// returns the objects it created.
func deploy(t *testing.T, env *k8stest.Env) []*unstructured.Unstructured {
	t.Helper()
	deployed.Lock()
	defer deployed.Unlock()
	if deployed.env != env {
		_, file, _, _ := runtime.Caller(0)
		data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "deploy", "egwct.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		deployed.objects = env.Create(t, string(data))
		deployed.env = env
	}
	return deployed.objects
}

func dynFor(t *testing.T, kubeconfig string) dynamic.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func kubeFor(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

func second[T any](_ T, err error) error { return err }

func configMap(name, ns string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind("ConfigMap")
	u.SetName(name)
	u.SetNamespace(ns)
	return u
}
