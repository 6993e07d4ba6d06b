package cli

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/enforce"
	"github.com/egwct/egwct/internal/manifest"
	"github.com/egwct/egwct/pkg/nodeconfig"
)

// clusterOptions are the flags of commands that can read from a cluster.
type clusterOptions struct {
	From      bool
	Namespace string
	flags     cluster.Flags
}

func (c *clusterOptions) register(cmd *cobra.Command, what string) {
	f := cmd.Flags()
	f.BoolVar(&c.From, "from-cluster", false, "read "+what+" from the cluster (read-only: get, list and watch)")
	f.StringVar(&c.Namespace, "cilium-namespace", cluster.DefaultCiliumNamespace, "with --from-cluster: the namespace of the cilium DaemonSet and cilium-config ConfigMap, read when --cilium-version is not given")
	c.flags.Register(f)
	// egwct reads cluster-wide objects; -n names Cilium's namespace, as in
	// the cilium CLI.
	f.Lookup("namespace").Usage = "the namespace of Cilium (the same as --cilium-namespace, which it overrides)"
	if v := f.Lookup("cilium-version"); v != nil && strings.HasSuffix(v.Usage, "(required)") {
		v.Usage = strings.TrimSuffix(v.Usage, "(required)") + "(required without --from-cluster, which detects it from the cilium DaemonSet)"
	}
}

// ciliumNamespace is -n if given, else --cilium-namespace.
func (c *clusterOptions) ciliumNamespace() string {
	if c.flags.Namespace != "" {
		return c.flags.Namespace
	}
	return c.Namespace
}

// client connects with the kubeconfig flags; failures are environment
// errors (exit 3).
func (c *clusterOptions) client(configure ...func(*rest.Config)) (*cluster.Client, error) {
	cfg, err := c.flags.RESTConfig()
	if err != nil {
		return nil, envError(err)
	}
	for _, f := range configure {
		f(cfg)
	}
	cl, err := cluster.New(cfg)
	if err != nil {
		return nil, envError(err)
	}
	return cl, nil
}

// inputs lists the cluster's policies as inputs named cegp/NAME.
func (c *clusterOptions) inputs(ctx context.Context) ([]manifest.Input, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	return policyInputs(ctx, cl)
}

func policyInputs(ctx context.Context, cl *cluster.Client) ([]manifest.Input, error) {
	objs, err := cl.Policies(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]manifest.Input, 0, len(objs))
	for _, o := range objs {
		out = append(out, manifest.Input{Name: o.Name, Data: o.YAML})
	}
	return out, nil
}

// objects lists the cluster's policies and endpoints as apply reads them:
// policies parsed from their YAML, endpoints read without marshalling.
func (c *clusterOptions) objects(ctx context.Context) (enforce.Objects, error) {
	cl, err := c.client()
	if err != nil {
		return enforce.Objects{}, err
	}
	in, err := policyInputs(ctx, cl)
	if err != nil {
		return enforce.Objects{}, err
	}
	objs, err := enforce.Parse(in, nil)
	if err != nil {
		return enforce.Objects{}, err
	}
	if objs.Endpoints, err = cl.ListEndpoints(ctx); err != nil {
		return enforce.Objects{}, err
	}
	return objs, nil
}

// cilium detects the Cilium version (and configuration) of the cluster.
func (c *clusterOptions) cilium(ctx context.Context) (*cluster.Cilium, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	ci, err := cl.Cilium(ctx, c.ciliumNamespace())
	if err != nil {
		return nil, envError(err)
	}
	return ci, nil
}

// detector returns what detects the Cilium version again while the agent
// runs: a GET of the cilium DaemonSet and one of cilium-config, each
// bounded by --request-timeout, as Cilium itself reads its ConfigMap again
// when it restarts. What it reads is stored in current; a failure is
// counted as the cluster's others are and leaves current as it was.
func (c *clusterOptions) detector(ctx context.Context, m agentMetrics, current *atomic.Pointer[cluster.Cilium]) (func() (string, error), error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	return func() (string, error) {
		ci, err := cl.Cilium(ctx, c.ciliumNamespace())
		if err != nil {
			m.ClusterError()
			return "", err
		}
		current.Store(ci)
		return ci.Version, nil
	}, nil
}

// useConfigMap gives a node without agent-runtime-config.json the node
// timeouts of the cluster's cilium-config ConfigMap; the node's own file,
// when there is one, wins. It returns where the timeouts came from, or ""
// when nothing changed. A node file without the node-port range (later
// Cilium versions keep it out of that file) takes the ConfigMap's, when
// the ConfigMap can be read.
func (n *node) useConfigMap(ci *cluster.Cilium) (string, error) {
	if ci == nil || ci.Config == nil || (n.Config != nil && n.Config.NodePortMax != 0) {
		return "", nil
	}
	cfg, err := nodeconfig.Parse(ci.ConfigFrom, ci.Config)
	if n.Config != nil {
		if err == nil {
			n.Config.NodePortMax = cfg.NodePortMax
		}
		return "", nil
	}
	if err != nil {
		return "", envError(err)
	}
	n.Config = cfg
	n.Timeouts = cfg.NodeTimeouts(n.Resolution.Profile)
	return ci.ConfigFrom, nil
}
