package policy

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// TestReadSyntaxPosition: a YAML syntax error is placed where a person
// editing a policy would point: the mis-indented key, the tab, the quote
// or bracket left open. The YAML reader alone gave the line of the mapping
// above, or one line short, and no column.
func TestReadSyntaxPosition(t *testing.T) {
	const head = "apiVersion: cilium.io/v2\nkind: CiliumEgressGatewayPolicy\n"
	for _, tc := range []struct {
		name, doc string
		line, col int    // 0: no error
		msg       string // a part of the message
	}{
		{"key indented less", head + "metadata:\n  name: payments-egress\n labels: {}\n", 5, 2, "did not find expected key"},
		{"key indented more after a mapping", head + "metadata:\n  name: a\nspec:\n  egressGateway:\n    nodeSelector: {}\n      egressIP: 10.0.0.1\n", 8, 7, "did not find expected key"},
		{"key indented more after a value", head + "metadata:\n  name: a\nspec:\n  egressGateway:\n    egressIP: 10.0.0.1\n     nodeSelector: {}\n", 8, 6, "indented deeper"},
		{"key indented more after a blank line", head + "spec:\n  egressGateway:\n    egressIP: 10.0.0.1\n\n      nodeSelector: {}\n", 7, 7, "indented deeper"},
		{"key indented more after a comment", head + "spec:\n  egressGateway:\n    egressIP: 10.0.0.1\n    # the gateway\n      nodeSelector: {}\n", 7, 7, "did not find expected key"},
		{"tab as indentation", head + "metadata:\n\tname: a\n", 4, 1, "cannot start any token"},
		{"tab inside a block", head + "metadata:\n  name: a\nspec:\n  egressGateway:\n\tegressIP: 10.0.0.1\n", 7, 1, "cannot start any token"},
		{"line of only a tab", head + "metadata:\n  name: a\n\t\nspec: {}\n", 5, 1, "found a tab character that violates indentation"},
		{"tab before a comment, after a blank line", head + "metadata:\n  name: a\n\n  \t# the spec\nspec: {}\n", 6, 3, "found a tab character that violates indentation"},
		{"line of only a tab at the end", head + "metadata:\n  name: a\nspec: {}\n\t\n", 6, 1, "found character that cannot start any token"},
		{"only a tab", "\t\n", 1, 1, "found character that cannot start any token"},
		{"flow sequence left open", head + "metadata:\n  name: a\nspec:\n  destinationCIDRs: [10.0.0.0/8, 192.168.0.0/16\n  egressGateway:\n    egressIP: 10.0.0.1\n", 6, 21, "did not find expected ',' or ']' at line 7, column 16, while parsing a flow sequence that starts here"},
		{"flow mapping left open", head + "metadata: {name: a\nspec:\n  destinationCIDRs: []\n", 3, 11, "while parsing a flow mapping that starts here"},
		{"double quote left open", head + "metadata:\n  name: \"payments-egress\nspec:\n  destinationCIDRs: []\n", 4, 9, "found unexpected end of stream while scanning a quoted scalar that starts here"},
		{"single quote left open", head + "metadata:\n  name: 'payments-egress\nspec:\n  destinationCIDRs: []\n", 4, 9, "quoted scalar"},
		{"colon in a value", head + "metadata:\n  name: payments: egress\n", 4, 17, "mapping values are not allowed in this context"},
		{"list item indented less", head + "spec:\n  destinationCIDRs:\n  - 10.0.0.0/8\n - 192.168.0.0/16\n", 6, 2, "did not find expected key"},
		{"list item where a key belongs", head + "spec:\n  selectors:\n  - podSelector: {}\n  egressGateway: {}\n  - namespaceSelector: {}\n", 7, 3, "did not find expected key"},
		{"four dashes as a separator", head + "metadata:\n  name: a\n----\n" + head, 5, 1, "could not find expected ':' at line 6, column 1, while scanning a simple key"},
		{"key on the separator line", "--- " + head + "metadata: {name: a}\n", 1, 15, "mapping values are not allowed"},
		{"empty key, child indented less", head + "metadata:\n  annotations:\n egwct.io/connection-timeouts: x\n", 5, 2, "did not find expected key"},
		{"block scalar line indented less", head + "spec:\n  connection-timeouts: |\n    bpfCtTimeoutRegularTcp: 5m\n   bpfCtTimeoutRegularAny: 1m\n", 6, 4, "did not find expected key"},
		{"block scalar first line indented more", head + "spec:\n  connection-timeouts: |\n      bpfCtTimeoutRegularTcp: 5m\n    bpfCtTimeoutRegularAny: 1m\n", 6, 5, "did not find expected key"},
		{"CRLF", strings.ReplaceAll(head+"metadata:\n  name: a\n labels: {}\n", "\n", "\r\n"), 5, 2, "did not find expected key"},
		{"CRLF, quote left open", strings.ReplaceAll(head+"metadata:\n  name: \"a\nspec: {}\n", "\n", "\r\n"), 4, 9, "quoted scalar"},
		{"BOM, quote left open", "\ufeffkind: \"CiliumEgressGatewayPolicy\nmetadata: {}\n", 1, 7, "quoted scalar"},
		{"BOM, line 2", "\ufeff" + head + "metadata: {name: a: b}\n", 3, 19, "did not find expected ',' or '}'"},
		{"second document", head + "metadata: {name: a}\n---\n" + head + "metadata:\n  name: b\n labels: {}\n", 9, 2, "did not find expected key"},
		{"last line, quote left open", head + "metadata:\n  name: \"a", 4, 9, "found unexpected end of stream while"},
		{"last line, sequence left open", head + "spec:\n  destinationCIDRs: [10.0.0.0/8", 4, 21, "did not find expected ',' or ']' while parsing a flow sequence"},
		{"last line, comma then nothing", head + "spec:\n  destinationCIDRs: [10.0.0.0/8,\n", 4, 33, "did not find expected node content"},
		{"last line, comma then commented-out lines", head + "spec:\n  destinationCIDRs: [10.0.0.0/8,\n#  192.168.0.0/16]\n  # to come\n\n", 4, 33, "did not find expected node content"},
		{"last line, comma then a comment", head + "spec:\n  destinationCIDRs: [10.0.0.0/8, # to come\n", 4, 33, "did not find expected node content"},
		{"last line, quoted comma then a comment", head + "spec:\n  destinationCIDRs: ['#1', \"a #b\", # to come\n", 4, 35, "did not find expected node content"},
		{"last line, quote left open before a comment", head + "metadata:\n  name: \"a\n# the name\n", 4, 9, "found unexpected end of stream while scanning a quoted scalar that starts here"},
		{"only a bracket", "[", 1, 2, "did not find expected node content"},
		{"non-ASCII before", head + "metadata:\n  name: zahlüng: x\n", 4, 16, "mapping values"},
		{"unknown escape", head + "metadata:\n  name: \"a\\qb\"\n", 4, 11, "found unknown escape character"},
		{"reserved character", head + "metadata:\n  name: @a\n", 4, 9, "cannot start any token"},
		{"unknown anchor", head + "metadata: {name: a}\nspec: *base\n", 4, 7, "unknown anchor 'base' referenced"},
		{"JSON without a comma", "{\"apiVersion\": \"cilium.io/v2\"\n \"kind\": \"CiliumEgressGatewayPolicy\"}\n", 2, 2, "did not find expected ',' or '}'"},
		{"JSON object left open", "{\"apiVersion\": \"cilium.io/v2\",\n \"kind\": \"CiliumEgressGatewayPolicy\"\n", 1, 1, "while parsing a flow mapping that starts here"},
		{"separator twice", "---\n---\n" + head + "metadata: {name: a}\n", 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			se := readSyntaxError(t, "bad.yaml", tc.doc, tc.line != 0)
			if se == nil {
				return
			}
			if se.Pos.File != "bad.yaml" || se.Pos.Line != tc.line || se.Pos.Column != tc.col || !strings.Contains(se.Msg, tc.msg) {
				t.Errorf("syntax error at %d:%d %q, want %d:%d with %q", se.Pos.Line, se.Pos.Column, se.Msg, tc.line, tc.col, tc.msg)
			}
			if strings.HasPrefix(se.Msg, "yaml:") || strings.Contains(se.Msg, "line "+strconv.Itoa(se.Pos.Line)+":") {
				t.Errorf("message %q repeats the reader's prefix", se.Msg)
			}
		})
	}
}

// readSyntaxError reads doc as file and returns its syntax error, failing
// the test when there is none but want, or there is one but not want.
func readSyntaxError(t *testing.T, file, doc string, want bool) *SyntaxError {
	t.Helper()
	_, err := Read(file, []byte(doc))
	if !want {
		if err != nil {
			t.Fatalf("err = %v, want none", err)
		}
		return nil
	}
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *SyntaxError", err)
	}
	return se
}

// TestLocateOtherError: when the second reader does not find the error the
// first one reported, its position is not used.
func TestLocateOtherError(t *testing.T) {
	src := NewSource("bad.yaml", []byte("a: [\n"))
	if _, _, ok := src.locate("did not find expected key"); ok {
		t.Error("located an error the reader did not report")
	}
	if _, _, ok := NewSource("ok.yaml", []byte("a: 1\n")).locate("did not find expected key"); ok {
		t.Error("located an error in a valid file")
	}
}
