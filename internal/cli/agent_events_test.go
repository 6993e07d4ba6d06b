package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/k8stest"
)

const eventPolicies = `apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: events-good
  annotations:
    egwct.io/connection-timeouts: |
      bpfCtTimeoutRegularTcp: 15m
spec:
  selectors:
  - podSelector: {matchLabels: {app: events}}
  destinationCIDRs: ["192.0.2.0/24"]
  egressGateway: {nodeSelector: {matchLabels: {egress: "true"}}}
---
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: events-bad
  annotations:
    egwct.io/connection-timeouts: |
      bpfCtTimeoutRegularTCP: 5m
spec:
  selectors:
  - podSelector: {matchLabels: {app: events}}
  destinationCIDRs: ["192.0.2.0/24"]
  egressGateway: {nodeSelector: {matchLabels: {egress: "true"}}}
---
apiVersion: cilium.io/v2
kind: CiliumEndpoint
metadata: {name: events-1, namespace: default}
status:
  identity:
    labels: ["k8s:app=events", "k8s:io.kubernetes.pod.namespace=default"]
  networking:
    addressing: [{ipv4: 10.9.0.1}]
    node: 192.0.2.21
---
apiVersion: cilium.io/v2
kind: CiliumEndpoint
metadata: {name: events-2, namespace: default}
status:
  identity:
    labels: ["k8s:app=events", "k8s:io.kubernetes.pod.namespace=default"]
  networking:
    addressing: [{ipv4: 10.9.0.2}]
    node: 192.0.2.21
`

// TestAgentEvents: `egwct agent --from-cluster --events`, as the service
// account of deploy/egwct.yaml, puts a TimeoutsApplied Event on a good
// policy and an InvalidTimeouts Event with the finding on a bad one, where
// kubectl describe finds them; fixing the bad text gets it a
// TimeoutsApplied Event.
func TestAgentEvents(t *testing.T) {
	env := k8stest.Shared(t)
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "100"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	env.Reset(t)
	deploy(t, env)
	env.Create(t, eventPolicies)
	sa := env.User(t, serviceAccount[0], serviceAccount[1:]...)
	freeLease(t, env)
	logs, metrics := startClusterAgent(t, dir, sa, time.Minute, func(o *agentOptions) {
		o.events = eventOptions{On: true, Identity: "agent-under-test", LeaseNamespace: "egwct-system", LeaseName: cluster.DefaultLeaseName}
	})
	kube := env.Kube(t)
	ctx := context.Background()
	find := func(policy, reason string) *corev1.Event {
		// As kubectl describe searches: by the involved object.
		l, err := kube.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=CiliumEgressGatewayPolicy,involvedObject.name=" + policy})
		if err != nil {
			t.Fatal(err)
		}
		for i := range l.Items {
			if l.Items[i].Reason == reason {
				return &l.Items[i]
			}
		}
		return nil
	}
	eventually(t, "the agent's Events", func() bool {
		return find("events-good", "TimeoutsApplied") != nil && find("events-bad", "InvalidTimeouts") != nil
	})
	good, bad := find("events-good", "TimeoutsApplied"), find("events-bad", "InvalidTimeouts")
	if !strings.Contains(good.Message, "bpfCtTimeoutRegularTcp=15m0s in force for 2 (pod, CIDR) keys of 2 pods on 1 node") || good.Type != "Normal" {
		t.Errorf("TimeoutsApplied: %+v", good)
	}
	if !strings.Contains(bad.Message, `unknown key "bpfCtTimeoutRegularTCP"`) || !strings.Contains(bad.Message, `did you mean "bpfCtTimeoutRegularTcp"`) || bad.Type != "Warning" {
		t.Errorf("InvalidTimeouts: %+v", bad)
	}
	eventually(t, "the writer's metrics", func() bool {
		m := metrics()
		return strings.Contains(m, "egwct_events_writer 1") && strings.Contains(m, `egwct_events_written_total{reason="InvalidTimeouts"} 1`)
	})

	// The author fixes the text (an annotation: the generation stays).
	pols := env.Dynamic(t).Resource(cluster.PolicyResource)
	u, err := pols.Get(ctx, "events-bad", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u.SetAnnotations(map[string]string{"egwct.io/connection-timeouts": "bpfCtTimeoutRegularTcp: 5m\n"})
	if _, err := pols.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a TimeoutsApplied Event on the fixed policy", func() bool { return find("events-bad", "TimeoutsApplied") != nil })
	if t.Failed() {
		t.Log(logs)
	}
}

// freeLease deletes the Events' Lease an agent of an earlier test may
// still hold (it is released when an agent stops, unless the agent was
// killed), so that the next agent takes it at once instead of after the
// lease's 60 s.
func freeLease(t *testing.T, env *k8stest.Env) {
	t.Helper()
	err := env.Kube(t).CoordinationV1().Leases("egwct-system").Delete(context.Background(), cluster.DefaultLeaseName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}
