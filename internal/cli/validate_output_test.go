package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCaretPad: the caret under a finding's column keeps the line's tabs,
// so that it lands under the column however wide a terminal draws a tab.
func TestCaretPad(t *testing.T) {
	for _, tt := range []struct {
		line string
		col  int
		want string
	}{
		{"    key: 10", 5, "    "},
		{"    key:\t\t10", 11, "        \t\t"},
		{"\tkey: 10", 2, "\t"},
		{"    é: 10", 9, "        "},
		{"key", 1, ""},
		{"key", 0, ""},
		{"key", 9, "   "}, // past the end: under the end of the line
	} {
		if got := caretPad(tt.line, tt.col); got != tt.want {
			t.Errorf("caretPad(%q, %d) = %q, want %q", tt.line, tt.col, got, tt.want)
		}
	}
}

func TestValidateCaretUnderTab(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tab.yaml")
	os.WriteFile(file, []byte("apiVersion: cilium.io/v2\nkind: CiliumEgressGatewayPolicy\nmetadata:\n  name: p\nspec:\n  connection-timeouts: |\n    bpfCtTimeoutRegularAny:\t\t10\n"), 0o644)
	code, out, stderr := run(t, "", "validate", "--cilium-version", "1.18.3", file)
	if code != ExitFindings {
		t.Fatalf("exit %d; stderr %s", code, stderr)
	}
	want := "    7 | " + "    bpfCtTimeoutRegularAny:\t\t10\n" +
		"      | " + strings.Repeat(" ", len("    bpfCtTimeoutRegularAny:")) + "\t\t^\n"
	if !strings.Contains(out, want) {
		t.Errorf("output does not hold\n%s\n%s", want, out)
	}
}

// TestValidateCaretAfterBOM: the caret under a finding on line 1 of a file
// that begins with a byte order mark does not count the mark, as the
// finding's column does not.
func TestValidateCaretAfterBOM(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bom.json")
	os.WriteFile(file, []byte("\ufeff"+`{"kind": "CiliumEgressGatewayPolicy", "kind": "x"}`+"\n"), 0o644)
	_, out, _ := run(t, "", "validate", "--cilium-version", "1.18.3", file)
	want := "    1 | " + `{"kind": "CiliumEgressGatewayPolicy", "kind": "x"}` + "\n" +
		"      | " + strings.Repeat(" ", len(`{"kind": "CiliumEgressGatewayPolicy", `)) + "^\n"
	if !strings.Contains(out, want) {
		t.Errorf("output does not hold\n%s\n%s", want, out)
	}
}

// TestValidateSyntaxPosition: a YAML syntax error is at the same place in
// the text (line, caret), SARIF and GitHub outputs: the opening quote left
// unclosed, not the end of the file where the parser noticed it.
func TestValidateSyntaxPosition(t *testing.T) {
	file := filepath.Join(t.TempDir(), "quote.yaml")
	os.WriteFile(file, []byte("apiVersion: cilium.io/v2\nkind: CiliumEgressGatewayPolicy\nmetadata:\n  name: \"payments\nspec: {}\n"), 0o644)
	for _, tt := range []struct {
		format string
		want   []string
	}{
		{"text", []string{
			file + ":4:9: error: found unexpected end of stream while scanning a quoted scalar that starts here [yaml-syntax]",
			"    4 |   name: \"payments\n      |         ^\n",
		}},
		{"sarif", []string{`"startLine": 4,`, `"startColumn": 9`}},
		{"github", []string{"::error file=" + file + ",line=4,col=9,title=egwct yaml-syntax::found unexpected end of stream"}},
	} {
		code, out, stderr := run(t, "", "validate", "--cilium-version", "1.18.3", "-o", tt.format, file)
		if code != ExitFindings {
			t.Fatalf("-o %s: exit %d; stderr %s", tt.format, code, stderr)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("-o %s does not hold\n%s\n%s", tt.format, w, out)
			}
		}
	}
}
