package k8stest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"
)

// Versions of the binaries hack/envtest.sh builds; the default cache
// folder is named after them.
const (
	KubeVersion = "v1.37.2"
	EtcdVersion = "v3.7.3"
)

// AssetsDir is where the kube-apiserver and etcd binaries are looked for:
// $KUBEBUILDER_ASSETS, else $EGWCT_ENVTEST_DIR, else the folder
// hack/envtest.sh builds into by default.
func AssetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	if d := os.Getenv("EGWCT_ENVTEST_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "egwct", "envtest", "k8s-"+KubeVersion+"-etcd-"+EtcdVersion)
}

// CRDDir is the folder of the CRD manifests the test server installs.
func CRDDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "crds")
}

// Env is a running API server.
type Env struct {
	// Config is an administrator's (system:masters) client configuration.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for Config, as the CLI
	// reads it with --kubeconfig.
	Kubeconfig string

	env    *envtest.Environment
	dir    string
	mapper meta.RESTMapper
	once   sync.Once
}

// Policies and Endpoints are the resources of the two Cilium kinds.
var (
	Policies  = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumegressgatewaypolicies"}
	Endpoints = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumendpoints"}
)

// Require skips the test when the binaries are missing (fails in CI).
func Require(t testing.TB) {
	t.Helper()
	if err := missing(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v: CI must run the Kubernetes tests (make test builds the binaries)", err)
		}
		t.Skipf("%v: run make test, or export KUBEBUILDER_ASSETS=\"$(hack/envtest.sh)\"", err)
	}
}

func missing() error {
	dir := AssetsDir()
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("no %s in %s", b, dir)
		}
	}
	return nil
}

// Start starts a new API server for the test and stops it when the test
// ends. Starting takes about 3 s; prefer Shared where tests can share one.
func Start(t testing.TB) *Env {
	t.Helper()
	return startFor(t, nil)
}

// StartWithAdmission is Start with an API server that reads config, an
// AdmissionConfiguration (--admission-control-config-file): for tests of
// what a cluster's admission settings refuse, such as GKE's limit on the
// system-* priority classes.
func StartWithAdmission(t testing.TB, config string) *Env {
	t.Helper()
	Require(t)
	file := filepath.Join(t.TempDir(), "admission.yaml")
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return startFor(t, map[string]string{"admission-control-config-file": file})
}

// startFor starts an API server with more flags for the test, and stops
// it when the test ends.
func startFor(t testing.TB, flags map[string]string) *Env {
	t.Helper()
	Require(t)
	e, err := start("", flags)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Error(err)
		}
	})
	return e
}

var shared struct {
	sync.Mutex
	env *Env
	err error
}

// Shared returns the API server shared by the tests of this test binary,
// starting it on first use. TestMain must call StopShared after m.Run.
// Tests that share it must use names of their own for the objects they
// create (for example a namespace per test).
func Shared(t testing.TB) *Env {
	t.Helper()
	Require(t)
	shared.Lock()
	defer shared.Unlock()
	if shared.env == nil && shared.err == nil {
		shared.env, shared.err = start("", nil)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.env
}

// StopShared stops the shared API server, if one was started.
func StopShared() {
	shared.Lock()
	defer shared.Unlock()
	if shared.env != nil {
		if err := shared.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "k8stest:", err)
		}
		shared.env = nil
	}
}

// StartRestartable is Start with an API server that StopAPIServer and
// StartAPIServer can restart on the same address, certificates and etcd.
func StartRestartable(t testing.TB) *Env {
	t.Helper()
	Require(t)
	e, err := start(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// StopAPIServer stops the API server (etcd stays).
func (e *Env) StopAPIServer() error { return e.env.ControlPlane.APIServer.Stop() }

// StartAPIServer starts the API server StopAPIServer stopped.
func (e *Env) StartAPIServer() error { return e.env.ControlPlane.APIServer.Start() }

// start starts an API server and etcd; certDir, when set, is where the
// serving certificate is kept across restarts; flags are further flags of
// the API server.
func start(certDir string, flags map[string]string) (*Env, error) {
	// envtest logs through controller-runtime's logger, which says on
	// standard error, with a stack trace, that nobody set it.
	ctrllog.SetLogger(logr.Discard())
	useExisting := false
	te := &envtest.Environment{
		BinaryAssetsDirectory: AssetsDir(),
		CRDDirectoryPaths:     []string{CRDDir()},
		ErrorIfCRDPathMissing: true,
		// Never a developer's real cluster, whatever USE_EXISTING_CLUSTER says.
		UseExistingCluster:       &useExisting,
		ControlPlaneStartTimeout: 60 * time.Second,
	}
	if certDir != "" {
		// A fixed folder keeps the serving certificate across restarts.
		te.ControlPlane.APIServer = &envtest.APIServer{CertDir: certDir}
		// A stopping API server waits for open watches (such as an
		// agent's informers) up to its request timeout, 60 s, longer
		// than envtest waits for it to stop; with this flag it waits 2 s.
		te.ControlPlane.APIServer.Configure().Set("shutdown-send-retry-after", "true")
	}
	for k, v := range flags {
		if te.ControlPlane.APIServer == nil {
			te.ControlPlane.APIServer = &envtest.APIServer{}
		}
		te.ControlPlane.APIServer.Configure().Set(k, v)
	}
	cfg, err := te.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd from %s: %w", AssetsDir(), err)
	}
	e := &Env{Config: cfg, env: te}
	if e.dir, err = os.MkdirTemp("", "egwct-k8stest-"); err != nil {
		_ = te.Stop()
		return nil, err
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, te.KubeConfig, 0o600); err != nil {
		_ = e.Stop()
		return nil, err
	}
	return e, nil
}

// Stop stops the API server and etcd and removes their files.
func (e *Env) Stop() error {
	err := e.env.Stop()
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
	return err
}

// User adds a user with the given groups and returns the path of a
// kubeconfig file for it; the user has no permissions beyond its groups
// and what RBAC objects grant it.
func (e *Env) User(t testing.TB, name string, groups ...string) string {
	t.Helper()
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Lister returns the path of a kubeconfig file for a user who may get and
// list egress gateway policies and Cilium endpoints but not watch them.
func (e *Env) Lister(t testing.TB) string {
	t.Helper()
	e.Create(t, `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: egwct-list-only
rules:
- apiGroups: [cilium.io]
  resources: [ciliumegressgatewaypolicies, ciliumendpoints]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: egwct-list-only
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: egwct-list-only}
subjects:
- {kind: User, name: lister, apiGroup: rbac.authorization.k8s.io}
`)
	return e.User(t, "lister")
}

// Dynamic is a dynamic client for the administrator.
func (e *Env) Dynamic(t testing.TB) dynamic.Interface {
	t.Helper()
	c, err := dynamic.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// CreateMany creates n namespaced objects of res, obj(i) for i in
// [0, n), with 16 requests at a time and no client-side rate limit: the
// thousands of CiliumEndpoints of a benchmark in a minute or two.
func (e *Env) CreateMany(t testing.TB, res schema.GroupVersionResource, n int, obj func(i int) *unstructured.Unstructured) {
	t.Helper()
	cfg := *e.Config
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	dyn, err := dynamic.NewForConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	work := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var first error
			for i := range work {
				u := obj(i)
				if _, err := dyn.Resource(res).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{}); err != nil && first == nil {
					first = err
				}
			}
			errs <- first
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Kube is a typed client for the administrator.
func (e *Env) Kube(t testing.TB) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Create creates the objects of a YAML manifest (documents separated by
// "---", and kind: List) as the administrator and returns them as the
// server stored them; an object that exists already is returned as it is.
// Custom resources and the core kinds egwct's tests use are supported.
func (e *Env) Create(t testing.TB, manifest string) []*unstructured.Unstructured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dyn := e.Dynamic(t)
	var out []*unstructured.Unstructured
	for _, doc := range splitDocs(manifest) {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("manifest: %v", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				t.Fatalf("manifest: %v", err)
			}
			for i := range l.Items {
				out = append(out, e.create(ctx, t, dyn, &l.Items[i]))
			}
			continue
		}
		out = append(out, e.create(ctx, t, dyn, u))
	}
	return out
}

func (e *Env) create(ctx context.Context, t testing.TB, dyn dynamic.Interface, u *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	// System fields of an object printed by kubectl; the server sets them.
	for _, f := range []string{"uid", "resourceVersion", "generation", "creationTimestamp"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	gvr, namespaced, err := e.resourceFor(u)
	if err != nil {
		t.Fatal(err)
	}
	var ri dynamic.ResourceInterface = dyn.Resource(gvr)
	if namespaced {
		if u.GetNamespace() == "" {
			u.SetNamespace("default")
		}
		ri = dyn.Resource(gvr).Namespace(u.GetNamespace())
	}
	got, err := ri.Create(ctx, u, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Left by an earlier run of the test on the shared server
		// (go test -count 2): use it as it is.
		got, err = ri.Get(ctx, u.GetName(), metav1.GetOptions{})
	}
	if err != nil {
		t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return got
}

// Reset deletes every CiliumEgressGatewayPolicy and CiliumEndpoint, so
// that a test on the shared server sees only its own; it also runs when
// the test ends.
func (e *Env) Reset(t testing.TB) {
	t.Helper()
	e.reset(t)
	t.Cleanup(func() { e.reset(t) })
}

func (e *Env) reset(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dyn := e.Dynamic(t)
	for _, gvr := range []schema.GroupVersionResource{Policies, Endpoints} {
		l, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("reset: %v", err)
		}
		for _, it := range l.Items {
			err := dyn.Resource(gvr).Namespace(it.GetNamespace()).Delete(ctx, it.GetName(), metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Fatalf("reset: %v", err)
			}
		}
	}
}

// Namespaces creates the namespaces that do not exist yet.
func (e *Env) Namespaces(t testing.TB, names ...string) {
	t.Helper()
	kube := e.Kube(t)
	for _, n := range names {
		_, err := kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// resourceFor maps an object's kind to its resource through discovery.
func (e *Env) resourceFor(u *unstructured.Unstructured) (schema.GroupVersionResource, bool, error) {
	e.once.Do(func() {
		dc, err := discovery.NewDiscoveryClientForConfig(e.Config)
		if err == nil {
			e.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
		}
	})
	if e.mapper == nil {
		return schema.GroupVersionResource{}, false, errors.New("no discovery client")
	}
	gvk := u.GroupVersionKind()
	m, err := e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return schema.GroupVersionResource{}, false, fmt.Errorf("%s: %w", gvk, err)
	}
	return m.Resource, m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// splitDocs splits a multi-document YAML stream.
func splitDocs(manifest string) []string {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewBufferString(manifest)))
	var docs []string
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			return append(docs, string(doc))
		}
		docs = append(docs, string(doc))
	}
}
