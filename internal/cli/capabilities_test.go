package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/egwct/egwct/internal/printer"
)

// deployCapabilities reads the capabilities the DaemonSet in
// deploy/egwct.yaml adds.
func deployCapabilities(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("deploy", "egwct.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			t.Fatalf("no DaemonSet in deploy/egwct.yaml: %v", err)
		}
		if u.GetKind() != "DaemonSet" {
			continue
		}
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		caps, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "securityContext", "capabilities", "add")
		return caps
	}
}

// TestDeployCapabilitiesSuffice runs the real egwct binary on a lab node
// with only the capabilities deploy/egwct.yaml grants (the bounding set of
// a root process, as a container runtime sets it): apply works with a BPF
// engine. Without CAP_PERFMON (or CAP_SYS_ADMIN: a node that refuses
// every BPF program but allows map access) apply still works: auto falls
// back to the userspace engine, reclaims, and says which engine and why.
// Without CAP_BPF nothing works.
func TestDeployCapabilitiesSuffice(t *testing.T) {
	dir := labDir(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
	chdirRoot(t)
	caps := deployCapabilities(t)
	if len(caps) == 0 {
		t.Fatal("the DaemonSet adds no capabilities")
	}
	bin := filepath.Join(t.TempDir(), "egwct")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/egwct").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	// apply runs on a new lab with the capabilities given, and returns its
	// exit code, its document and its standard error.
	apply := func(caps []string) (int, printer.ApplyResult, string) {
		t.Helper()
		run(t, "", "lab", "down", "--bpffs", dir)
		if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "2000"); code != 0 {
			t.Fatalf("lab up: %s %s", out, errOut)
		}
		set := "-all"
		for _, c := range caps {
			set += ",+" + strings.ToLower(c)
		}
		cmd := exec.Command(setpriv, "--bounding-set", set, "--inh-caps=-all", "--", bin, "apply", "-o", "json",
			"--bpffs", dir, "--cilium-state-dir", dir+".state", "--cilium-version", "1.18.3", "-f", filepath.Join(dir+".state", "manifests"))
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		var doc printer.ApplyResult
		if code == 0 {
			if err := json.Unmarshal([]byte(out.String()), &doc); err != nil {
				t.Fatalf("apply -o json: %v: %s", err, out.String())
			}
		}
		return code, doc, errOut.String()
	}
	deleted := func(doc printer.ApplyResult) (n uint64) {
		for _, r := range doc.Policies {
			n += r.DeletedCT
		}
		return n
	}
	without := func(need string) []string {
		var fewer []string
		for _, c := range caps {
			if c != need {
				fewer = append(fewer, c)
			}
		}
		return fewer
	}

	code, doc, errOut := apply(caps)
	if code != 0 || len(doc.Policies) == 0 || deleted(doc) == 0 {
		t.Fatalf("apply with %v: exit %d, deleted %d: %+v %s", caps, code, deleted(doc), doc, errOut)
	}
	if doc.Engine == "userspace" {
		t.Logf("this kernel loads no BPF engine even with %v: %s", caps, doc.EngineReason)
	}
	for _, c := range []string{"PERFMON", "SYS_ADMIN"} {
		if !slices.Contains(caps, c) {
			continue
		}
		code, doc, errOut := apply(without(c))
		if code != 0 || deleted(doc) == 0 {
			t.Fatalf("apply without CAP_%s: exit %d, deleted %d: %s", c, code, deleted(doc), errOut)
		}
		if c == "PERFMON" && (doc.Engine != "userspace" || !strings.Contains(doc.EngineReason, "foreach refused: ") ||
			!strings.Contains(errOut, "with the userspace engine (auto: foreach refused: ")) {
			t.Errorf("without CAP_PERFMON: engine %q (%s), stderr %s", doc.Engine, doc.EngineReason, errOut)
		}
	}
	if code, _, errOut := apply(without("BPF")); code == 0 {
		t.Errorf("apply worked without CAP_BPF: is it needed? %s", errOut)
	}
}
