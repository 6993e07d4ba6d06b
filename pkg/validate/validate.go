package validate

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
)

// Finding is one result of validation. The JSON form is part of egwct's
// documented interface (docs/validate.md): fields are only ever added.
type Finding struct {
	Severity Severity `json:"severity"`
	Rule     string   `json:"rule"`
	// File, Line and Column locate the finding in the input (1-based);
	// findings about the run as a whole have no file.
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	// Policy is the CiliumEgressGatewayPolicy's name; Field says where in
	// it the text was (spec.connection-timeouts or the annotation).
	Policy string `json:"policy,omitempty"`
	Field  string `json:"field,omitempty"`
	// Key is the timeout-text key the finding is about.
	Key        string `json:"key,omitempty"`
	Message    string `json:"message"`
	Suggestion string `json:"suggestion,omitempty"`
}

// Pos returns the finding's position.
func (f Finding) Pos() policy.Position {
	return policy.Position{File: f.File, Line: f.Line, Column: f.Column}
}

func newFinding(r Rule, pos policy.Position, msg string) Finding {
	return Finding{Severity: r.Severity, Rule: r.ID, File: pos.File, Line: pos.Line, Column: pos.Column, Message: msg}
}

// Options configure a Validator.
type Options struct {
	// Resolution is the Cilium version and its profile.
	Resolution profiles.Resolution
	// VersionFrom says where the version came from, e.g. "--cilium-version".
	VersionFrom string
	// Node is the node's configuration; nil means the profile's defaults.
	Node *nodeconfig.Config
}

// Validator checks policies against one profile and node configuration.
type Validator struct {
	opts    Options
	profile *profiles.Profile
	node    map[profiles.State]nodeTimeout
}

type nodeTimeout struct {
	d        time.Duration
	fromNode bool
}

// New returns a Validator for the options.
func New(o Options) *Validator {
	v := &Validator{opts: o, profile: o.Resolution.Profile, node: map[profiles.State]nodeTimeout{}}
	for _, prm := range v.profile.Parameters {
		d, fromNode := o.Node.Timeout(prm.Flag, prm.Default)
		v.node[prm.State] = nodeTimeout{d, fromNode}
	}
	return v
}

// NodeTimeout is the node's timeout for state s.
func (v *Validator) NodeTimeout(s profiles.State) time.Duration { return v.node[s].d }

// Clock is the node's datapath clock and whether it is known (rather than
// assumed to be Cilium's default, ktime).
func (v *Validator) Clock() (nodeconfig.Clock, bool) {
	if n := v.opts.Node; n != nil && n.ClockKnown {
		return n.Clock, true
	}
	return nodeconfig.Clock{Mode: nodeconfig.Ktime}, false
}

func unverifiedMessage(r profiles.Resolution) string {
	p := r.Profile
	switch {
	case p.Dev:
		return fmt.Sprintf("Cilium %s is a development version (%d.%d): profile %s was read from %s, not verified against a release, so the meaning of the timeout text may differ",
			r.Version, p.Major, p.Minor, p.Name, p.Sources[0])
	case len(p.Differs) > 0 && r.Version.Patch >= 0:
		return fmt.Sprintf("hack/verify-profiles found Cilium %s's maps or defaults to differ from profile %s: the meaning of the timeout text may differ", r.Version, p.Name)
	}
	return fmt.Sprintf("no %d.%d release was checked for profile %s: the meaning of the timeout text may differ", p.Major, p.Minor, p.Name)
}

// Preamble returns the findings about the run as a whole: the profile and
// why, an unverified release, the node's settings, and known quirks.
func (v *Validator) Preamble() []Finding {
	r := v.opts.Resolution
	var out []Finding
	msg := r.Reason()
	if v.opts.VersionFrom != "" {
		msg += "; version from " + v.opts.VersionFrom
	}
	out = append(out, newFinding(RuleProfile, policy.Position{}, msg))
	switch {
	case r.Unverified:
		f := newFinding(RuleUnverifiedVersion, policy.Position{}, unverifiedMessage(r))
		f.Suggestion = "check the release notes of Cilium " + r.Version.String() + " for conntrack changes"
		out = append(out, f)
	case r.NewerPatch:
		out = append(out, newFinding(RuleNewerPatch, policy.Position{}, fmt.Sprintf(
			"Cilium %s is newer than the %d.%d releases profile %s was verified against (newest %s); every verified %d.%d release matched, so its facts are expected to hold",
			r.Version, r.Profile.Major, r.Profile.Minor, v.profile.Name, r.Profile.NewestChecked(), r.Profile.Major, r.Profile.Minor)))
	}

	n := v.opts.Node
	clock, known := v.Clock()
	switch {
	case n == nil:
		out = append(out, newFinding(RuleNodeSettings, policy.Position{}, fmt.Sprintf(
			"node timeouts: profile %s defaults; clock: assumed %s (Cilium's default); pass --node-config to check against a node's real settings",
			v.profile.Name, clock.Mode)))
	default:
		desc := "clock: " + clock.String()
		if !known {
			desc = "clock: unknown"
		}
		out = append(out, newFinding(RuleNodeSettings, policy.Position{File: n.File}, fmt.Sprintf(
			"node timeouts from %s (%d set, the rest profile %s defaults); %s", n.Kind, len(n.Timeouts), v.profile.Name, desc)))
		if n.ClockProbe {
			out = append(out, newFinding(RuleNodeSettings, policy.Position{File: n.File},
				"enable-bpf-clock-probe is true: the node probably counts jiffies at an HZ only the node knows, so jiffy rounding was not checked; "+
					"pass the node's agent-runtime-config.json to check it"))
		}
		for _, note := range n.Notes {
			out = append(out, newFinding(RuleNodeConfig, policy.Position{File: n.File, Line: note.Line, Column: note.Column}, note.Msg))
		}
	}
	for _, q := range v.profile.QuirksFor(r.Version) {
		out = append(out, newFinding(RuleVersionQuirk, policy.Position{}, fmt.Sprintf(
			"Cilium %s: %s [%s]", r.Version, q.Summary, q.ID)))
	}
	return out
}

// SyntaxFinding turns a manifest syntax error into a finding.
func SyntaxFinding(err *policy.SyntaxError) Finding {
	return newFinding(RuleYAMLSyntax, err.Pos, err.Msg)
}

// SpecFinding turns an error of reading a policy's selectors or CIDRs
// into a finding about the policy.
func SpecFinding(p *policy.Policy, err error) Finding {
	pos, msg := p.Pos, err.Error()
	var se *policy.SpecError
	if errors.As(err, &se) {
		pos, msg = se.Pos, se.Msg
	}
	f := newFinding(RulePolicySpec, pos, msg)
	f.Policy = p.DisplayName()
	return f
}

// FileTooLarge is the finding for an input file over limit bytes.
func FileTooLarge(file string, limit int64) Finding {
	return newFinding(RuleFileTooLarge, policy.Position{File: file}, fmt.Sprintf(
		"the file is larger than %d MiB, the most egwct reads from one manifest", limit>>20))
}

// Result is the outcome of validating one policy.
type Result struct {
	Findings []Finding
	// Timeouts are the policy's timeouts as egwct applies them (whole
	// seconds, at least 1 s), by state; nil when the policy sets none or
	// has error findings.
	Timeouts map[profiles.State]time.Duration
	// Source is the text the timeouts came from, nil when there is none.
	Source *policy.TextSource
}

// HasErrors reports whether any finding is an error.
func (r Result) HasErrors() bool {
	for _, f := range r.Findings {
		if f.Severity == Error {
			return true
		}
	}
	return false
}

// Policy validates one policy's timeout text.
func (v *Validator) Policy(p *policy.Policy) Result {
	var res Result
	if p.APIVersion != policy.APIVersion {
		f := newFinding(RuleAPIVersion, p.Pos, fmt.Sprintf("apiVersion is %q; CiliumEgressGatewayPolicy is served as %s", p.APIVersion, policy.APIVersion))
		f.Policy = p.DisplayName()
		f.Suggestion = "apiVersion: " + policy.APIVersion
		res.Findings = append(res.Findings, f)
	}
	spec, ann := p.Spec, p.Annotation
	if spec == nil && ann == nil {
		return res
	}
	if spec != nil && ann != nil {
		if !sameText(spec, ann) {
			f := newFinding(RuleSourceConflict, ann.Pos, fmt.Sprintf(
				"the %s and %s set different timeouts", ann.Field, spec.Field))
			f.Policy, f.Field = p.DisplayName(), ann.Field
			f.Suggestion = "keep one of them, or make them equal"
			res.Findings = append(res.Findings, f)
			t := v.text(p, ann)
			res.Findings = append(res.Findings, t.Findings...)
		}
		ann = nil
	}
	src := spec
	if src == nil {
		src = ann
	}
	t := v.text(p, src)
	res.Findings = append(res.Findings, t.Findings...)
	res.Source = src
	if !res.HasErrors() && len(t.Timeouts) > 0 {
		res.Timeouts = t.Timeouts
	}
	SortFindings(res.Findings)
	return res
}

// SortFindings orders findings of one file by position, keeping the order
// of findings at the same place.
func SortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].Line != fs[j].Line {
			return fs[i].Line < fs[j].Line
		}
		return fs[i].Column < fs[j].Column
	})
}

// sameText reports whether two texts set the same keys to the same values.
func sameText(a, b *policy.TextSource) bool {
	if a.NotText || b.NotText {
		return a.NotText == b.NotText
	}
	pa, pb := policy.ParseText(a.Text), policy.ParseText(b.Text)
	if len(pa.Entries) != len(pb.Entries) || len(pa.Errors)+len(pb.Errors) > 0 {
		return strings.TrimSpace(a.Text) == strings.TrimSpace(b.Text)
	}
	canon := func(t policy.Text) []string {
		var s []string
		for _, e := range t.Entries {
			s = append(s, e.Key+"\x00"+e.Value)
		}
		sort.Strings(s)
		return s
	}
	ca, cb := canon(pa), canon(pb)
	for i := range ca {
		if ca[i] != cb[i] {
			return false
		}
	}
	return true
}

// text checks one timeout text.
func (v *Validator) text(p *policy.Policy, src *policy.TextSource) Result {
	var res Result
	add := func(f Finding) {
		f.Policy, f.Field = p.DisplayName(), src.Field
		res.Findings = append(res.Findings, f)
	}
	if src.NotText {
		f := newFinding(RuleNotText, src.Pos, fmt.Sprintf("%s is %s, not a text", src.Field, src.NodeKind))
		f.Suggestion = "write it as a text block: \"connection-timeouts: |\" followed by indented \"key: value\" lines"
		add(f)
		return res
	}
	if len(src.Text) > policy.MaxTextSize {
		add(newFinding(RuleTextTooLarge, src.Pos, fmt.Sprintf("%s is %d bytes; the limit is %d KiB", src.Field, len(src.Text), policy.MaxTextSize>>10)))
		return res
	}
	text := policy.ParseText(src.Text)
	at := func(line, col int) (policy.Position, string) {
		pos, exact := src.PositionOf(line, col)
		if exact {
			return pos, ""
		}
		return pos, fmt.Sprintf(" (line %d of the text)", line)
	}
	for _, e := range text.Errors {
		pos, where := at(e.Line, e.Col)
		add(newFinding(RuleLineSyntax, pos, e.Msg+where))
	}

	type set struct {
		d     time.Duration
		entry policy.Entry
	}
	byState := map[profiles.State]set{}
	first := map[string]policy.Entry{}
	for _, e := range text.Entries {
		// Positions are looked up only for findings: most lines have none.
		find := func(r Rule, msg string) Finding {
			pos, where := at(e.Line, e.KeyCol)
			f := newFinding(r, pos, msg+where)
			f.Key = e.Key
			return f
		}
		if prev, dup := first[e.Key]; dup {
			ppos, _ := at(prev.Line, prev.KeyCol)
			where := fmt.Sprintf("line %d of the text", prev.Line)
			if ppos.Line > 0 && ppos != src.Pos {
				where = fmt.Sprintf("line %d", ppos.Line)
			}
			f := find(RuleDuplicateKey, fmt.Sprintf("%s is set again (first on %s)", e.Key, where))
			f.Suggestion = "remove one of the two lines"
			add(f)
			continue
		}
		first[e.Key] = e
		prm, ok := v.profile.Parameter(e.Key)
		if !ok {
			add(v.badKey(find, e.Key))
			continue
		}
		d, err := policy.ParseDuration(e.Value)
		if err != nil {
			vpos, vwhere := at(e.Line, e.ValueCol)
			f := newFinding(durationRule(err), vpos, fmt.Sprintf("%s: %s", e.Key, err)+vwhere)
			f.Key = e.Key
			if de, ok := err.(*policy.DurationError); ok && de.Suggestion != "" {
				f.Suggestion = fmt.Sprintf("%s: %s", e.Key, de.Suggestion)
			}
			add(f)
			continue
		}
		for _, f := range v.value(prm, d, e) {
			pos, where := at(e.Line, e.KeyCol)
			f.File, f.Line, f.Column = pos.File, pos.Line, pos.Column
			f.Message += where
			add(f)
		}
		byState[prm.State] = set{applied(d), e}
	}

	// Cross-key: a handshake allowed to idle longer than an established connection.
	syn, est := byState[profiles.StateSyn], byState[profiles.StateEstablished]
	if syn.d > 0 || est.d > 0 {
		synD, estD := syn.d, est.d
		if synD == 0 {
			synD = v.NodeTimeout(profiles.StateSyn)
		}
		if estD == 0 {
			estD = v.NodeTimeout(profiles.StateEstablished)
		}
		if synD > estD {
			e := syn.entry
			if syn.d == 0 {
				e = est.entry
			}
			pos, where := at(e.Line, e.KeyCol)
			f := newFinding(RuleSynAboveEst, pos, fmt.Sprintf(
				"the SYN timeout (%s) is longer than the established-TCP timeout (%s): a half-open connection outlives an idle established one",
				fmtDur(synD), fmtDur(estD))+where)
			f.Key = e.Key
			add(f)
		}
	}
	if len(byState) > 0 {
		res.Timeouts = map[profiles.State]time.Duration{}
		for s, x := range byState {
			res.Timeouts[s] = x.d
		}
	}
	return res
}

// applied is the timeout egwct enforces for d: whole seconds, at least 1 s.
func applied(d time.Duration) time.Duration {
	d = d.Truncate(time.Second)
	if d < profiles.MinTimeout {
		d = profiles.MinTimeout
	}
	return d
}

func durationRule(err error) Rule {
	de, _ := err.(*policy.DurationError)
	switch {
	case de != nil && de.Err == policy.ErrBareNumber:
		return RuleBareNumber
	case de != nil && de.Err == policy.ErrNonPositive:
		return RuleNonPositive
	}
	return RuleBadDuration
}

// value checks a parsed value against the node and the clock. The caller
// gives the findings the entry's position.
func (v *Validator) value(prm profiles.Parameter, d time.Duration, e policy.Entry) []Finding {
	var out []Finding
	find := func(r Rule, msg string) *Finding {
		out = append(out, Finding{Severity: r.Severity, Rule: r.ID, Key: prm.Key, Message: msg})
		return &out[len(out)-1]
	}
	node := v.node[prm.State]
	from := fmt.Sprintf("the profile %s default", v.profile.Name)
	if node.fromNode {
		from = "from " + v.opts.Node.Kind
	}
	eff := applied(d)
	switch {
	case eff > node.d.Truncate(time.Second):
		f := find(RuleAboveNode, fmt.Sprintf(
			"%s: %s is longer than the node's %s timeout of %s, %s; egwct can only shorten timeouts",
			prm.Key, e.Value, prm.State, fmtDur(node.d), from))
		f.Suggestion = fmt.Sprintf("use at most %s, or raise %s in cilium-config to at least %s",
			fmtDur(node.d), prm.Flag, fmtDur(eff))
		return out
	case eff == node.d.Truncate(time.Second):
		find(RuleNoEffect, fmt.Sprintf("%s: %s equals the node's %s timeout, %s, so it changes nothing",
			prm.Key, e.Value, prm.State, from))
	}
	if d != eff {
		f := find(RuleBelowPrecision, fmt.Sprintf(
			"%s: %s is not a whole number of seconds, the precision of CT lifetimes; egwct applies %s",
			prm.Key, e.Value, fmtDur(eff)))
		f.Suggestion = fmt.Sprintf("%s: %s", prm.Key, fmtDur(eff))
	}
	if clock, known := v.Clock(); known && clock.Mode == nodeconfig.Jiffies {
		if j := clock.Effective(eff); eff-j >= time.Second {
			find(RuleJiffyRounding, fmt.Sprintf(
				"%s: the node counts lifetimes in units of %s (HZ=%d), so %s acts as %s",
				prm.Key, clock.Unit(), clock.HZ, fmtDur(eff), j))
		}
	}
	if prm.State == profiles.StateEstablished && eff < rfc5382 {
		keep := eff * 4 / 5 / time.Second
		if keep < 1 {
			keep = 1
		}
		f := find(RuleBelowRFC5382, fmt.Sprintf(
			"%s: %s is below RFC 5382's 2h4m for established TCP: connections idle longer are cut, "+
				"and Linux's default keepalive (tcp_keepalive_time 7200s) does not prevent it",
			prm.Key, e.Value))
		f.Suggestion = fmt.Sprintf("make clients send TCP keepalives more often than every %s, e.g. net.ipv4.tcp_keepalive_time=%d or TCP_KEEPIDLE=%d",
			fmtDur(eff), keep, keep)
	}
	return out
}

// rfc5382 is RFC 5382 REQ-5's minimum established-TCP idle timeout.
const rfc5382 = 2*time.Hour + 4*time.Minute

// badKey explains a key the profile does not have.
func (v *Validator) badKey(find func(Rule, string) Finding, key string) Finding {
	if st, ok := v.serviceTimer(key); ok {
		f := find(RuleServiceTimer, fmt.Sprintf(
			"%s is a service timer (%s): it times connections to Kubernetes services through Cilium's load balancer, "+
				"never egress-gateway flows, whose gateway entries use the regular timers", key, st.Flag))
		switch st.Key {
		case "bpfCtTimeoutServiceTcp":
			f.Suggestion = "for established egress connections use bpfCtTimeoutRegularTcp"
		case "bpfCtTimeoutServiceAny":
			f.Suggestion = "for UDP and other egress flows use bpfCtTimeoutRegularAny"
		}
		return f
	}
	f := find(RuleUnknownKey, fmt.Sprintf("unknown key %q for Cilium %s", key, v.opts.Resolution.Version))
	if s := suggestKey(v.profile, key); s != "" {
		f.Suggestion = fmt.Sprintf("did you mean %q?", s)
	} else {
		var keys []string
		for _, p := range v.profile.Parameters {
			keys = append(keys, p.Key)
		}
		f.Suggestion = "known keys: " + strings.Join(keys, ", ")
	}
	return f
}

// serviceTimer finds a service timer by key in any spelling.
func (v *Validator) serviceTimer(key string) (profiles.ServiceTimer, bool) {
	n := normalize(key)
	for _, st := range v.profile.ServiceTimers {
		if n == normalize(st.Key) {
			return st, true
		}
	}
	return profiles.ServiceTimer{}, false
}

// fmtDur formats durations without trailing zero units: 5m, 2h, 2h13m20s.
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if d >= time.Minute && d%time.Second == 0 && strings.ContainsAny(s, "hm") {
		s += fmt.Sprintf(" (%ds)", d/time.Second)
	}
	return s
}
