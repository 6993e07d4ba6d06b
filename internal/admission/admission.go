// Package admission generates a ValidatingAdmissionPolicy and its binding
// (admissionregistration.k8s.io/v1, Kubernetes 1.30 and later) whose CEL
// refuses, at `kubectl apply` time, the CiliumEgressGatewayPolicies whose
// timeout text `egwct validate` would report as an error, wherever CEL can
// decide it. No webhook or server runs: the API server evaluates the CEL.
//
// The expressions are generated from the same sources as `egwct validate`
// and docs/timeouts.md: the profile's keys, node defaults and service
// timers (pkg/profiles), the key spellings (validate.Spellings), the rule
// ids and the text limits (pkg/policy). The tests run the policy on a real
// API server against examples/ and, differentially, against `egwct
// validate` over a corpus of timeout texts.
//
// What the policy decides: the syntax of each line, missing values,
// unknown keys (with the suggestion for known spellings; validate also
// finds near misses by edit distance), service timers, duplicate keys,
// values without a unit, values that are not Go durations, zero or
// negative values, a text over 64 KiB, spec.connection-timeouts that is
// not a text, spec field and annotation that disagree, and a value above
// the node default of the Cilium version. It does not judge a value
// against the node's timeout when a number in it has more than nine digits
// before or after the point (Simple): CEL's arithmetic differs from Go's
// there. A node's own cilium-config may raise or lower its timeouts: the
// policy knows only the version's defaults.
package admission

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	yamlv3 "go.yaml.in/yaml/v3"
	admv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/validate"
)

// Name is the name of the policy and of its binding.
const Name = "egwct-connection-timeouts"

// Regular expressions the policy uses, exported so that the differential
// test draws the same line between what the policy decides and what it
// leaves to egwct validate.
const (
	// GoDuration is the grammar of Go's time.ParseDuration (without the
	// bare "0", which is a bare number here).
	GoDuration = `^[-+]?(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`
	// Simple is the part of that grammar the policy computes exactly as
	// Go does: no sign but '+', at most nine digits on either side of the
	// point of each number.
	Simple = `^[+]?(([0-9]{1,9}([.][0-9]{0,9})?|[.][0-9]{1,9})(ns|us|µs|μs|ms|s|m|h))+$`
	// BareNumber is what strconv.ParseFloat accepts without an exponent,
	// hex, inf or nan: a number without a unit.
	BareNumber = `^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)$`

	component = `([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h)`
)

// Actions are the binding's validationActions people may ask for.
var Actions = []string{string(admv1.Deny), string(admv1.Warn), string(admv1.Audit)}

// Options configure the policy.
type Options struct {
	// Resolution is the Cilium version and its profile.
	Resolution profiles.Resolution
	// Actions are the binding's validationActions (Deny, Warn, Audit);
	// empty means Deny.
	Actions []admv1.ValidationAction
	// Version is egwct's version, recorded in an annotation.
	Version string
}

// ParseActions reads validationActions from a comma-separated list:
// Deny, Warn and Audit, any case; Deny and Warn exclude each other.
func ParseActions(s string) ([]admv1.ValidationAction, error) {
	var out []admv1.ValidationAction
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		i := slices.IndexFunc(Actions, func(a string) bool { return strings.EqualFold(a, f) })
		if i < 0 {
			return nil, fmt.Errorf("unknown validation action %q: use Deny, Warn or Audit (Audit may be added to either: Deny,Audit)", f)
		}
		a := admv1.ValidationAction(Actions[i])
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if slices.Contains(out, admv1.Deny) && slices.Contains(out, admv1.Warn) {
		return nil, fmt.Errorf("validation actions Deny and Warn exclude each other")
	}
	return out, nil
}

// Generate returns the policy and its binding.
func Generate(o Options) (*admv1.ValidatingAdmissionPolicy, *admv1.ValidatingAdmissionPolicyBinding) {
	actions := o.Actions
	if len(actions) == 0 {
		actions = []admv1.ValidationAction{admv1.Deny}
	}
	p := o.Resolution.Profile
	meta := metav1.ObjectMeta{
		Name:   Name,
		Labels: map[string]string{"app.kubernetes.io/name": "egwct", "app.kubernetes.io/component": "admission-policy"},
		Annotations: map[string]string{
			"egwct.io/cilium-version": o.Resolution.Version.String(),
			"egwct.io/profile":        p.Name,
		},
	}
	if o.Version != "" {
		meta.Annotations["egwct.io/generated-by"] = "egwct " + o.Version
	}
	ignore := admv1.Ignore
	equivalent := admv1.Equivalent
	vap := &admv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: meta,
		Spec: admv1.ValidatingAdmissionPolicySpec{
			// A runtime error (say, a text so long that the evaluation
			// exceeds its cost budget) lets the object in: egwct validate
			// and the agent still judge it.
			FailurePolicy: &ignore,
			MatchConstraints: &admv1.MatchResources{
				MatchPolicy: &equivalent,
				ResourceRules: []admv1.NamedRuleWithOperations{{RuleWithOperations: admv1.RuleWithOperations{
					Operations: []admv1.OperationType{admv1.Create, admv1.Update},
					Rule: admv1.Rule{APIGroups: []string{"cilium.io"}, APIVersions: []string{"*"},
						Resources: []string{"ciliumegressgatewaypolicies"}},
				}}},
			},
			MatchConditions: []admv1.MatchCondition{{
				Name:       "has-connection-timeouts",
				Expression: `(has(object.metadata.annotations) && '` + policy.Annotation + `' in object.metadata.annotations) || (has(object.spec) && 'connection-timeouts' in object.spec)`,
			}},
			Variables:   variables(o.Resolution),
			Validations: validations(o.Resolution),
		},
	}
	vap.Annotations["egwct.io/decides"] = "line-syntax, not-text, text-too-large, unknown-key, duplicate-key, service-timer, bare-number, bad-duration, non-positive, above-node-timeout (profile defaults), source-conflict"
	bmeta := meta
	bmeta.Annotations = nil
	bind := &admv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: bmeta,
		Spec: admv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        Name,
			ValidationActions: actions,
		},
	}
	return vap, bind
}

// YAML returns the policy and binding as a two-document manifest with a
// header comment; CEL expressions are block scalars, broken before each
// list macro so that people can read them.
func YAML(o Options) ([]byte, error) {
	vap, bind := Generate(o)
	a, err := marshalPolicy(vap)
	if err != nil {
		return nil, err
	}
	b, err := marshal(bind)
	if err != nil {
		return nil, err
	}
	actions := o.Actions
	if len(actions) == 0 {
		actions = []admv1.ValidationAction{admv1.Deny}
	}
	var s []string
	for _, x := range actions {
		s = append(s, string(x))
	}
	head := fmt.Sprintf(`# egwct's admission policy for CiliumEgressGatewayPolicies: Cilium %s
# (profile %s), validationActions %s. Generated by egwct admission-policy;
# needs Kubernetes 1.30 or later (admissionregistration.k8s.io/v1).
# Values are judged against the version's node defaults: if your nodes'
# cilium-config raises a timeout, regenerate after raising it or use Warn.
`, o.Resolution.Version, o.Resolution.Profile.Name, strings.Join(s, ","))
	return []byte(head + "---\n" + string(stripStatus(a)) + "---\n" + string(stripStatus(b))), nil
}

// PolicyYAML returns the policy alone, without its binding, as YAML: the
// document the Helm chart installs with a binding of its own, whose
// validationActions are a value of the chart.
func PolicyYAML(o Options) ([]byte, error) {
	vap, _ := Generate(o)
	a, err := marshalPolicy(vap)
	if err != nil {
		return nil, err
	}
	return stripStatus(a), nil
}

// marshalPolicy writes the policy with its CEL broken into lines.
func marshalPolicy(vap *admv1.ValidatingAdmissionPolicy) ([]byte, error) {
	for i := range vap.Spec.Variables {
		vap.Spec.Variables[i].Expression = breakLines(vap.Spec.Variables[i].Expression)
	}
	for i := range vap.Spec.Validations {
		v := &vap.Spec.Validations[i]
		v.Expression, v.MessageExpression = breakLines(v.Expression), breakLines(v.MessageExpression)
	}
	return marshal(vap)
}

// breakLines puts CEL's list macros on lines of their own. The generated
// string literals contain none of the tokens it breaks before.
func breakLines(expr string) string {
	for _, tok := range []string{".map(", ".filter(", ".all(", ".join("} {
		expr = strings.ReplaceAll(expr, tok, "\n  "+tok)
	}
	return expr
}

// marshal writes an API object as YAML with multi-line strings as
// literal blocks.
func marshal(obj any) ([]byte, error) {
	js, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var n yamlv3.Node
	if err := yamlv3.Unmarshal(js, &n); err != nil {
		return nil, err
	}
	var walk func(*yamlv3.Node)
	walk = func(n *yamlv3.Node) {
		n.Style = 0
		if n.Kind == yamlv3.ScalarNode && strings.Contains(n.Value, "\n") {
			n.Style = yamlv3.LiteralStyle
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&n)
	var buf bytes.Buffer
	enc := yamlv3.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

// stripStatus drops the empty status and creationTimestamp the API types
// marshal.
func stripStatus(b []byte) []byte {
	var out []string
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if l == "status: {}" || strings.TrimSpace(l) == "creationTimestamp: null" {
			continue
		}
		if l == "status:" {
			for i+1 < len(lines) && strings.HasPrefix(lines[i+1], " ") {
				i++
			}
			continue
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n"))
}

// cel quotes s as a CEL string literal.
func cel(s string) string { return strconv.Quote(s) }

// Each text is parsed into entries [key, value, error, line]: the line is
// the line without its indentation; error is "" for an entry egwct reads
// (policy.ParseText's rules).
func linesExpr(text string) string {
	return fmt.Sprintf(`%s.split('\n')`+
		`.map(l, l.endsWith('\r') ? l.substring(0, l.size() - 1) : l)`+
		`.filter(l, !l.matches('^[ \t]*(#.*)?$'))`+
		`.map(l, l.find('[^ \t].*'))`, text)
}

// parsedExpr splits each line b into [key, value before unquoting, line].
const parsedExpr = `.map(b, [` +
	`b.indexOf(':') > 0 ? b.substring(0, b.indexOf(':')).find('^.*[^ \t]') : '', ` +
	`b.indexOf(':') < 0 ? '' : b.substring(b.indexOf(':') + 1).find('[^ \t].*').find('^([^ \t#]#*|[ \t])*').find('^.*[^ \t]'), ` +
	`b])`

// entriesExpr unquotes the value and says what is wrong with the line.
const entriesExpr = `.map(e, [e[0], ` +
	`e[1].size() >= 2 && (e[1].startsWith('"') || e[1].startsWith("'")) && e[1].endsWith(e[1].substring(0, 1)) ? e[1].substring(1, e[1].size() - 1) : e[1], ` +
	`e[2].indexOf(':') < 0 ? 'expected "key: value"' : ` +
	`e[0] == '' ? "missing key before ':'" : ` +
	`e[1] == '' ? 'missing value for "' + e[0] + '"' : ` +
	`e[1].size() == 2 && (e[1] == '""' || e[1] == "''") ? 'empty value for "' + e[0] + '"' : '', ` +
	`e[2]])`

func variables(res profiles.Resolution) []admv1.Variable {
	p := res.Profile
	ann := `object.metadata.annotations['` + policy.Annotation + `']`
	v := []admv1.Variable{
		{Name: "ann", Expression: `has(object.metadata.annotations) && '` + policy.Annotation + `' in object.metadata.annotations ? [` + ann + `] : []`},
		{Name: "specAny", Expression: `has(object.spec) && 'connection-timeouts' in object.spec ? [object.spec['connection-timeouts']] : []`},
		{Name: "spec", Expression: `variables.specAny.filter(t, type(t) == string)`},
	}
	for _, src := range []string{"ann", "spec"} {
		text := "variables." + src + "[0]"
		v = append(v, admv1.Variable{
			Name: src + "Entries",
			Expression: fmt.Sprintf(`variables.%s.size() == 1 && bytes(%s).size() <= %d ? %s%s%s : []`,
				src, text, policy.MaxTextSize, linesExpr(text), parsedExpr, entriesExpr),
		})
		v = append(v, admv1.Variable{Name: src + "Valid", Expression: fmt.Sprintf(`variables.%sEntries.filter(e, e[2] == '')`, src)})
	}

	// The profile: node defaults in whole seconds, and the smallest value
	// in nanoseconds that is above them (validate's applied(d) > node).
	var known, limits []string
	for _, prm := range p.Parameters {
		secs := int64(prm.Default.Truncate(time.Second) / time.Second)
		known = append(known, fmt.Sprintf("%s: %d", cel(prm.Key), secs))
		limits = append(limits, fmt.Sprintf("%s: %d.0", cel(prm.Key), (secs+1)*int64(time.Second)))
	}
	spell := validate.Spellings(p)
	var sp []string
	for _, n := range sortedKeys(spell) {
		sp = append(sp, fmt.Sprintf("%s: %s", cel(n), cel(spell[n])))
	}
	var st []string
	for _, s := range p.ServiceTimers {
		st = append(st, fmt.Sprintf("%s: %s", cel(validate.Normalize(s.Key)), cel(s.Key+" ("+s.Flag+")")))
	}
	unit := `(c.endsWith('ns') ? 1.0 : c.endsWith('us') || c.endsWith('µs') || c.endsWith('μs') ? 1000.0 : ` +
		`c.endsWith('ms') ? 1000000.0 : c.endsWith('s') ? 1000000000.0 : c.endsWith('m') ? 60000000000.0 : 3600000000000.0)`
	v = append(v,
		admv1.Variable{Name: "entries", Expression: `variables.annEntries + variables.specEntries`},
		admv1.Variable{Name: "valid", Expression: `variables.annValid + variables.specValid`},
		admv1.Variable{Name: "known", Expression: "{" + strings.Join(known, ", ") + "}"},
		admv1.Variable{Name: "limits", Expression: "{" + strings.Join(limits, ", ") + "}"},
		admv1.Variable{Name: "spellings", Expression: "{" + strings.Join(sp, ", ") + "}"},
		admv1.Variable{Name: "serviceTimers", Expression: "{" + strings.Join(st, ", ") + "}"},
		// [key, normalized key] of each key the profile does not have.
		admv1.Variable{Name: "unknown", Expression: `variables.valid.filter(e, !(e[0] in variables.known))` +
			`.map(e, [e[0], e[0].lowerAscii().replace('-', '').replace('_', '').replace('.', '').replace(' ', '')])`},
		// [key, value, nanoseconds] of each value of a known key (CEL's
		// lists hold one type: the nanoseconds are a string, "-1" when the
		// value is not Simple). They are Go's for Simple values: each
		// number's integer part times the unit, plus its fraction as
		// float64(f)*(float64(unit)/scale) truncated.
		admv1.Variable{Name: "values", Expression: fmt.Sprintf(`variables.valid.filter(e, e[0] in variables.known)`+
			`.map(e, [e[0], e[1], !e[1].matches(%s) ? '-1' : string(e[1].findAll(%s).map(c, `+
			`(c.find('^[0-9]*') == '' ? 0.0 : double(c.find('^[0-9]*'))) * %s + `+
			`(c.find('[.][0-9]+') == '' ? 0.0 : double(int(double(c.find('[.][0-9]+').substring(1)) * (%s / %s[c.find('[.][0-9]+').size() - 1]))))`+
			`).sum())])`,
			cel(Simple), cel(component), unit, unit,
			`{1: 10.0, 2: 100.0, 3: 1000.0, 4: 10000.0, 5: 100000.0, 6: 1000000.0, 7: 10000000.0, 8: 100000000.0, 9: 1000000000.0}`)},
	)
	return v
}

const rulesRef = "docs/timeouts.md#"

func msg(r validate.Rule, expr string) string {
	return fmt.Sprintf(`'%s: ' + %s + ' [%s%s]'`, r.ID, expr, rulesRef, r.Anchor())
}

// valueOK says whether a value (an element of variables.values) is one
// egwct reads: a Go duration with a unit, positive.
var valueOK = fmt.Sprintf(`(!v[1].matches(%s) && v[1].matches(%s) && !v[1].startsWith('-') && double(v[2]) != 0.0)`, cel(BareNumber), cel(GoDuration))

func validations(res profiles.Resolution) []admv1.Validation {
	p := res.Profile
	var keys []string
	for _, prm := range p.Parameters {
		keys = append(keys, prm.Key)
	}
	version := res.Version.String()

	// One validation for all the checks: the API server reports only the
	// first failed validation's message, and the author should read every
	// problem at once. Each check adds "rule: what is wrong".
	var oks, whys []string
	add := func(r validate.Rule, expr, _, why string) {
		oks = append(oks, "("+expr+")")
		whys = append(whys, fmt.Sprintf("(%s) ? '' : %s", expr, msg(r, why)))
	}
	add(validate.RuleNotText, `variables.specAny.size() == variables.spec.size()`,
		"spec.connection-timeouts is not a text",
		`'spec.connection-timeouts is ' + (type(variables.specAny[0]) == map ? 'a mapping' : type(variables.specAny[0]) == list ? 'a list' : 'not a string') + ', not a text: write it as a text block, "connection-timeouts: |" followed by indented "key: value" lines'`)
	add(validate.RuleTextTooLarge, fmt.Sprintf(`(variables.ann + variables.spec).all(t, bytes(t).size() <= %d)`, policy.MaxTextSize),
		"the timeout text is larger than 64 KiB",
		fmt.Sprintf(`'the timeout text is ' + string((variables.ann + variables.spec).map(t, bytes(t).size()).max()) + ' bytes; the limit is %d KiB'`, policy.MaxTextSize>>10))
	pairs := func(src string) string {
		return fmt.Sprintf(`variables.%sValid.map(e, e[0] + ': ' + e[1])`, src)
	}
	// validate's sameText: the same keys and values, or, when a text has
	// a bad line or they differ in length, the same text.
	same := fmt.Sprintf(`variables.spec.size() == 1 && `+
		`(variables.annValid.size() != variables.specValid.size() || variables.annValid.size() != variables.annEntries.size() || variables.specValid.size() != variables.specEntries.size() `+
		`? variables.ann[0].trim() == variables.spec[0].trim() `+
		`: %s.all(x, %s.filter(y, y == x).size() == %s.filter(y, y == x).size()))`, pairs("ann"), pairs("ann"), pairs("spec"))
	add(validate.RuleSourceConflict, `variables.ann.size() == 0 || variables.specAny.size() == 0 || (`+same+`)`,
		"the annotation "+policy.Annotation+" and spec.connection-timeouts set different timeouts",
		`'the annotation `+policy.Annotation+` and spec.connection-timeouts set different timeouts: keep one of them, or make them equal'`)
	add(validate.RuleLineSyntax, `variables.entries.all(e, e[2] == '')`,
		`a line of the timeout text is not "key: value"`,
		`variables.entries.filter(e, e[2] != '').map(e, 'line "' + e[3] + '": ' + e[2]).join('; ')`)
	add(validate.RuleDuplicateKey, `[variables.annValid, variables.specValid].all(es, es.all(e, es.filter(x, x[0] == e[0]).size() == 1))`,
		"a key is set twice in one text",
		`'set more than once in one text: ' + [variables.annValid, variables.specValid].map(es, es.filter(e, es.filter(x, x[0] == e[0]).size() > 1).map(e, e[0]).join(', ')).filter(s, s != '').join('; ') + '; remove one of the lines'`)
	add(validate.RuleUnknownKey, `variables.unknown.size() == 0`,
		"unknown key; known keys: "+strings.Join(keys, ", "),
		fmt.Sprintf(`variables.unknown.map(u, u[1] in variables.serviceTimers `+
			`? u[0] + ' is a service timer, ' + variables.serviceTimers[u[1]] + ': it times connections to Kubernetes services through the load balancer, never egress-gateway flows; use the bpfCtTimeoutRegular keys' `+
			`: 'unknown key "' + u[0] + '" for Cilium %s: ' + (u[1] in variables.spellings ? 'did you mean "' + variables.spellings[u[1]] + '"?' : 'known keys are %s')).join('; ')`,
			version, strings.Join(keys, ", ")))
	add(validate.RuleBadDuration, `variables.values.all(v, `+valueOK+`)`,
		"a value is not a positive duration with a unit",
		`variables.values.filter(v, !`+valueOK+`).map(v, v[0] + ': "' + v[1] + '" ' + (v[1].matches(`+cel(BareNumber)+`) `+
			`? (v[1].startsWith('-') || double(v[1]) <= 0.0 ? 'is not a positive duration' : 'has no unit: durations need one (s, m, h), e.g. "' + v[1].replace('+', '') + 's"') `+
			`: !v[1].matches(`+cel(GoDuration)+`) ? 'is not a duration: use a number with a unit, e.g. 30s, 5m, 1h30m' : 'is not a positive duration')).join('; ')`)
	above := `v[2] != '-1' && ` + valueOK + ` && double(v[2]) >= variables.limits[v[0]]`
	add(validate.RuleAboveNode, `!variables.values.exists(v, `+above+`)`,
		"a value is longer than the node's timeout; egwct can only shorten timeouts",
		fmt.Sprintf(`variables.values.filter(v, `+above+`).map(v, v[0] + ': ' + v[1] + ' is longer than the node timeout of ' + string(variables.known[v[0]]) + 's, the Cilium %s default; egwct can only shorten timeouts (a node whose cilium-config raises it: regenerate the policy, or use Warn)').join('; ')`,
			version))
	return []admv1.Validation{{
		Expression: strings.Join(oks, " &&\n"),
		Message: fmt.Sprintf("egwct: the timeout text has errors that egwct validate reports (Cilium %s, profile %s); see %srules-of-egwct-validate",
			version, p.Name, rulesRef),
		MessageExpression: "'egwct: ' + [\n" + strings.Join(whys, ",\n") + "\n].filter(m, m != '').join('; ')",
		Reason:            ptr(metav1.StatusReasonInvalid),
	}}
}

func ptr[T any](v T) *T { return &v }

func sortedKeys(m map[string]string) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}
