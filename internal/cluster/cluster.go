package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/egwct/egwct/pkg/policy"
)

// The resources egwct reads.
var (
	PolicyResource   = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumegressgatewaypolicies"}
	EndpointResource = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumendpoints"}
)

// Flags are kubectl's connection flags, from k8s.io/cli-runtime's
// genericclioptions.ConfigFlags: --kubeconfig, --context, --cluster,
// --user, -n/--namespace, -s/--server, --token, --as, --as-group, --as-uid,
// --as-user-extra, --certificate-authority, --client-certificate,
// --client-key, --insecure-skip-tls-verify, --tls-server-name,
// --proxy-url, --disable-compression; and --request-timeout, a duration
// as before (kubectl's takes a string).
type Flags struct {
	// Kubeconfig, Context and Namespace are the values of --kubeconfig,
	// --context and -n; a zero Flags works (kubectl's defaults).
	Kubeconfig string
	Context    string
	Namespace  string
	// Timeout bounds each request (--request-timeout).
	Timeout time.Duration
	config  *genericclioptions.ConfigFlags
}

// configFlags returns the cli-runtime flags, bound to f's fields.
func (f *Flags) configFlags() *genericclioptions.ConfigFlags {
	if f.config == nil {
		c := genericclioptions.NewConfigFlags(false)
		c.KubeConfig, c.Context, c.Namespace = &f.Kubeconfig, &f.Context, &f.Namespace
		c.Timeout = nil  // egwct's own --request-timeout, a duration with a default
		c.CacheDir = nil // egwct does no discovery
		f.config = c
	}
	return f.config
}

// Register adds kubectl's connection flags to fs.
func (f *Flags) Register(fs *pflag.FlagSet) {
	f.configFlags().AddFlags(fs)
	fs.Lookup("kubeconfig").Usage = "path to the kubeconfig file (default $KUBECONFIG or ~/.kube/config; in a pod, the pod's service account)"
	fs.DurationVar(&f.Timeout, "request-timeout", 30*time.Second, "how long to wait for each request to the API server")
}

// RESTConfig resolves the flags the way kubectl does: --kubeconfig, else
// $KUBECONFIG, else ~/.kube/config, else the in-cluster configuration of
// a pod; the other flags override what the kubeconfig says.
func (f *Flags) RESTConfig() (*rest.Config, error) {
	c := f.configFlags()
	loader := c.ToRawKubeConfigLoader()
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, &Error{Op: "load kubeconfig", Err: err}
	}
	// cli-runtime falls back to http://localhost:8080 when nothing is
	// configured; say so instead of trying it.
	if raw, err := loader.RawConfig(); err == nil && len(raw.Clusters) == 0 && *c.APIServer == "" && os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return nil, &Error{Op: "load kubeconfig", Err: errors.New("no configuration: give --kubeconfig or --server, set $KUBECONFIG, or create ~/.kube/config")}
	}
	cfg.Timeout = f.Timeout
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "egwct"
	return cfg, nil
}

// Client reads from one API server.
type Client struct {
	dyn  dynamic.Interface
	cfg  *rest.Config
	host string
}

// New returns a client for cfg.
func New(cfg *rest.Config) (*Client, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, &Error{Op: "create client", Err: err}
	}
	return &Client{dyn: dyn, cfg: rest.CopyConfig(cfg), host: cfg.Host}, nil
}

// Object is one object from the cluster as YAML.
type Object struct {
	// Name is how findings name the object: cegp/NAME or cep/NAMESPACE/NAME.
	Name string
	// YAML is the object as `kubectl get -o yaml` prints it (without
	// managedFields).
	YAML []byte
}

// Policies lists every CiliumEgressGatewayPolicy, sorted by name.
func (c *Client) Policies(ctx context.Context) ([]Object, error) {
	return c.list(ctx, PolicyResource)
}

// Endpoints lists the CiliumEndpoints of all namespaces, sorted by
// namespace and name.
func (c *Client) Endpoints(ctx context.Context) ([]Object, error) {
	return c.list(ctx, EndpointResource)
}

// pageSize bounds each list response, so that memory stays flat on large
// clusters.
var pageSize int64 = 500

func (c *Client) list(ctx context.Context, res schema.GroupVersionResource) ([]Object, error) {
	var out []Object
	err := c.each(ctx, res, func(u *unstructured.Unstructured) error {
		o, err := ToObject(u)
		out = append(out, o)
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ListEndpoints lists the CiliumEndpoints of all namespaces as egwct reads
// them (EndpointOf), without marshalling them.
func (c *Client) ListEndpoints(ctx context.Context) ([]*policy.Endpoint, error) {
	var out []*policy.Endpoint
	err := c.each(ctx, EndpointResource, func(u *unstructured.Unstructured) error {
		out = append(out, EndpointOf(u))
		return nil
	})
	return out, err
}

// each visits every object of a resource, a page at a time.
func (c *Client) each(ctx context.Context, res schema.GroupVersionResource, visit func(*unstructured.Unstructured) error) error {
	opts := metav1.ListOptions{Limit: pageSize}
	for {
		l, err := c.dyn.Resource(res).List(ctx, opts)
		if err != nil {
			return c.wrap("list", res, err)
		}
		for i := range l.Items {
			if err := visit(&l.Items[i]); err != nil {
				return err
			}
		}
		if opts.Continue = l.GetContinue(); opts.Continue == "" {
			return nil
		}
	}
}

// ObjectName is the name findings use for an object: cegp/NAME for
// policies, cep/NAMESPACE/NAME for endpoints, kind/[NAMESPACE/]NAME else.
func ObjectName(u *unstructured.Unstructured) string {
	prefix := u.GetKind()
	switch u.GetKind() {
	case "CiliumEgressGatewayPolicy":
		prefix = "cegp"
	case "CiliumEndpoint":
		prefix = "cep"
	}
	if ns := u.GetNamespace(); ns != "" {
		return prefix + "/" + ns + "/" + u.GetName()
	}
	return prefix + "/" + u.GetName()
}

// ToObject converts an object to YAML, leaving out managedFields as
// kubectl does.
func ToObject(u *unstructured.Unstructured) (Object, error) {
	c := u.DeepCopy()
	c.SetManagedFields(nil)
	var data []byte
	var err error
	if hasUnprintable(c.Object) {
		data, err = escapedJSON(c.Object)
	} else {
		data, err = yaml.Marshal(c.Object)
	}
	if err != nil {
		return Object{}, fmt.Errorf("%s: %w", ObjectName(u), err)
	}
	return Object{Name: ObjectName(u), YAML: data}, nil
}

// unprintable are the characters a string of an object may hold (the API
// server takes them in JSON) that YAML does not allow raw (DEL, C1) or
// reads as a line break (NEL, U+2028, U+2029): converted to YAML, an
// object holding one fails, or reads back changed.
func unprintable(r rune) bool {
	return r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029
}

// hasUnprintable reports whether a string of the object, a key or a
// value, holds an unprintable character.
func hasUnprintable(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.IndexFunc(v, unprintable) >= 0
	case map[string]any:
		for k, e := range v {
			if hasUnprintable(k) || hasUnprintable(e) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if hasUnprintable(e) {
				return true
			}
		}
	}
	return false
}

// escapedJSON writes the object as indented JSON, which YAML reads, with
// the unprintable characters escaped (\u007f): they only occur inside
// strings, where an escape reads back as the same character.
func escapedJSON(obj map[string]any) ([]byte, error) {
	data, err := json.MarshalIndent(obj, "", "  ")
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for _, r := range string(data) {
		if unprintable(r) {
			fmt.Fprintf(&b, "\\u%04x", r)
			continue
		}
		b.WriteRune(r)
	}
	return []byte(b.String()), nil
}

// Error is a failed request, with what egwct tried to do.
type Error struct {
	// Op is the operation, e.g. "list ciliumegressgatewaypolicies.cilium.io".
	Op  string
	Err error
}

// Error says what failed and why.
func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// ErrUnreachable marks errors of an API server that did not answer.
var ErrUnreachable = errors.New("cluster unreachable")

// wrap explains an error of a request: an unreachable server, a missing
// permission (naming the verb and resource) or a missing CRD.
func (c *Client) wrap(verb string, res schema.GroupVersionResource, err error) error {
	return c.wrapVerbs([]string{verb}, res, err)
}

// wrapVerbs is wrap for a request that needs several verbs (an informer
// lists, then watches).
func (c *Client) wrapVerbs(verbs []string, res schema.GroupVersionResource, err error) error {
	name := res.Resource
	if res.Group != "" {
		name += "." + res.Group
	}
	op := strings.Join(verbs, " and ") + " " + name
	switch {
	case apierrors.IsForbidden(err):
		quoted := make([]string, len(verbs))
		for i, v := range verbs {
			quoted[i] = strconv.Quote(v)
		}
		return &Error{Op: op, Err: fmt.Errorf("permission denied: egwct needs %s on %s (%s): %w", strings.Join(quoted, " and "), name, res.GroupVersion(), err)}
	case apierrors.IsNotFound(err) && res.Group == "cilium.io":
		return &Error{Op: op, Err: fmt.Errorf("the API server does not serve %s (%s): is Cilium (its CRDs) installed? %w", name, res.GroupVersion(), err)}
	case apierrors.IsUnauthorized(err):
		return &Error{Op: op, Err: fmt.Errorf("not authenticated: check the kubeconfig's credentials: %w", err)}
	case isUnreachable(err):
		return &Error{Op: op, Err: fmt.Errorf("%w at %s: %w", ErrUnreachable, c.host, err)}
	}
	return &Error{Op: op, Err: err}
}

func isUnreachable(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) ||
		apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsServiceUnavailable(err)
}
