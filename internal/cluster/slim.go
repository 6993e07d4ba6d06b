package cluster

import (
	"errors"
	"fmt"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/egwct/egwct/pkg/policy"
)

// EndpointOf reads what egwct needs of a CiliumEndpoint: its identity
// labels, addresses and node. Nothing of the object is kept, so that tens of
// thousands of endpoints cost little memory, and nothing is marshalled.
func EndpointOf(u *unstructured.Unstructured) *policy.Endpoint {
	labels, _, _ := unstructured.NestedStringSlice(u.Object, "status", "identity", "labels")
	var ips []string
	addrs, _, _ := unstructured.NestedSlice(u.Object, "status", "networking", "addressing")
	for _, a := range addrs {
		m, ok := a.(map[string]any)
		if !ok {
			continue
		}
		for _, f := range []string{"ipv4", "ipv6"} {
			if s, ok := m[f].(string); ok {
				ips = append(ips, s)
			}
		}
	}
	e := policy.NewEndpoint(u.GetName(), u.GetNamespace(), labels, ips, policy.Position{File: ObjectName(u)})
	// Thousands of endpoints share a few hundred nodes.
	if node, _, _ := unstructured.NestedString(u.Object, "status", "networking", "node"); node != "" {
		e.Node = unique.Make(node).Value()
	}
	return e
}

// PolicyOf parses a CiliumEgressGatewayPolicy the way manifest files are
// parsed, from its YAML (without managedFields), named cegp/NAME.
func PolicyOf(u *unstructured.Unstructured) (*policy.Policy, error) {
	o, err := ToObject(u)
	if err != nil {
		return nil, err
	}
	var p *policy.Policy
	err = policy.NewSource(o.Name, o.YAML).Each(func(got *policy.Policy) { p = got }, nil)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("%s: not a CiliumEgressGatewayPolicy", o.Name)
	}
	return p, nil
}

// slim is what an informer keeps of an object: its name for the
// informer's bookkeeping, and egwct's reading of it. It is small on
// purpose (no ObjectMeta): tens of thousands of endpoints are kept.
type slim struct {
	name, namespace, resourceVersion string
	endpoint                         *policy.Endpoint
	policy                           *policy.Policy
	err                              error // the policy could not be read
}

// GetObjectMeta gives the informer's key functions the object's
// metadata, made on demand.
func (s *slim) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: s.name, Namespace: s.namespace, ResourceVersion: s.resourceVersion}
}

// GetObjectKind implements runtime.Object.
func (s *slim) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject returns the object itself: slim objects are never
// changed once made.
func (s *slim) DeepCopyObject() runtime.Object { return s }

// slimmer returns an informer transform that replaces every object by its
// slim reading. Label keys and values are interned (unique): the same
// label on thousands of endpoints is kept once.
func slimmer(endpoints bool) func(any) (any, error) {
	return func(obj any) (any, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return obj, nil // already slim, or a tombstone
		}
		s := &slim{name: u.GetName(), namespace: intern(u.GetNamespace()), resourceVersion: u.GetResourceVersion()}
		if endpoints {
			e := EndpointOf(u)
			labels := make(map[string]string, len(e.Labels))
			for k, v := range e.Labels {
				labels[intern(k)] = intern(v)
			}
			e.Labels, e.Namespace = labels, s.namespace
			s.endpoint = e
		} else {
			s.policy, s.err = PolicyOf(u)
		}
		return s, nil
	}
}

// intern returns the one copy of s the process keeps while any is in use.
func intern(s string) string { return unique.Make(s).Value() }

var errNotSlim = errors.New("informer object of an unexpected type")
