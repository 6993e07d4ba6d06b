package policy

import (
	"fmt"
	"strings"
	"testing"
)

const selectDoc = `apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: p}
spec:
  selectors:
  - podSelector:
      matchLabels: {app: web}
  - namespaceSelector:
      matchLabels: {team: batch}
    podSelector:
      matchExpressions:
      - {key: tier, operator: NotIn, values: [db]}
  - namespaceSelector: {}
    podSelector:
      matchLabels: {role: crawler}
  destinationCIDRs: [0.0.0.0/0, "2001:db8::/32"]
  excludedCIDRs: [10.0.0.0/8]
---
apiVersion: v1
kind: List
items:
- apiVersion: cilium.io/v2
  kind: CiliumEndpoint
  metadata: {name: web-1, namespace: shop}
  status:
    identity:
      labels: ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"]
    networking:
      addressing: [{ipv4: 10.1.0.1, ipv6: "fd00::1"}]
      node: 192.0.2.10
- apiVersion: cilium.io/v2
  kind: CiliumEndpoint
  metadata: {name: job-1, namespace: batch}
  status:
    identity:
      labels: ["k8s:tier=worker", "k8s:io.cilium.k8s.namespace.labels.team=batch", "k8s:io.kubernetes.pod.namespace=batch"]
    networking:
      addressing: [{ipv4: 10.1.0.2}]
      node: 192.0.2.10
- apiVersion: cilium.io/v2
  kind: CiliumEndpoint
  metadata: {name: db-1, namespace: batch}
  status:
    identity:
      labels: ["k8s:tier=db", "k8s:io.cilium.k8s.namespace.labels.team=batch", "k8s:io.kubernetes.pod.namespace=batch"]
    networking:
      addressing: [{ipv4: 10.1.0.3}]
      node: 192.0.2.12
- apiVersion: cilium.io/v2
  kind: CiliumEndpoint
  metadata: {name: crawler-1, namespace: other}
  status:
    identity:
      labels: ["k8s:role=crawler", "k8s:io.kubernetes.pod.namespace=other"]
    networking:
      addressing: [{ipv4: 10.1.0.4}]
      node: 192.0.2.11
- apiVersion: cilium.io/v2
  kind: CiliumEndpoint
  metadata: {name: crawler-2}
  status:
    identity:
      labels: ["k8s:role=crawler", "reserved:host"]
    networking:
      addressing: [{ipv4: 10.1.0.5}]
`

func TestSelect(t *testing.T) {
	var pols []*Policy
	var eps []*Endpoint
	if err := NewSource("s.yaml", []byte(selectDoc)).EachObject(
		func(p *Policy) { pols = append(pols, p) }, func(e *Endpoint) { eps = append(eps, e) }, nil); err != nil {
		t.Fatal(err)
	}
	if len(pols) != 1 || len(eps) != 5 {
		t.Fatalf("%d policies, %d endpoints", len(pols), len(eps))
	}
	if eps[4].Labels["reserved.host"] != "" || eps[0].IPs[1].String() != "fd00::1" {
		t.Errorf("labels %v ips %v", eps[4].Labels, eps[0].IPs)
	}
	spec, err := pols[0].ParseSpec()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range spec.Keys(eps, 4) {
		got = append(got, fmt.Sprintf("%s>%s%s", k.Pod, k.Dest, map[bool]string{true: "!"}[k.Excluded]))
	}
	// web-1 (pod selector), job-1 (namespace team=batch, not a db), crawler-1
	// (any namespace); not db-1 (NotIn), not crawler-2 (no namespace).
	want := "10.1.0.1>0.0.0.0/0 10.1.0.1>10.0.0.0/8! 10.1.0.2>0.0.0.0/0 10.1.0.2>10.0.0.0/8! 10.1.0.4>0.0.0.0/0 10.1.0.4>10.0.0.0/8!"
	if strings.Join(got, " ") != want {
		t.Errorf("keys\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	if n := len(spec.Keys(eps, 4, 6)); n != 7 {
		t.Errorf("with IPv6: %d keys, want 7", n)
	}
	if eps[0].Node != "192.0.2.10" || eps[4].Node != "" {
		t.Errorf("nodes %q %q", eps[0].Node, eps[4].Node)
	}
	// Pods and nodes count those with a key: web-1 and job-1 share a node;
	// db-1's node is not counted; with IPv6 alone only web-1 has a key.
	ix := IndexEndpoints(eps)
	for _, c := range []struct {
		families          []int
		keys, pods, nodes int
	}{{[]int{4}, 6, 3, 2}, {[]int{4, 6}, 7, 3, 2}, {[]int{6}, 1, 1, 1}} {
		sel := spec.SelectIn(ix, c.families...)
		if len(sel.Keys) != c.keys || sel.Pods != c.pods || sel.Nodes != c.nodes {
			t.Errorf("families %v: %d keys, %d pods, %d nodes; want %d, %d, %d", c.families, len(sel.Keys), sel.Pods, sel.Nodes, c.keys, c.pods, c.nodes)
		}
	}
}

func TestParseSpecErrors(t *testing.T) {
	for _, doc := range []string{
		"kind: CiliumEgressGatewayPolicy\nspec:\n  destinationCIDRs: [10.0.0.0/33]\n",
		"kind: CiliumEgressGatewayPolicy\nspec:\n  selectors:\n  - podSelector:\n      matchExpressions: [{key: a, operator: Like}]\n",
	} {
		m, err := Read("e.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Policies[0].ParseSpec(); err == nil || !strings.HasPrefix(err.Error(), "e.yaml:") {
			t.Errorf("%q: err = %v", doc, err)
		}
	}
}
