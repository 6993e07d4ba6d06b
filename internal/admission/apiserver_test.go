package admission

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/egwct/egwct/internal/k8stest"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/validate"
)

const testVersion = "1.18.3"

// warnings collects the warnings the API server sends.
type warnings struct {
	mu  sync.Mutex
	all []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	w.all = append(w.all, text)
	w.mu.Unlock()
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.all
	w.all = nil
	return out
}

type server struct {
	env  *k8stest.Env
	dyn  dynamic.Interface
	warn *warnings
}

// start runs an API server whose CEGP schema keeps spec.connection-timeouts
// (a patched CRD: upstream's prunes it, and the text then lives in the
// annotation, which the policy reads too), with the policy installed.
func start(t *testing.T, actions ...admv1.ValidationAction) *server {
	t.Helper()
	env := k8stest.Start(t)
	s := &server{env: env, warn: &warnings{}}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = s.warn
	var err error
	if s.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	crd, err := s.dyn.Resource(crds).Get(ctx, "ciliumegressgatewaypolicies.cilium.io", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	for _, v := range versions {
		props := []string{"schema", "openAPIV3Schema", "properties", "spec", "properties", "connection-timeouts"}
		if err := unstructured.SetNestedField(v.(map[string]any), map[string]any{"x-kubernetes-preserve-unknown-fields": true}, props...); err != nil {
			t.Fatal(err)
		}
	}
	unstructured.SetNestedSlice(crd.Object, versions, "spec", "versions")
	if _, err := s.dyn.Resource(crds).Update(ctx, crd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := profiles.Resolve(testVersion)
	if err != nil {
		t.Fatal(err)
	}
	vap, bind := Generate(Options{Resolution: res, Actions: actions})
	kube := env.Kube(t)
	if _, err := kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, vap, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, bind, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The policy is in force once the server has seen it and the CRD's new
	// schema: a probe whose spec text has a bad key is refused (or warned).
	probe := cegp("probe", "", "bpfCtTimeoutRegularTCP: 5m\n")
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := s.create(probe)
		if err != nil || len(s.warn.take()) > 0 || slices.Contains(actions, admv1.Audit) && !slices.Contains(actions, admv1.Warn) && !slices.Contains(actions, admv1.Deny) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the admission policy did not come into force in 90 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Type-checking warnings of the policy, if any, are in its status.
	got, err := kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, Name, metav1.GetOptions{})
	if err == nil && got.Status.TypeChecking != nil && len(got.Status.TypeChecking.ExpressionWarnings) > 0 {
		t.Logf("type-checking warnings: %+v", got.Status.TypeChecking.ExpressionWarnings)
	}
	return s
}

// cegp is a policy with the text in the spec field and/or the annotation
// ("" leaves it out).
func cegp(name, ann, spec string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumEgressGatewayPolicy",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{
			"selectors":        []any{map[string]any{"podSelector": map[string]any{"matchLabels": map[string]any{"app": "x"}}}},
			"destinationCIDRs": []any{"0.0.0.0/0"},
			"egressGateway":    map[string]any{"nodeSelector": map[string]any{"matchLabels": map[string]any{"egress": "true"}}},
		},
	}}
	if ann != "" {
		u.SetAnnotations(map[string]string{policy.Annotation: ann})
	}
	if spec != "" {
		unstructured.SetNestedField(u.Object, spec, "spec", "connection-timeouts")
	}
	return u
}

// create sends obj as a dry run: admission runs, nothing is stored.
func (s *server) create(obj *unstructured.Unstructured) error {
	_, err := s.dyn.Resource(k8stest.Policies).Create(context.Background(), obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// validateObject runs egwct validate's checks on the object as JSON.
func validateObject(t *testing.T, obj *unstructured.Unstructured) validate.Result {
	t.Helper()
	res, err := profiles.Resolve(testVersion)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	v := validate.New(validate.Options{Resolution: res})
	var out validate.Result
	n := 0
	if err := policy.NewSource("obj.json", data).Each(func(p *policy.Policy) { out = v.Policy(p); n++ }, nil); err != nil || n != 1 {
		t.Fatalf("read back %d policies: %v\n%s", n, err, data)
	}
	return out
}

// yamlPrintable reports whether s is free of the characters that JSON
// carries raw but YAML refuses raw in a stream (YAML 1.2, 5.1): DEL, the
// C1 controls but NEL, U+FFFE and U+FFFF. (JSON escapes C0 controls, which
// YAML reads as escapes.)
func yamlPrintable(s string) bool {
	for _, r := range s {
		if r == 0x7f || (r >= 0x80 && r <= 0x9f && r != 0x85) || r == 0xfffe || r == 0xffff {
			return false
		}
	}
	return true
}

func errorFindings(r validate.Result) []validate.Finding {
	var out []validate.Finding
	for _, f := range r.Findings {
		if f.Severity == validate.Error {
			out = append(out, f)
		}
	}
	return out
}

// TestExamples: every policy of examples/invalid is refused with a
// message that names each offending key (or the rule when the finding has
// no key), every policy of examples/valid is accepted; and the message is
// egwct's.
func TestExamples(t *testing.T) {
	s := start(t, admv1.Deny)
	files, _ := filepath.Glob("../../examples/*/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	refused := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		invalid := strings.Contains(file, "/invalid/")
		for _, doc := range strings.Split(string(data), "\n---") {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil || u.GetKind() != "CiliumEgressGatewayPolicy" {
				continue
			}
			name := fmt.Sprintf("%s/%s", filepath.Base(file), u.GetName())
			t.Run(name, func(t *testing.T) {
				errs := errorFindings(validateObject(t, u))
				err := s.create(u)
				switch {
				case invalid && len(errs) == 0:
					t.Fatalf("an example in examples/invalid without errors")
				case !invalid && err != nil:
					t.Fatalf("a valid example is refused: %v", err)
				case !invalid:
					return
				case err == nil:
					t.Fatalf("accepted; egwct validate reports %v", errs)
				case !apierrors.IsInvalid(err) && !strings.Contains(err.Error(), "egwct"):
					t.Fatalf("refused, but not by egwct: %v", err)
				}
				refused++
				for _, f := range errs {
					want := f.Key
					if want == "" {
						want = f.Rule + ": "
					}
					if !strings.Contains(err.Error(), want) {
						t.Errorf("the message does not name %q (%s):\n%v", want, f.Rule, err)
					}
				}
				t.Logf("%v", err)
			})
		}
	}
	if refused < 4 {
		t.Errorf("%d invalid examples refused, want every one (4)", refused)
	}
}

// TestWarnAndAudit: with Warn the object is accepted and kubectl's
// warning carries egwct's message; with Audit it is accepted silently.
func TestWarnAndAudit(t *testing.T) {
	s := start(t, admv1.Warn, admv1.Audit)
	s.warn.take()
	if err := s.create(cegp("warned", "bpfCtTimeoutRegularTcp: 300\n", "")); err != nil {
		t.Fatalf("refused with Warn: %v", err)
	}
	w := s.warn.take()
	if len(w) == 0 || !strings.Contains(strings.Join(w, "\n"), `bpfCtTimeoutRegularTcp: "300" has no unit`) {
		t.Errorf("warnings = %q", w)
	}
	if err := s.create(cegp("fine", "bpfCtTimeoutRegularTcp: 5m\n", "")); err != nil || len(s.warn.take()) != 0 {
		t.Errorf("a good policy: %v", err)
	}
}

// The differential test: the admission policy and egwct validate agree on
// every text of the corpus wherever the policy decides. The policy does
// not decide a value that is a Go duration but not Simple (see the
// package doc); everything else it decides.

// corpus returns timeout texts: the fuzz corpus of pkg/policy (and the
// local fuzz cache, when `make fuzz` has filled one), and texts made from
// the pieces people get wrong.
func corpus(t *testing.T) []string {
	var out []string
	read := func(dir string, wrap func(string) string, limit int) {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for i, f := range files {
			if i == limit {
				break
			}
			data, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(strings.NewReader(string(data)))
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "string(") && strings.HasSuffix(line, ")") {
					if s, err := strconv.Unquote(line[len("string(") : len(line)-1]); err == nil {
						out = append(out, wrap(s))
					}
				}
			}
		}
	}
	id := func(s string) string { return s }
	asValue := func(s string) string { return "bpfCtTimeoutRegularTcp: " + s + "\n" }
	read("../../pkg/policy/testdata/fuzz/FuzzParseText", id, -1)
	read("../../pkg/policy/testdata/fuzz/FuzzParseDuration", asValue, -1)
	if cache, err := exec.Command("go", "env", "GOCACHE").Output(); err == nil {
		base := filepath.Join(strings.TrimSpace(string(cache)), "fuzz", "github.com", "egwct", "egwct", "pkg", "policy")
		read(filepath.Join(base, "FuzzParseText"), id, 300)
		read(filepath.Join(base, "FuzzParseDuration"), asValue, 300)
	}
	// The seeds of pkg/policy's fuzz targets.
	out = append(out,
		"bpfCtTimeoutRegularTcp: 5m\n# c\n\nbpfCtTimeoutRegularAny: '30s' # x\r\n",
		": x\nk:\nk = v\n\t  a:b:c",
		"\x00:\xff\n",
	)
	keys := []string{"bpfCtTimeoutRegularTcp", "bpfCtTimeoutRegularTcpSyn", "bpfCtTimeoutRegularTcpFin", "bpfCtTimeoutRegularAny",
		"bpfCtTimeoutRegularTCP", "bpf-ct-timeout-regular-any", "bpfCtTimeoutServiceTcp", "udp", "regular_tcp", "bpfCtTimeoutRegularTpc", "x"}
	values := []string{"30s", "5m", "1h30m", "1.5s", "0.5s", "300", "-5", "0", "0s", "-0s", "+5m", "5 m", "5M", "1d", "1e9", ".5s", "5.s",
		"9223372036854775807ns", "2562047h", "99999999999h", "8000s", "8000.999999999s", "8001s", "8000999999999ns", "8001000000000ns",
		"2h13m20s", "2h13m21s", "133m20.5s", "60s", "61s", "60.999s", "1m1s", "10s", "11s", "10.5s", "1000000000000s",
		"'30s'", "\"30s\"", "''", "\"\"", "'30s", "30s # comment", "30s#x", "#30s", "1µs", "1μs", "1us", "5h5h", "1.0000000001s",
		"0.000000001s", "0.0000000001s", "inf", "NaN", "0x10s", "1_000s", "١s", "30S"}
	for i, k := range keys {
		for j, v := range values {
			out = append(out, k+": "+v+"\n")
			if (i+j)%7 == 0 {
				out = append(out, "  "+k+" :\t"+v+"  \r\n"+keys[(i+1)%len(keys)]+": "+values[(j+3)%len(values)]+"\n")
			}
		}
	}
	out = append(out,
		"bpfCtTimeoutRegularTcp: 5m\nbpfCtTimeoutRegularTcp: 6m\n",
		"bpfCtTimeoutRegularTcp: 5m\nbpfCtTimeoutRegularTcp: 5m\n",
		"bpfCtTimeoutRegularTcp 5m\n",
		"bpfCtTimeoutRegularTcp = 5m\n",
		"bpfCtTimeoutRegularTcp:\n",
		"bpfCtTimeoutRegularTcp: # none\n",
		"\n\n# only comments\n   \n",
		"\r\r\n",
		"a: b: c\n",
		"  : 5m\n",
		strings.Repeat("# padding\n", 7000)+"bpfCtTimeoutRegularTcp: 5m\n",
	)
	return out
}

// undecided says whether a finding is one the policy leaves to egwct
// validate: a value of a known key that is a Go duration but not Simple.
func undecided(f validate.Finding, text string) bool {
	switch f.Rule {
	case validate.RuleAboveNode.ID, validate.RuleNonPositive.ID, validate.RuleBadDuration.ID:
	default:
		return false
	}
	for _, e := range policy.ParseText(text).Entries {
		if e.Key == f.Key {
			return regexp.MustCompile(GoDuration).MatchString(e.Value) && !regexp.MustCompile(Simple).MatchString(e.Value)
		}
	}
	return false
}

func TestDifferential(t *testing.T) {
	s := start(t, admv1.Deny)
	texts := corpus(t)
	agree, undecidedN, unprintable := 0, 0, 0
	for i, text := range texts {
		obj := cegp(fmt.Sprintf("d%d", i), text, "")
		// What the API server stores is JSON: invalid UTF-8 becomes U+FFFD.
		js, _ := json.Marshal(text)
		var stored string
		json.Unmarshal(js, &stored)
		obj.SetAnnotations(map[string]string{policy.Annotation: stored})
		if stored == "" {
			continue
		}
		// A text with a character YAML refuses raw (DEL, C1 controls) is
		// carried raw by the JSON validateObject writes: not comparable.
		if !yamlPrintable(stored) {
			unprintable++
			continue
		}
		errs := errorFindings(validateObject(t, obj))
		err := s.create(obj)
		if err != nil && !strings.Contains(err.Error(), "egwct") {
			t.Errorf("text %q refused, but not by egwct: %v", stored, err)
			continue
		}
		var decided []validate.Finding
		for _, f := range errs {
			if undecided(f, stored) {
				undecidedN++
				continue
			}
			decided = append(decided, f)
		}
		switch {
		case err != nil && len(errs) == 0:
			t.Errorf("text %q: refused, but egwct validate finds no error: %v", stored, err)
		case err == nil && len(decided) > 0:
			t.Errorf("text %q: accepted, but egwct validate finds %v", stored, decided)
		default:
			agree++
		}
	}
	t.Logf("%d texts: admission and egwct validate agree on %d; %d findings left to egwct validate (values that are not Simple); %d texts not printable in YAML", len(texts), agree, undecidedN, unprintable)
	if agree < 500 {
		t.Errorf("only %d texts compared", agree)
	}
}
