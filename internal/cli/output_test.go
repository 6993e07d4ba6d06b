package cli

import (
	"strings"
	"testing"
)

// TestOutputFlags: every command rejects an -o value it does not have
// with a usage error naming the ones it has, and keeps the old names.
func TestOutputFlags(t *testing.T) {
	chdirRoot(t)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"validate", "--cilium-version", "1.18", "-o", "wide", "examples/valid"}, 2, "use table, json, yaml, jsonpath=, jsonpath-file=, go-template=, go-template-file=, github"},
		{[]string{"validate", "--cilium-version", "1.18", "-o", "text", "examples/valid"}, 0, "ok:"},
		{[]string{"validate", "--cilium-version", "1.18", "-o", "jsonpath={.summary.errors}", "examples/valid"}, 0, "0"},
		{[]string{"validate", "--cilium-version", "1.18", "-o", "jsonpath={.summary", "examples/valid"}, 2, "-o jsonpath"},
		{[]string{"validate", "--cilium-version", "1.18", "-o", "go-template={{.nosuch}}", "examples/valid"}, 2, "-o go-template"},
		{[]string{"version", "-o", "text"}, 0, "egwct "},
		{[]string{"version", "-o", "name"}, 2, "use table, json, yaml"},
		{[]string{"version", "-o", "go-template={{.kind}}"}, 0, "Version"},
		{[]string{"profiles", "list", "-o", "name"}, 0, "1.18\n"},
		{[]string{"profiles", "list", "--no-headers"}, 0, "1.14"},
		{[]string{"profiles", "list", "-o", "json", "--no-headers"}, 2, "--no-headers is for table output"},
		{[]string{"profiles", "show", "1.18", "-o", "yaml"}, 0, "kind: Profile\n"},
		{[]string{"profiles", "show", "1.18", "-o", "wide"}, 2, "use table, json, yaml, name"},
		{[]string{"ct", "list", "--cilium-version", "1.18", "-o", "name"}, 2, "use table, wide, json, yaml, jsonpath="},
		{[]string{"nat", "list", "--cilium-version", "1.18", "-o", "jsonpath"}, 2, "needs a template"},
		{[]string{"egress", "list", "--cilium-version", "1.18", "-o", "xml"}, 2, "unknown output format"},
		{[]string{"top", "--cilium-version", "1.18", "-o", "wide"}, 2, "use table, json, yaml, name"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := run(t, "", tt.args...)
			if code != tt.code || !strings.Contains(out+errOut, tt.want) {
				t.Errorf("exit %d, want %d with %q:\n%s%s", code, tt.code, tt.want, out, errOut)
			}
		})
	}
}
