package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/egwct/egwct/internal/printer"
)

// schema compiles docs/schemas/NAME.json.
func schema(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	path, err := filepath.Abs(filepath.Join(repoRoot(t), "docs", "schemas", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s, err := c.Compile(path)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return s
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if dir == filepath.Dir(dir) {
			t.Fatal("no go.mod above", wd)
		}
	}
}

// checkSchema validates out against its schema, then checks that the
// schema refuses the same document with one field renamed (the first key
// of the first item, or of the document after its header).
func checkSchema(t *testing.T, name, out string) {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("%s: not JSON: %v\n%.300s", name, err, out)
	}
	s := schema(t, name)
	if err := s.Validate(doc); err != nil {
		t.Fatalf("%s: output does not match the schema: %v\n%.2000s", name, err, out)
	}
	target := doc.(map[string]any)
	if items, ok := target["items"].([]any); ok && len(items) > 0 {
		target = items[0].(map[string]any)
	}
	key := ""
	for k := range target {
		if k != "schemaVersion" && k != "kind" && k != "items" {
			key = k
			break
		}
	}
	if key == "" {
		t.Fatalf("%s: nothing to rename in %.300s", name, out)
	}
	target[key+"_renamed"] = target[key]
	delete(target, key)
	if err := s.Validate(doc); err == nil {
		t.Errorf("%s: the schema accepts the document with %q renamed", name, key)
	}
}

// TestSchemasNoKernel runs the commands that need no kernel and checks
// their JSON against docs/schemas.
func TestSchemasNoKernel(t *testing.T) {
	chdirRoot(t)
	tests := []struct {
		schema string
		args   []string
	}{
		{"validate-report", []string{"validate", "--cilium-version", "1.18.3", "-o", "json", "examples/"}},
		{"validate-report", []string{"validate", "--cilium-version", "1.14", "-o", "json", "examples/valid"}},
		{"profile-list", []string{"profiles", "list", "-o", "json"}},
		{"profile", []string{"profiles", "show", "1.15.1", "-o", "json"}},
		{"profile", []string{"profiles", "show", "main", "-o", "json"}},
		{"version", []string{"version", "-o", "json"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := run(t, "", tt.args...)
			if code > 1 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			checkSchema(t, tt.schema, out)
		})
	}
}

// TestSchemasApply checks apply's documents (filled as apply fills them)
// against their schemas.
func TestSchemasApply(t *testing.T) {
	res := printer.NewApplyResult("reclaim", "foreach", "auto: the cheapest engine, loaded", 1200, 1500*time.Millisecond, []printer.AppliedPolicy{
		{Policy: "payments-egress", Keys: 3, Entries: 1000, Expired: 10, DeletedCT: 10, DeletedNAT: 20, Refreshed: 1},
	})
	plan := printer.NewApplyPlan(4, 1, 0, []printer.PlannedPolicy{printer.NewPlannedPolicy("payments-egress", 3, [4]int{1, 2, 3, 4})},
		map[string]int{"192.0.2.10": 5, "192.0.2.9": 2})
	for name, v := range map[string]printer.View{"apply-result": res.View(), "apply-plan": plan.View()} {
		p, err := (&printer.Flags{Spec: printer.ApplySpec, Output: "json"}).Printer()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := p.Print(&b, v); err != nil {
			t.Fatal(err)
		}
		checkSchema(t, name, b.String())
	}
}

// TestSchemasLab runs ct, nat and egress list and top on a lab (root, a
// private bpffs) and checks their JSON against docs/schemas.
func TestSchemasLab(t *testing.T) {
	chdirRoot(t)
	dir := labDir(t)
	if code, out, errOut := run(t, "", "lab", "up", "--bpffs", dir, "--cilium-version", "1.18.3", "--flows", "200"); code != 0 {
		t.Fatalf("lab up: %s %s", out, errOut)
	}
	defer run(t, "", "lab", "down", "--bpffs", dir)
	node := []string{"--bpffs", dir, "--cilium-state-dir", dir + ".state", "--cilium-version", "1.18.3"}
	tests := []struct {
		schema string
		args   []string
	}{
		{"ct-entry-list", []string{"ct", "list"}},
		{"nat-entry-list", []string{"nat", "list"}},
		{"egress-entry-list", []string{"egress", "list"}},
		{"top-snapshot", []string{"top", "--once"}},
		{"top-snapshot", []string{"top", "--once", "--flows", ""}},
		{"apply-plan", []string{"apply", "--dry-run", "-f", dir + ".state/manifests"}},
		{"apply-result", []string{"apply", "-f", dir + ".state/manifests"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := run(t, "", append(append(tt.args, "-o", "json"), node...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			checkSchema(t, tt.schema, out)
		})
	}
}
