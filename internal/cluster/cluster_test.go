package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/egwct/egwct/internal/k8stest"
	"github.com/egwct/egwct/pkg/policy"
)

func TestMain(m *testing.M) {
	code := m.Run()
	k8stest.StopShared()
	os.Exit(code)
}

func TestObjectName(t *testing.T) {
	for _, tt := range []struct {
		kind, ns, name, want string
	}{
		{"CiliumEgressGatewayPolicy", "", "payments", "cegp/payments"},
		{"CiliumEndpoint", "shop", "web-0", "cep/shop/web-0"},
		{"ConfigMap", "kube-system", "cilium-config", "ConfigMap/kube-system/cilium-config"},
	} {
		u := &unstructured.Unstructured{}
		u.SetKind(tt.kind)
		u.SetNamespace(tt.ns)
		u.SetName(tt.name)
		if got := ObjectName(u); got != tt.want {
			t.Errorf("ObjectName(%s %s/%s) = %q, want %q", tt.kind, tt.ns, tt.name, got, tt.want)
		}
	}
}

func TestWrap(t *testing.T) {
	c := &Client{host: "https://127.0.0.1:6443"}
	gr := schema.GroupResource{Group: "cilium.io", Resource: "ciliumegressgatewaypolicies"}
	for _, tt := range []struct {
		name        string
		err         error
		unreachable bool
		want        []string
	}{
		{"forbidden", apierrors.NewForbidden(gr, "", errors.New("no")), false, []string{`needs "list"`, "ciliumegressgatewaypolicies.cilium.io"}},
		{"no CRD", apierrors.NewNotFound(gr, ""), false, []string{"does not serve", "Cilium"}},
		{"unauthorized", apierrors.NewUnauthorized("bad token"), false, []string{"not authenticated"}},
		{"refused", &url.Error{Op: "Get", URL: "https://127.0.0.1:1", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}, true, []string{"cluster unreachable at https://127.0.0.1:6443"}},
		{"timeout", context.DeadlineExceeded, true, []string{"cluster unreachable"}},
		{"other", errors.New("boom"), false, []string{"list ciliumegressgatewaypolicies.cilium.io: boom"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := c.wrap("list", PolicyResource, tt.err)
			if errors.Is(err, ErrUnreachable) != tt.unreachable {
				t.Errorf("unreachable = %v, want %v: %v", !tt.unreachable, tt.unreachable, err)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("%v does not wrap %v", err, tt.err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
		})
	}
}

// objects is a policy with its text in the annotation and in the spec
// (which the CRD's schema prunes), and endpoints in two namespaces.
const objects = `apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: payments
  annotations:
    egwct.io/connection-timeouts: |
      bpfCtTimeoutRegularTcp: 300s
      bpfCtTimeoutRegularAny: 60s
spec:
  connection-timeouts: |
    bpfCtTimeoutRegularTcp: 1s
  selectors:
  - podSelector:
      matchLabels:
        app: pay
  destinationCIDRs:
  - 192.0.2.0/24
  - 2001:db8::/64
  excludedCIDRs:
  - 192.0.2.7/32
  egressGateway:
    nodeSelector:
      matchLabels:
        egress: "true"
    egressIP: 198.51.100.1
---
apiVersion: cilium.io/v2
kind: CiliumEndpoint
metadata:
  name: pay-0
  namespace: shop
status:
  identity:
    id: 1001
    labels:
    - k8s:app=pay
    - k8s:io.kubernetes.pod.namespace=shop
  networking:
    addressing:
    - ipv4: 10.1.0.5
      ipv6: fd00::5
    node: 10.0.0.11
  state: ready
---
apiVersion: cilium.io/v2
kind: CiliumEndpoint
metadata:
  name: pay-1
  namespace: other
status:
  identity:
    id: 1002
    labels:
    - k8s:app=pay
    - k8s:io.kubernetes.pod.namespace=other
  networking:
    addressing:
    - ipv4: 10.1.0.6
    node: 10.0.0.12
  state: ready
---
apiVersion: cilium.io/v2
kind: CiliumEndpoint
metadata:
  name: web-0
  namespace: shop
status:
  identity:
    labels:
    - k8s:app=web
    - k8s:io.kubernetes.pod.namespace=shop
  networking:
    addressing:
    - ipv4: 10.1.0.9
  state: ready
`

func client(t *testing.T, kubeconfig string) *Client {
	t.Helper()
	f := Flags{Kubeconfig: kubeconfig, Timeout: 10e9}
	cfg, err := f.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// read feeds objects to pkg/policy as the CLI does.
func read(t *testing.T, objs []Object) (pols []*policy.Policy, eps []*policy.Endpoint) {
	t.Helper()
	for _, o := range objs {
		err := policy.NewSource(o.Name, o.YAML).EachObject(
			func(p *policy.Policy) { pols = append(pols, p) },
			func(e *policy.Endpoint) { eps = append(eps, e) }, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	return pols, eps
}

// TestListAgainstAPIServer: what egwct reads from a real API server
// resolves to the same keys as the same objects read from a file, and
// positions name the object.
func TestListAgainstAPIServer(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	env.Namespaces(t, "shop", "other")
	env.Create(t, objects)
	c := client(t, env.Kubeconfig)
	ctx := context.Background()

	ps, err := c.Policies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	es, err := c.Endpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range append(ps, es...) {
		names = append(names, o.Name)
		if strings.Contains(string(o.YAML), "managedFields") {
			t.Errorf("%s: managedFields kept", o.Name)
		}
	}
	want := []string{"cegp/payments", "cep/other/pay-1", "cep/shop/pay-0", "cep/shop/web-0"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("objects %v, want %v", names, want)
	}

	pols, eps := read(t, append(ps, es...))
	if len(pols) != 1 || len(eps) != 3 {
		t.Fatalf("%d policies, %d endpoints", len(pols), len(eps))
	}
	p := pols[0]
	if p.Spec != nil {
		t.Errorf("spec.connection-timeouts survived the CRD's pruning: %q", p.Spec.Text)
	}
	if p.Annotation == nil || !strings.HasPrefix(p.Annotation.Text, "bpfCtTimeoutRegularTcp: 300s\n") {
		t.Fatalf("annotation: %+v", p.Annotation)
	}
	if p.Annotation.Pos.File != "cegp/payments" || p.Annotation.Pos.Line == 0 {
		t.Errorf("annotation position %v", p.Annotation.Pos)
	}
	// The text's second line maps to a line of the object's YAML.
	pos, exact := p.Annotation.PositionOf(2, 1)
	line, _ := policy.NewSource(ps[0].Name, ps[0].YAML).Line(pos.Line)
	if !exact || !strings.Contains(line, "bpfCtTimeoutRegularAny: 60s") {
		t.Errorf("PositionOf(2,1) = %v (exact %v), line %q", pos, exact, line)
	}

	fromCluster := keys(t, pols, eps)
	filePols, fileEps := read(t, []Object{{Name: "objects.yaml", YAML: []byte(objects)}})
	filePols[0].Spec = nil // pruned on the server
	fromFile := keys(t, filePols, fileEps)
	if len(fromCluster) == 0 || !reflect.DeepEqual(fromCluster, fromFile) {
		t.Errorf("keys from the cluster %v, from the file %v", fromCluster, fromFile)
	}
}

func keys(t *testing.T, pols []*policy.Policy, eps []*policy.Endpoint) []string {
	t.Helper()
	var out []string
	for _, p := range pols {
		s, err := p.ParseSpec()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range s.Keys(eps, 4, 6) {
			out = append(out, fmt.Sprint(k))
		}
	}
	return out
}

// TestListPages: lists are read a page at a time and nothing is lost.
func TestListPages(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	old := pageSize
	pageSize = 2
	t.Cleanup(func() { pageSize = old })
	var b strings.Builder
	for i := range 5 {
		fmt.Fprintf(&b, "---\napiVersion: cilium.io/v2\nkind: CiliumEgressGatewayPolicy\nmetadata:\n  name: p%d\nspec:\n  selectors: [{podSelector: {}}]\n  destinationCIDRs: [0.0.0.0/0]\n", i)
	}
	env.Create(t, b.String())
	ps, err := client(t, env.Kubeconfig).Policies(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 5 || ps[0].Name != "cegp/p0" || ps[4].Name != "cegp/p4" {
		t.Errorf("listed %d policies: %v", len(ps), ps)
	}
}

// TestSchemaRejects: the test CRDs validate like Cilium's.
func TestSchemaRejects(t *testing.T) {
	env := k8stest.Shared(t)
	env.Reset(t)
	dyn := env.Dynamic(t)
	for _, tt := range []struct{ name, spec string }{
		{"no selectors", `{"destinationCIDRs": ["0.0.0.0/0"]}`},
		{"bad operator", `{"destinationCIDRs": ["0.0.0.0/0"], "selectors": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}}]}`},
		{"not a CIDR", `{"destinationCIDRs": ["example.com"], "selectors": [{}]}`},
	} {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON([]byte(`{"apiVersion": "cilium.io/v2", "kind": "CiliumEgressGatewayPolicy", "metadata": {"name": "bad"}, "spec": ` + tt.spec + `}`)); err != nil {
			t.Fatal(err)
		}
		_, err := dyn.Resource(PolicyResource).Create(context.Background(), u, metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) {
			t.Errorf("%s: got %v, want an Invalid error", tt.name, err)
		}
	}
}

// TestUnreachable: a server that does not answer is ErrUnreachable.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(UnreachableKubeconfig(addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = client(t, path).Policies(context.Background())
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Errorf("got %v, want %v naming %s", err, ErrUnreachable, addr)
	}
}

// UnreachableKubeconfig is a kubeconfig for a server at addr.
func UnreachableKubeconfig(addr string) string {
	return `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://` + addr + `
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: t
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
`
}

// TestForbidden: a user without permissions gets an error that names the
// verb and the resource.
func TestForbidden(t *testing.T) {
	env := k8stest.Shared(t)
	kc := env.User(t, "nobody")
	_, err := client(t, kc).Policies(context.Background())
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `needs "list" on ciliumegressgatewaypolicies.cilium.io`) {
		t.Errorf("got %v", err)
	}
}

func TestImageVersion(t *testing.T) {
	for _, tt := range []struct{ image, want string }{
		{"quay.io/cilium/cilium:v1.18.3@sha256:0123abcd", "v1.18.3"},
		{"quay.io/cilium/cilium:v1.17.0-rc.1", "v1.17.0-rc.1"},
		{"registry:5000/cilium/cilium:1.16.5", "1.16.5"},
		{"registry:5000/cilium/cilium", ""},
		{"quay.io/cilium/cilium:latest", ""},
		{"quay.io/cilium/cilium-ci:4f1e2c3", ""},
		{"quay.io/cilium/cilium@sha256:0123abcd", ""},
		{"", ""},
	} {
		if got := ImageVersion(tt.image); got != tt.want {
			t.Errorf("ImageVersion(%q) = %q, want %q", tt.image, got, tt.want)
		}
	}
}

const ciliumObjects = `apiVersion: apps/v1
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
      initContainers:
      - name: config
        image: quay.io/cilium/cilium:v1.99.0
      containers:
      - name: cilium-envoy
        image: quay.io/cilium/cilium-envoy:v1.34.1
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
  enable-bpf-clock-probe: "true"
`

// TestCilium reads the version and the ConfigMap from a real API server.
func TestCilium(t *testing.T) {
	env := k8stest.Shared(t)
	c := client(t, env.Kubeconfig)
	ctx := context.Background()

	env.Namespaces(t, "cilium-full", "cilium-noconfig", "cilium-none")
	env.Create(t, strings.ReplaceAll(ciliumObjects, "NS", "cilium-full"))
	env.Create(t, strings.ReplaceAll(strings.Split(ciliumObjects, "---\n")[0], "NS", "cilium-noconfig"))

	got, err := c.Cilium(ctx, "cilium-full")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != "v1.17.4" || !strings.Contains(got.VersionFrom, "daemonset cilium-full/cilium") || got.ConfigFrom != "configmap/cilium-full/cilium-config" {
		t.Errorf("got %+v", got)
	}
	if !strings.Contains(string(got.Config), "kind: ConfigMap") || !strings.Contains(string(got.Config), "bpf-ct-timeout-regular-tcp: 1h") {
		t.Errorf("config:\n%s", got.Config)
	}

	got, err = c.Cilium(ctx, "cilium-noconfig")
	if err != nil || got.Version != "v1.17.4" || got.Config != nil {
		t.Errorf("without a ConfigMap: %+v, %v", got, err)
	}
	if _, err := c.Cilium(ctx, "cilium-none"); err == nil || !strings.Contains(err.Error(), "no Cilium DaemonSet in namespace cilium-none") {
		t.Errorf("without a DaemonSet: %v", err)
	}
}

// TestObserve: every request reports whether the API server answered.
func TestObserve(t *testing.T) {
	env := k8stest.Shared(t)
	var results []error
	f := Flags{Kubeconfig: env.Kubeconfig, Timeout: 5e9}
	cfg, err := f.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	Observe(cfg, func(err error) { results = append(results, err) })
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Policies(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0] != nil {
		t.Errorf("after a list: %v", results)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg.Host = "https://" + addr
	c, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	results = nil
	if _, err := c.Policies(context.Background()); err == nil {
		t.Fatal("no error from a closed port")
	}
	if len(results) == 0 || results[len(results)-1] == nil {
		t.Errorf("after a refused connection: %v", results)
	}
}

// TestToObjectKeepsEveryCharacter: an object whose strings hold what YAML
// does not allow raw (DEL, C1) or reads as a line break (NEL, U+2028) —
// the API server takes them in JSON — is converted to a document egwct
// reads back with the same text; other objects stay YAML.
func TestToObjectKeepsEveryCharacter(t *testing.T) {
	for _, text := range []string{"tcp: 5m\n", "tcp: 5m\x7f", "tcp: 5m\u0085udp: 1m", "a\u0080b\u009f", "x\u2028y"} {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": policy.APIVersion, "kind": policy.Kind,
			"metadata": map[string]any{"name": "p", "annotations": map[string]any{policy.Annotation: text}},
		}}
		obj, err := ToObject(u)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		m, err := policy.Read(obj.Name, obj.YAML)
		if err != nil {
			t.Fatalf("%q: read back: %v\n%s", text, err, obj.YAML)
		}
		if len(m.Policies) != 1 || m.Policies[0].Annotation == nil || m.Policies[0].Annotation.Text != text {
			t.Errorf("%q: read back %+v\n%s", text, m.Policies, obj.YAML)
		}
		if strings.IndexFunc(text, unprintable) < 0 && !strings.HasPrefix(string(obj.YAML), "apiVersion: ") {
			t.Errorf("%q: not written as YAML:\n%s", text, obj.YAML)
		}
	}
}
