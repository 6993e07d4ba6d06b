package validate

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
)

// manifest wraps a timeout text into a policy; the text's first line is
// line 7 of the file, indented by 4.
func manifest(text string) string {
	var b strings.Builder
	b.WriteString("apiVersion: cilium.io/v2\nkind: CiliumEgressGatewayPolicy\nmetadata:\n  name: p\nspec:\n  connection-timeouts: |\n")
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

func validator(t testing.TB, version string, node *nodeconfig.Config) *Validator {
	t.Helper()
	r, err := profiles.Resolve(version)
	if err != nil {
		t.Fatal(err)
	}
	return New(Options{Resolution: r, Node: node})
}

// got lists findings as "rule@line:col".
func got(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s@%d:%d", f.Rule, f.Line, f.Column))
	}
	return out
}

func TestRules(t *testing.T) {
	jiffies := &nodeconfig.Config{Kind: "agent-runtime-config.json", ClockKnown: true, Clock: nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: 100}}
	raised := &nodeconfig.Config{Kind: "ConfigMap kube-system/cilium-config", ClockKnown: true,
		Timeouts: map[string]time.Duration{"bpf-ct-timeout-regular-tcp": 4 * time.Hour}}
	tests := []struct {
		name     string
		version  string
		node     *nodeconfig.Config
		text     string
		want     []string
		timeouts map[profiles.State]time.Duration
		contains string // a message or suggestion must contain this
	}{
		{name: "valid", text: "bpfCtTimeoutRegularTcp: 3h\nbpfCtTimeoutRegularAny: 30s", version: "1.14",
			timeouts: map[profiles.State]time.Duration{profiles.StateEstablished: 3 * time.Hour, profiles.StateNonTCP: 30 * time.Second}},
		{name: "all four", text: "bpfCtTimeoutRegularTcpSyn: 30s\nbpfCtTimeoutRegularTcp: 2h5m\nbpfCtTimeoutRegularTcpFin: 5s\nbpfCtTimeoutRegularAny: 20s",
			timeouts: map[profiles.State]time.Duration{profiles.StateSyn: 30 * time.Second, profiles.StateEstablished: 125 * time.Minute,
				profiles.StateClosing: 5 * time.Second, profiles.StateNonTCP: 20 * time.Second}},
		{name: "comments only", text: "# nothing yet\n"},
		{name: "line syntax", text: "# ok\nbpfCtTimeoutRegularTcp 5m", want: []string{"line-syntax@8:5"}},
		{name: "unknown key", text: "bpfCtTimeoutRegularTCP: 5m", want: []string{"unknown-key@7:5"}, contains: `did you mean "bpfCtTimeoutRegularTcp"?`},
		{name: "kebab flag spelling", text: "--bpf-ct-timeout-regular-tcp-fin: 5s", want: []string{"unknown-key@7:5"}, contains: `"bpfCtTimeoutRegularTcpFin"`},
		{name: "snake spelling", text: "bpf_ct_timeout_regular_any: 5s", want: []string{"unknown-key@7:5"}, contains: `"bpfCtTimeoutRegularAny"`},
		{name: "short alias", text: "udp: 5s", want: []string{"unknown-key@7:5"}, contains: `"bpfCtTimeoutRegularAny"`},
		{name: "typo", text: "bpfCtTimeoutRegularTcpSin: 5s", want: []string{"unknown-key@7:5"}, contains: `"bpfCtTimeoutRegularTcpSyn"`},
		{name: "far off", text: "keepalive: 5s", want: []string{"unknown-key@7:5"}, contains: "known keys: bpfCtTimeoutRegularTcpSyn"},
		{name: "duplicate", text: "bpfCtTimeoutRegularAny: 5s\n\nbpfCtTimeoutRegularAny: 6s", want: []string{"duplicate-key@9:5"}, contains: "first on line 7"},
		{name: "service timer", text: "bpfCtTimeoutServiceAny: 5s", want: []string{"service-timer@7:5"}, contains: "bpfCtTimeoutRegularAny"},
		{name: "service timer as flag", text: "bpf-ct-timeout-service-tcp-grace: 5s", want: []string{"service-timer@7:5"}},
		{name: "bare number", text: "bpfCtTimeoutRegularAny: 30", want: []string{"bare-number@7:29"}, contains: "bpfCtTimeoutRegularAny: 30s"},
		{name: "bad duration", text: "bpfCtTimeoutRegularAny: 5 mins", want: []string{"bad-duration@7:29"}, contains: "bpfCtTimeoutRegularAny: 5m"},
		{name: "zero", text: "bpfCtTimeoutRegularAny: 0s", want: []string{"non-positive@7:29"}},
		{name: "negative", text: "bpfCtTimeoutRegularAny: -5s", want: []string{"non-positive@7:29"}},
		{name: "above node 1.15", text: "bpfCtTimeoutRegularTcp: 3h", want: []string{"above-node-timeout@7:5"}, contains: "raise bpf-ct-timeout-regular-tcp in cilium-config to at least 3h"},
		{name: "above node from config", node: raised, text: "bpfCtTimeoutRegularTcp: 5h", want: []string{"above-node-timeout@7:5"}, contains: "from ConfigMap kube-system/cilium-config"},
		{name: "raised node allows", node: raised, text: "bpfCtTimeoutRegularTcp: 3h"},
		{name: "equal to node", text: "bpfCtTimeoutRegularAny: 1m", want: []string{"no-effect@7:5"}},
		{name: "sub-second", text: "bpfCtTimeoutRegularAny: 500ms", want: []string{"below-precision@7:5"}, contains: "egwct applies 1s",
			timeouts: map[profiles.State]time.Duration{profiles.StateNonTCP: time.Second}},
		{name: "fraction", text: "bpfCtTimeoutRegularAny: 2.5s", want: []string{"below-precision@7:5"},
			timeouts: map[profiles.State]time.Duration{profiles.StateNonTCP: 2 * time.Second}},
		{name: "jiffies rounding", node: jiffies, text: "bpfCtTimeoutRegularAny: 30s", want: []string{"jiffy-rounding@7:5"}, contains: "acts as 28.16s"},
		{name: "jiffies exact", node: jiffies, text: "bpfCtTimeoutRegularTcp: 7680s"},
		{name: "syn above established", text: "bpfCtTimeoutRegularTcpSyn: 50s\nbpfCtTimeoutRegularTcp: 40s",
			want: []string{"syn-above-established@7:5", "below-rfc5382@8:5"}},
		{name: "rfc5382", text: "bpfCtTimeoutRegularTcp: 5m", want: []string{"below-rfc5382@7:5"}, contains: "tcp_keepalive_time=240"},
		{name: "rfc5382 boundary", text: "bpfCtTimeoutRegularTcp: 2h4m"},
		{name: "quoted value", text: `bpfCtTimeoutRegularAny: "30s"`},
		{name: "too large", text: "# " + strings.Repeat("x", policy.MaxTextSize), want: []string{"text-too-large@6:24"}},
		{name: "errors and good lines", text: "bpfCtTimeoutRegularAny: 30s\nnope: 1s", want: []string{"unknown-key@8:5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			version := tt.version
			if version == "" {
				version = "1.18.3"
			}
			v := validator(t, version, tt.node)
			m, err := policy.Read("p.yaml", []byte(manifest(tt.text)))
			if err != nil || len(m.Policies) != 1 {
				t.Fatalf("read: %v", err)
			}
			res := v.Policy(m.Policies[0])
			if g := got(res.Findings); strings.Join(g, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("findings = %v, want %v\n%+v", g, tt.want, res.Findings)
			}
			if tt.contains != "" {
				f := res.Findings[0]
				if !strings.Contains(f.Message+" "+f.Suggestion, tt.contains) {
					t.Errorf("finding %q / %q does not contain %q", f.Message, f.Suggestion, tt.contains)
				}
			}
			for _, f := range res.Findings {
				if f.Policy != "p" || f.Field != "spec.connection-timeouts" || f.File != "p.yaml" {
					t.Errorf("finding lacks context: %+v", f)
				}
			}
			if tt.timeouts != nil && fmt.Sprint(res.Timeouts) != fmt.Sprint(tt.timeouts) {
				t.Errorf("timeouts = %v, want %v", res.Timeouts, tt.timeouts)
			}
			if res.HasErrors() && res.Timeouts != nil {
				t.Error("timeouts returned despite errors")
			}
		})
	}
}

func TestSources(t *testing.T) {
	head := "apiVersion: cilium.io/v2\nkind: CiliumEgressGatewayPolicy\nmetadata:\n  name: p\n"
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{name: "none", doc: head + "spec: {}\n"},
		{name: "annotation", doc: head + "  annotations:\n    egwct.io/connection-timeouts: |\n      bpfCtTimeoutRegularTCP: 5s\n",
			want: []string{"unknown-key@7:7"}},
		{name: "both equal", doc: head + "  annotations:\n    egwct.io/connection-timeouts: \"bpfCtTimeoutRegularAny: 5s\"\n" +
			"spec:\n  connection-timeouts: |\n    # same\n    bpfCtTimeoutRegularAny:   5s\n"},
		{name: "both differ", doc: head + "  annotations:\n    egwct.io/connection-timeouts: \"bpfCtTimeoutRegularAny: 5s\"\n" +
			"spec:\n  connection-timeouts: |\n    bpfCtTimeoutRegularAny: 6s\n", want: []string{"source-conflict@6:35"}},
		{name: "mapping", doc: head + "spec:\n  connection-timeouts:\n    bpfCtTimeoutRegularAny: 6s\n", want: []string{"not-text@7:5"}},
		{name: "number", doc: head + "spec:\n  connection-timeouts: 30\n", want: []string{"not-text@6:24"}},
		{name: "quoted text, inexact position", doc: head + "spec:\n  connection-timeouts: \"a: 1s\\nbpfCtTimeoutRegularAny: 5\"\n",
			want: []string{"unknown-key@6:24", "bare-number@6:24"}},
		{name: "old apiVersion", doc: strings.Replace(head, "cilium.io/v2", "cilium.io/v2alpha1", 1), want: []string{"api-version@1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := policy.Read("p.yaml", []byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			res := validator(t, "1.18", nil).Policy(m.Policies[0])
			if g := got(res.Findings); strings.Join(g, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("findings = %v, want %v\n%+v", g, tt.want, res.Findings)
			}
		})
	}
}

func TestInexactPositionSaysTextLine(t *testing.T) {
	doc := "apiVersion: cilium.io/v2\nkind: CiliumEgressGatewayPolicy\nmetadata: {name: p}\nspec:\n  connection-timeouts: \"a: 1s\"\n"
	m, _ := policy.Read("p.yaml", []byte(doc))
	f := validator(t, "1.18", nil).Policy(m.Policies[0]).Findings[0]
	if !strings.HasSuffix(f.Message, "(line 1 of the text)") {
		t.Errorf("message = %q", f.Message)
	}
}

func TestPreamble(t *testing.T) {
	tests := []struct {
		version string
		node    *nodeconfig.Config
		want    []string
	}{
		{"1.18.3", nil, []string{"profile", "node-settings", "version-quirk"}},
		{"1.17.99", nil, []string{"profile", "newer-patch", "node-settings"}},
		{"1.21.0", nil, []string{"profile", "unverified-version", "node-settings"}},
		{"1.15.1", nil, []string{"profile", "node-settings", "version-quirk", "version-quirk"}},
		{"1.17", &nodeconfig.Config{File: "cm.yaml", Kind: "ConfigMap x/y", ClockProbe: true,
			Notes: []nodeconfig.Note{{Line: 3, Column: 4, Msg: "m"}}},
			[]string{"profile", "node-settings", "node-settings", "node-config"}},
	}
	for _, tt := range tests {
		var rules []string
		for _, f := range validator(t, tt.version, tt.node).Preamble() {
			rules = append(rules, f.Rule)
			if f.Rule == "node-config" && (f.File != "cm.yaml" || f.Line != 3 || f.Severity != Warning) {
				t.Errorf("node-config finding = %+v", f)
			}
		}
		if strings.Join(rules, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%s: preamble = %v, want %v", tt.version, rules, tt.want)
		}
	}
}

func TestRulesAreDocumented(t *testing.T) {
	ids := map[string]bool{}
	for _, r := range Rules {
		if ids[r.ID] || r.Summary == "" {
			t.Errorf("rule %q duplicated or undocumented", r.ID)
		}
		ids[r.ID] = true
	}
}
