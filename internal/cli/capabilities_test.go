package cli

import (
	"os"
	"os/exec"
	"path/filepath"
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
// a root process, as a container runtime sets it): apply works, and each
// of CAP_BPF and CAP_PERFMON is needed.
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
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "2000"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	apply := func(caps []string) (int, string, string) {
		t.Helper()
		run(t, "", "reset", "--bpffs", dir)
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
		return code, out.String(), errOut.String()
	}

	code, out, errOut := apply(caps)
	var rows []printer.AppliedPolicy
	if code != 0 || unmarshalApply(out, &rows) != nil || len(rows) == 0 {
		t.Fatalf("apply with %v: exit %d: %s %s", caps, code, out, errOut)
	}
	var deleted uint64
	for _, r := range rows {
		deleted += r.DeletedCT
	}
	if deleted == 0 {
		t.Errorf("apply with %v deleted nothing: %s", caps, out)
	}
	for _, need := range []string{"BPF", "PERFMON"} {
		var fewer []string
		for _, c := range caps {
			if c != need {
				fewer = append(fewer, c)
			}
		}
		if code, _, errOut := apply(fewer); code == 0 {
			t.Errorf("apply worked without CAP_%s: is it needed? %s", need, errOut)
		}
	}
}
