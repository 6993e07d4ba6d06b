package enforce

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egwct/egwct/internal/manifest"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

func testEnv(t testing.TB) *Env {
	t.Helper()
	res, err := profiles.Resolve("1.18.3")
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Resolution: res, Clock: nodeconfig.Clock{Mode: nodeconfig.Ktime}, Timeouts: map[profiles.State]time.Duration{}}
}

// cegp is a policy selecting app=APP towards 192.0.2.0/24 with a timeout
// text.
func cegp(name, app, text string) string {
	var ann string
	if text != "" {
		ann = "  annotations:\n    egwct.io/connection-timeouts: |\n"
		for _, l := range strings.Split(text, "\n") {
			ann += "      " + l + "\n"
		}
	}
	return fmt.Sprintf(`apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: %s
%sspec:
  destinationCIDRs: [192.0.2.0/24]
  selectors:
  - podSelector:
      matchLabels: {app: %s}
---
`, name, ann, app)
}

func cep(name, app, ip string) string {
	return fmt.Sprintf(`apiVersion: cilium.io/v2
kind: CiliumEndpoint
metadata: {name: %s, namespace: default}
status:
  identity: {labels: ["k8s:app=%s"]}
  networking: {addressing: [{ipv4: %s}]}
---
`, name, app, ip)
}

// objects parses files given as name → contents.
func objects(t testing.TB, files ...string) Objects {
	t.Helper()
	var in []manifest.Input
	for i := 0; i+1 < len(files); i += 2 {
		in = append(in, manifest.Input{Name: files[i], Data: []byte(files[i+1])})
	}
	o, err := Parse(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

type want struct {
	outcome Outcome
	keys    int
	est     time.Duration // established timeout in force (0: none)
}

func check(t *testing.T, step string, r *Resolved, wants map[string]want) {
	t.Helper()
	got := map[string]want{}
	for _, p := range r.Policies {
		got[p.Name] = want{p.Outcome, p.Keys, p.Timeouts[profiles.StateEstablished]}
	}
	if len(got) != len(wants) {
		t.Errorf("%s: policies %v, want %v", step, got, wants)
	}
	for name, w := range wants {
		if got[name] != w {
			t.Errorf("%s: %s is %+v, want %+v", step, name, got[name], w)
		}
	}
	inForce := 0
	for _, w := range wants {
		if w.outcome != Refused {
			inForce++
		}
	}
	if len(r.Set) != inForce {
		t.Errorf("%s: %d policies in the set, want %d", step, len(r.Set), inForce)
	}
}

// TestResolverIsolatesPolicies: a policy whose text turns invalid keeps
// its last valid timeouts (with the endpoints it selects now); one never
// valid is refused; every other policy and endpoint change still applies;
// a policy of a file that cannot be read keeps its last valid version; a
// policy that is gone is forgotten.
func TestResolverIsolatesPolicies(t *testing.T) {
	r := NewResolver(testEnv(t))
	eps := cep("a1", "a", "10.0.0.1") + cep("b1", "b", "10.0.0.2")
	good := cegp("pa", "a", "bpfCtTimeoutRegularTcp: 5m") + cegp("pb", "b", "bpfCtTimeoutRegularTcp: 10m")

	res := r.Resolve(objects(t, "p.yaml", good, "e.yaml", eps))
	check(t, "all valid", res, map[string]want{"pa": {Applied, 1, 5 * time.Minute}, "pb": {Applied, 1, 10 * time.Minute}})
	if res.Err() != nil {
		t.Errorf("Err: %v", res.Err())
	}

	// pa turns invalid, pb changes, and a's pods grow: pa keeps 5m for
	// both of its pods, pb's change applies.
	bad := cegp("pa", "a", "bpfCtTimeoutRegularTCP: 1m") + cegp("pb", "b", "bpfCtTimeoutRegularTcp: 7m") + cegp("pc", "b", "bpfCtTimeoutRegularTcp: 5")
	res = r.Resolve(objects(t, "p.yaml", bad, "e.yaml", eps+cep("a2", "a", "10.0.0.3")))
	check(t, "pa invalid", res, map[string]want{"pa": {Kept, 2, 5 * time.Minute}, "pb": {Applied, 1, 7 * time.Minute}, "pc": {Refused, 0, 0}})
	if res.Err() == nil || len(res.Findings) != 2 {
		t.Errorf("findings %v, want one of pa and one of pc", res.Findings)
	}
	for _, p := range res.Policies {
		if p.Outcome != Applied && (len(p.Findings) != 1 || p.Findings[0].Policy != p.Name) {
			t.Errorf("%s: findings %v", p.Name, p.Findings)
		}
	}
	if res.Set[0].Name != "pa" || res.Set[0].Timeouts[profiles.StateEstablished] != 300 {
		t.Errorf("set %+v", res.Set[0])
	}

	// The file of the policies is broken: every policy seen in it keeps
	// its last valid version; the endpoints still apply.
	res = r.Resolve(objects(t, "p.yaml", "kind: [", "e.yaml", eps))
	check(t, "file broken", res, map[string]want{"pa": {Kept, 1, 5 * time.Minute}, "pb": {Kept, 1, 7 * time.Minute}})

	// Fixed; pb gone, pa without a text: both are forgotten.
	res = r.Resolve(objects(t, "p.yaml", cegp("pa", "a", ""), "e.yaml", eps))
	check(t, "gone", res, map[string]want{})
	res = r.Resolve(objects(t, "p.yaml", bad, "e.yaml", eps))
	check(t, "invalid again, never valid since", res, map[string]want{"pa": {Refused, 0, 0}, "pb": {Applied, 1, 7 * time.Minute}, "pc": {Refused, 0, 0}})
}

// TestResolverKeys: keys are the selected pods' addresses with each
// destination, in a stable order.
func TestResolverKeys(t *testing.T) {
	r := NewResolver(testEnv(t))
	res := r.Resolve(objects(t, "p.yaml", cegp("pa", "a", "bpfCtTimeoutRegularTcp: 5m"),
		"e.yaml", cep("a2", "a", "10.0.0.9")+cep("a1", "a", "10.0.0.1")+cep("x", "x", "10.0.0.5")))
	if len(res.Set) != 1 || len(res.Set[0].Keys) != 2 {
		t.Fatalf("set %+v", res.Set)
	}
	if k := res.Set[0].Keys[0]; k.Pod != netip.MustParseAddr("10.0.0.1") || k.Dest != netip.MustParsePrefix("192.0.2.0/24") {
		t.Errorf("first key %+v", k)
	}
	if res.Endpoints != 3 || res.Keys() != 2 || res.Names()[1] != "pa" {
		t.Errorf("endpoints %d keys %d names %v", res.Endpoints, res.Keys(), res.Names())
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %v", res.Warnings)
	}
	res = r.Resolve(objects(t, "p.yaml", cegp("pa", "nobody", "bpfCtTimeoutRegularTcp: 5m")))
	if len(res.Warnings) != 1 || res.Warnings[0].Policy != "pa" || !strings.Contains(res.Warnings[0].Message, "selects no endpoint") {
		t.Errorf("warnings %v", res.Warnings)
	}
}

// TestResolverDuplicateNames: a policy given twice counts once, the last
// one, with a warning naming both.
func TestResolverDuplicateNames(t *testing.T) {
	r := NewResolver(testEnv(t))
	res := r.Resolve(objects(t, "a.yaml", cegp("pa", "a", "bpfCtTimeoutRegularTcp: 5m"), "b.yaml", cegp("pa", "a", "bpfCtTimeoutRegularTcp: 7m"), "e.yaml", cep("a1", "a", "10.0.0.1")))
	check(t, "duplicate", res, map[string]want{"pa": {Applied, 1, 7 * time.Minute}})
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0].Message, "b.yaml:1:1 counts, not a.yaml:1:1") {
		t.Errorf("warnings %v", res.Warnings)
	}
}
