package cluster

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Where Cilium keeps what egwct reads about it.
const (
	// DefaultCiliumNamespace is where Cilium's Helm chart installs it.
	DefaultCiliumNamespace = "kube-system"
	// DaemonSetName and AgentContainer name the agent's DaemonSet and
	// container, whose image tag is the running version.
	DaemonSetName  = "cilium"
	AgentContainer = "cilium-agent"
	// ConfigMapName is the agent's configuration.
	ConfigMapName = "cilium-config"
)

// The resources version detection reads.
var (
	DaemonSetResource = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}
	ConfigMapResource = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
)

// Cilium is what the cluster says about the Cilium it runs.
type Cilium struct {
	// Version is the agent image's tag, e.g. "v1.18.3".
	Version string
	// VersionFrom says where Version was found, for people.
	VersionFrom string
	// Config is the cilium-config ConfigMap as YAML, nil when there is none;
	// ConfigFrom names it (configmap/NAMESPACE/cilium-config).
	Config     []byte
	ConfigFrom string
}

// Cilium reads the agent DaemonSet's image tag and the cilium-config
// ConfigMap in namespace. A missing ConfigMap is not an error; a missing
// DaemonSet or an image without a version tag is.
func (c *Client) Cilium(ctx context.Context, namespace string) (*Cilium, error) {
	v, from, err := c.CiliumVersion(ctx, namespace)
	if err != nil {
		return nil, err
	}
	out := &Cilium{Version: v, VersionFrom: from}

	cm, err := c.dyn.Resource(ConfigMapResource).Namespace(namespace).Get(ctx, ConfigMapName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, c.wrap("get", ConfigMapResource, err)
	default:
		cm.SetAPIVersion("v1")
		cm.SetKind("ConfigMap")
		o, err := ToObject(cm)
		if err != nil {
			return nil, err
		}
		out.Config, out.ConfigFrom = o.YAML, "configmap/"+namespace+"/"+ConfigMapName
	}
	return out, nil
}

// CiliumVersion reads the agent DaemonSet's image tag in namespace (one
// GET) and says where it found it. A missing DaemonSet or an image without
// a version tag is an error.
func (c *Client) CiliumVersion(ctx context.Context, namespace string) (version, from string, err error) {
	ds, err := c.dyn.Resource(DaemonSetResource).Namespace(namespace).Get(ctx, DaemonSetName, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return "", "", &Error{Op: "get daemonset " + namespace + "/" + DaemonSetName, Err: fmt.Errorf("no Cilium DaemonSet in namespace %s (set --cilium-namespace, or give --cilium-version)", namespace)}
		}
		return "", "", c.wrap("get", DaemonSetResource, err)
	}
	image := AgentImage(ds)
	v := ImageVersion(image)
	if v == "" {
		return "", "", &Error{Op: "detect the Cilium version", Err: fmt.Errorf("image %q of daemonset %s/%s has no version tag (give --cilium-version)", image, namespace, DaemonSetName)}
	}
	return v, fmt.Sprintf("image %s of daemonset %s/%s", image, namespace, DaemonSetName), nil
}

// AgentImage is the image of the DaemonSet's cilium-agent container, or
// of its first container when none has that name.
func AgentImage(ds *unstructured.Unstructured) string {
	cs, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "containers")
	first := ""
	for i, c := range cs {
		m, _ := c.(map[string]any)
		image, _ := m["image"].(string)
		if i == 0 {
			first = image
		}
		if m["name"] == AgentContainer {
			return image
		}
	}
	return first
}

// ImageVersion is the version tag of an image reference
// ("quay.io/cilium/cilium:v1.18.3@sha256:…" → "v1.18.3"), or "" when the
// tag is missing or is not a version (latest, a commit).
func ImageVersion(image string) string {
	image, _, _ = strings.Cut(image, "@")
	slash := strings.LastIndexByte(image, '/')
	colon := strings.LastIndexByte(image, ':')
	if colon <= slash {
		return ""
	}
	tag := image[colon+1:]
	t := strings.TrimPrefix(tag, "v")
	if t == "" || t[0] < '0' || t[0] > '9' || !strings.Contains(t, ".") {
		return ""
	}
	return tag
}
