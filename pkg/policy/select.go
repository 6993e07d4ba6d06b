package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/egwct/egwct/internal/yamlnode"
)

// EndpointKind is the kind of the objects that carry pod IPs and labels.
const EndpointKind = "CiliumEndpoint"

// Label keys Cilium gives every endpoint (pkg/k8s/apis/cilium.io/const.go).
const (
	PodNamespaceLabel      = "io.kubernetes.pod.namespace"
	PodNamespaceMetaLabels = "io.cilium.k8s.namespace.labels"
)

// Endpoint is a CiliumEndpoint: the pod's identity labels and addresses.
type Endpoint struct {
	Name, Namespace string
	// Labels are the identity labels as Cilium's selectors see them:
	// sources k8s, unspec and any unprefixed, others as "source.key".
	Labels map[string]string
	IPs    []netip.Addr
	// Node is the address of the node the endpoint runs on
	// (status.networking.node), empty when not known.
	Node string
	Pos  Position
}

func readEndpoint(n *yaml.Node, pos Position) *Endpoint {
	meta := yamlnode.Get(n, "metadata")
	status := yamlnode.Get(n, "status")
	var labels, ips []string
	if ls := yamlnode.Get(yamlnode.Get(status, "identity"), "labels"); ls != nil && ls.Kind == yaml.SequenceNode {
		for _, l := range ls.Content {
			labels = append(labels, yamlnode.Str(l))
		}
	}
	if as := yamlnode.Get(yamlnode.Get(status, "networking"), "addressing"); as != nil && as.Kind == yaml.SequenceNode {
		for _, a := range as.Content {
			for _, f := range []string{"ipv4", "ipv6"} {
				ips = append(ips, yamlnode.Str(yamlnode.Get(a, f)))
			}
		}
	}
	e := NewEndpoint(yamlnode.Str(yamlnode.Get(meta, "name")), yamlnode.Str(yamlnode.Get(meta, "namespace")), labels, ips, pos)
	e.Node = yamlnode.Str(yamlnode.Get(yamlnode.Get(status, "networking"), "node"))
	return e
}

// NewEndpoint builds an Endpoint from a CiliumEndpoint's fields: its
// identity labels as Cilium writes them (status.identity.labels,
// "source:key=value") and the addresses of status.networking.addressing
// (strings that are not addresses, empty ones included, are skipped).
func NewEndpoint(name, namespace string, identityLabels, ips []string, pos Position) *Endpoint {
	e := &Endpoint{Name: name, Namespace: namespace, Labels: make(map[string]string, len(identityLabels)+1), Pos: pos}
	for _, l := range identityLabels {
		if k, v := parseIdentityLabel(l); k != "" {
			e.Labels[k] = v
		}
	}
	if _, ok := e.Labels[PodNamespaceLabel]; !ok && e.Namespace != "" {
		e.Labels[PodNamespaceLabel] = e.Namespace
	}
	for _, s := range ips {
		if ip, err := netip.ParseAddr(s); err == nil {
			e.IPs = append(e.IPs, ip)
		}
	}
	return e
}

// parseIdentityLabel reads "source:key=value" the way Cilium's
// K8sStringMap presents it to selectors.
func parseIdentityLabel(s string) (key, value string) {
	source := "unspec"
	if i := strings.IndexByte(s, ':'); i >= 0 && (strings.IndexByte(s, '=') < 0 || i < strings.IndexByte(s, '=')) {
		source, s = s[:i], s[i+1:]
	}
	key, value, _ = strings.Cut(s, "=")
	switch source {
	case "k8s", "unspec", "any", "":
		return key, value
	}
	return source + "." + key, value
}

// Requirement is one matchExpressions entry.
type Requirement struct {
	Key      string
	Operator string // In, NotIn, Exists, DoesNotExist
	Values   []string
}

// Selector is a label selector over endpoint labels: all must hold.
type Selector struct {
	MatchLabels      map[string]string
	MatchExpressions []Requirement
}

// Matches reports whether labels satisfy the selector.
func (s Selector) Matches(labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		v, ok := labels[r.Key]
		switch r.Operator {
		case "In":
			if !ok || !contains(r.Values, v) {
				return false
			}
		case "NotIn":
			if ok && contains(r.Values, v) {
				return false
			}
		case "Exists":
			if !ok {
				return false
			}
		case "DoesNotExist":
			if ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// Spec is what egwct needs of a CiliumEgressGatewayPolicy's spec.
type Spec struct {
	// Selectors select endpoints; an endpoint matching any is selected.
	Selectors []Selector
	// NodeSelectors are set on selectors that also restrict the pod's
	// node (Cilium 1.17+); egwct cannot check nodes from manifests.
	NodeSelectors    bool
	DestinationCIDRs []netip.Prefix
	ExcludedCIDRs    []netip.Prefix
}

// SpecError is a spec egwct cannot use.
type SpecError struct {
	Pos Position
	Msg string
}

func (e *SpecError) Error() string { return e.Pos.String() + ": " + e.Msg }

// ParseSpec reads the selectors and CIDRs of a policy, combining pod and
// namespace selectors as Cilium's ParseCEGP does: namespace selector keys
// are prefixed with io.cilium.k8s.namespace.labels., and an empty
// namespace selector means "any namespace" (the pod namespace label exists).
func (p *Policy) ParseSpec() (*Spec, error) {
	spec := yamlnode.Get(p.Object, "spec")
	out := &Spec{}
	pos := func(n *yaml.Node) Position { return Position{File: p.Pos.File, Line: n.Line, Column: n.Column} }
	if sels := yamlnode.Get(spec, "selectors"); sels != nil {
		for _, sel := range sels.Content {
			var s Selector
			ns, pod := yamlnode.Get(sel, "namespaceSelector"), yamlnode.Get(sel, "podSelector")
			if ns == nil && pod == nil {
				continue
			}
			if err := addSelector(&s, pod, "", pos); err != nil {
				return nil, err
			}
			if ns != nil {
				if err := addSelector(&s, ns, PodNamespaceMetaLabels+".", pos); err != nil {
					return nil, err
				}
				if entries(yamlnode.Get(ns, "matchLabels"))+entries(yamlnode.Get(ns, "matchExpressions")) == 0 {
					s.MatchExpressions = append(s.MatchExpressions, Requirement{Key: PodNamespaceLabel, Operator: "Exists"})
				}
			}
			if yamlnode.Get(sel, "nodeSelector") != nil {
				out.NodeSelectors = true
			}
			out.Selectors = append(out.Selectors, s)
		}
	}
	for _, f := range []struct {
		name string
		dst  *[]netip.Prefix
	}{{"destinationCIDRs", &out.DestinationCIDRs}, {"excludedCIDRs", &out.ExcludedCIDRs}} {
		list := yamlnode.Get(spec, f.name)
		if list == nil {
			continue
		}
		for _, c := range list.Content {
			pfx, err := netip.ParsePrefix(yamlnode.Str(c))
			if err != nil {
				return nil, &SpecError{pos(c), fmt.Sprintf("spec.%s: %q is not a CIDR", f.name, yamlnode.Str(c))}
			}
			*f.dst = append(*f.dst, pfx.Masked())
		}
	}
	return out, nil
}

func entries(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return len(n.Content)
}

func addSelector(s *Selector, n *yaml.Node, prefix string, pos func(*yaml.Node) Position) error {
	if n == nil {
		return nil
	}
	if ml := yamlnode.Get(n, "matchLabels"); ml != nil {
		if s.MatchLabels == nil {
			s.MatchLabels = map[string]string{}
		}
		for i := 0; i+1 < len(ml.Content); i += 2 {
			s.MatchLabels[prefix+ml.Content[i].Value] = yamlnode.Str(ml.Content[i+1])
		}
	}
	if me := yamlnode.Get(n, "matchExpressions"); me != nil {
		for _, e := range me.Content {
			r := Requirement{Key: prefix + yamlnode.Str(yamlnode.Get(e, "key")), Operator: yamlnode.Str(yamlnode.Get(e, "operator"))}
			switch r.Operator {
			case "In", "NotIn", "Exists", "DoesNotExist":
			default:
				return &SpecError{pos(e), fmt.Sprintf("matchExpressions: unknown operator %q", r.Operator)}
			}
			if vs := yamlnode.Get(e, "values"); vs != nil {
				for _, v := range vs.Content {
					r.Values = append(r.Values, yamlnode.Str(v))
				}
			}
			s.MatchExpressions = append(s.MatchExpressions, r)
		}
	}
	return nil
}

// Key is one (pod, destination CIDR) entry, keyed as Cilium's egress
// policy map: the pod exactly, the destination by longest prefix.
type Key struct {
	Pod  netip.Addr
	Dest netip.Prefix
	// Excluded marks an excludedCIDR: flows to it belong to no policy.
	Excluded bool
}

// Keys resolves the spec against endpoints: one key per selected endpoint
// address and destination CIDR, plus one per excluded CIDR, for the
// address families in families (4, 6).
func (s *Spec) Keys(eps []*Endpoint, families ...int) []Key {
	return s.KeysIn(IndexEndpoints(eps), families...)
}

// EndpointIndex indexes endpoints by label, so that resolving many
// policies against tens of thousands of endpoints looks only at the
// endpoints that carry one of each selector's labels.
type EndpointIndex struct {
	all     []*Endpoint
	byLabel map[string][]int32 // "key=value" → positions in all
}

// IndexEndpoints indexes eps (kept, not copied).
func IndexEndpoints(eps []*Endpoint) *EndpointIndex {
	ix := &EndpointIndex{all: eps, byLabel: map[string][]int32{}}
	for i, e := range eps {
		for k, v := range e.Labels {
			l := k + "=" + v
			ix.byLabel[l] = append(ix.byLabel[l], int32(i))
		}
	}
	return ix
}

// Len is the number of endpoints indexed.
func (ix *EndpointIndex) Len() int { return len(ix.all) }

// candidates are the positions of the endpoints a selector may select:
// those with its rarest matchLabels pair, or all (nil, true) when it has
// none.
func (ix *EndpointIndex) candidates(sel Selector) (pos []int32, all bool) {
	if len(sel.MatchLabels) == 0 {
		return nil, true
	}
	first := true
	for k, v := range sel.MatchLabels {
		p := ix.byLabel[k+"="+v]
		if first || len(p) < len(pos) {
			pos, first = p, false
		}
	}
	return pos, false
}

// KeysIn is Keys against indexed endpoints.
func (s *Spec) KeysIn(ix *EndpointIndex, families ...int) []Key {
	return s.SelectIn(ix, families...).Keys
}

// Selection is what a policy selects among indexed endpoints.
type Selection struct {
	// Keys are the (pod, CIDR) keys, sorted.
	Keys []Key
	// Pods is how many endpoints have at least one key; Nodes on how
	// many distinct nodes they run (endpoints whose node is not known
	// are not counted).
	Pods, Nodes int
}

// SelectIn is KeysIn with the number of pods and nodes the keys belong
// to.
func (s *Spec) SelectIn(ix *EndpointIndex, families ...int) Selection {
	want := map[int]bool{}
	for _, f := range families {
		want[f] = true
	}
	fam := func(a netip.Addr) int {
		if a.Is4() {
			return 4
		}
		return 6
	}
	var out []Key
	pods, nodes := 0, map[string]bool{}
	add := func(e *Endpoint) {
		before := len(out)
		for _, ip := range e.IPs {
			if !want[fam(ip)] {
				continue
			}
			for _, d := range s.DestinationCIDRs {
				if fam(d.Addr()) == fam(ip) {
					out = append(out, Key{Pod: ip, Dest: d})
				}
			}
			for _, d := range s.ExcludedCIDRs {
				if fam(d.Addr()) == fam(ip) {
					out = append(out, Key{Pod: ip, Dest: d, Excluded: true})
				}
			}
		}
		if len(out) > before {
			pods++
			if e.Node != "" {
				nodes[e.Node] = true
			}
		}
	}
	// An endpoint selected by several selectors counts once.
	var seen map[int32]bool
	if len(s.Selectors) > 1 {
		seen = map[int32]bool{}
	}
	for _, sel := range s.Selectors {
		pos, all := ix.candidates(sel)
		if all {
			pos = make([]int32, len(ix.all))
			for i := range pos {
				pos[i] = int32(i)
			}
		}
		for _, i := range pos {
			e := ix.all[i]
			if seen[i] || !sel.Matches(e.Labels) {
				continue
			}
			if seen != nil {
				seen[i] = true
			}
			add(e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Pod.Compare(out[j].Pod); c != 0 {
			return c < 0
		}
		if c := out[i].Dest.Addr().Compare(out[j].Dest.Addr()); c != 0 {
			return c < 0
		}
		return out[i].Dest.Bits() < out[j].Dest.Bits()
	})
	return Selection{Keys: out, Pods: pods, Nodes: len(nodes)}
}

func (s *Spec) selects(e *Endpoint) bool {
	for _, sel := range s.Selectors {
		if sel.Matches(e.Labels) {
			return true
		}
	}
	return false
}
