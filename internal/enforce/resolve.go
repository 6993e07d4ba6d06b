package enforce

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/sweep"
	"github.com/egwct/egwct/pkg/validate"
)

// Outcome is what became of one policy's timeout text.
type Outcome string

// The outcomes of a policy with a timeout text.
const (
	// Applied: the text is valid; its timeouts are in force.
	Applied Outcome = "applied"
	// Kept: the text (or the policy, or its file) has errors now; the
	// timeouts of its last valid version stay in force, with the
	// endpoints it selects now.
	Kept Outcome = "kept"
	// Refused: the text has errors and never was valid here: the policy's
	// flows live by the node's timeouts.
	Refused Outcome = "refused"
)

// PolicyStatus is what became of one policy with a timeout text.
type PolicyStatus struct {
	Name string
	// UID and Generation identify the object read from a cluster (empty
	// for files): the Events on it name them.
	UID        string
	Generation int64
	Outcome    Outcome
	// Findings are the errors that refused (or kept) the current version.
	Findings []validate.Finding
	// Keys is how many (pod, CIDR) keys the policy has in force, Pods
	// how many endpoints they belong to and Nodes on how many nodes
	// those run (as their CiliumEndpoints say).
	Keys, Pods, Nodes int
	// Timeouts are the policy's timeouts in force, by state (nil when
	// refused).
	Timeouts map[profiles.State]time.Duration
}

// InForce reports whether the policy has timeouts in force.
func (p PolicyStatus) InForce() bool { return p.Outcome != Refused }

// Warning is something to tell about a policy that does not refuse it.
type Warning struct {
	Policy  string
	Message string
}

// Resolved is a policy set resolved from objects, and what became of each
// policy with a timeout text.
type Resolved struct {
	// Set is what goes in force: the policies with timeouts in force, by
	// name; policy slot i+1 is Set[i].
	Set []sweep.Policy
	// Policies are the policies with a timeout text, by name.
	Policies []PolicyStatus
	// Findings are every error finding, of the inputs and of the
	// policies, sorted by position.
	Findings []validate.Finding
	Warnings []Warning
	// Endpoints is how many endpoints the policies were resolved against.
	Endpoints int
}

// Keys is the number of (pod, CIDR) keys of the set.
func (r *Resolved) Keys() int {
	n := 0
	for _, p := range r.Set {
		n += len(p.Keys)
	}
	return n
}

// Names maps the set's policy slots to their names (0: no policy).
func (r *Resolved) Names() map[uint32]string {
	out := make(map[uint32]string, len(r.Set))
	for i, p := range r.Set {
		out[uint32(i+1)] = p.Name
	}
	return out
}

// Err is a *FindingsError when anything has error findings, else nil: a
// one-shot apply refuses then, an agent applies what is valid.
func (r *Resolved) Err() error {
	if len(r.Findings) == 0 {
		return nil
	}
	return &FindingsError{Findings: r.Findings}
}

// FindingsError is a refusal for error findings in the policies: nothing
// was changed.
type FindingsError struct {
	Findings []validate.Finding
}

func (e *FindingsError) Error() string {
	policies := map[string]bool{}
	for _, f := range e.Findings {
		policies[f.Policy] = true
	}
	return fmt.Sprintf("nothing applied: %d errors (in %d policies or files); fix them first", len(e.Findings), len(policies))
}

// Resolver resolves objects to policy sets, one after the other,
// remembering each policy's last valid version: a policy whose text turns
// invalid keeps its last valid timeouts while every other policy and
// every endpoint change still applies.
type Resolver struct {
	env  *Env
	v    *validate.Validator
	good map[string]lastGood
}

// lastGood is a policy's last valid version.
type lastGood struct {
	timeouts map[profiles.State]time.Duration
	spec     *policy.Spec
	file     string
}

// NewResolver returns a resolver for the node.
func NewResolver(env *Env) *Resolver {
	return &Resolver{
		env:  env,
		v:    validate.New(validate.Options{Resolution: env.Resolution, Node: env.Config}),
		good: map[string]lastGood{},
	}
}

// setEnv makes the resolver judge for env from the next Resolve, keeping
// each policy's last valid version.
func (r *Resolver) setEnv(env *Env) {
	r.env = env
	r.v = validate.New(validate.Options{Resolution: env.Resolution, Node: env.Config})
}

// Resolve validates every policy of objs and resolves the valid ones (and
// the kept ones) to keys against objs' endpoints.
func (r *Resolver) Resolve(objs Objects) *Resolved {
	out := &Resolved{Endpoints: len(objs.Endpoints)}
	out.Findings = append(out.Findings, errorsOf(objs.Findings)...)
	families := sweep.Families(r.env.Resolution.Profile)
	pols := append([]*policy.Policy(nil), objs.Policies...)
	sort.SliceStable(pols, func(i, j int) bool { return pols[i].Name < pols[j].Name })
	// A name given twice (a file and the cluster, two files): the last
	// one counts, as the API server would keep the last one applied.
	for i := 0; i+1 < len(pols); {
		if pols[i].DisplayName() == pols[i+1].DisplayName() {
			out.Warnings = append(out.Warnings, Warning{pols[i].DisplayName(), fmt.Sprintf("the policy is given more than once; %s counts, not %s", pols[i+1].Pos, pols[i].Pos)})
			pols = append(pols[:i], pols[i+1:]...)
			continue
		}
		i++
	}
	seen := map[string]bool{}
	type entry struct {
		status PolicyStatus
		spec   *policy.Spec
	}
	var entries []entry
	for _, p := range pols {
		name := p.DisplayName()
		res := r.v.Policy(p)
		errs := errorsOf(res.Findings)
		if res.Timeouts == nil && len(errs) == 0 {
			// No timeout text (any more): the node's timeouts.
			delete(r.good, name)
			continue
		}
		seen[name] = true
		spec, err := p.ParseSpec()
		if err != nil {
			errs = append(errs, validate.SpecFinding(p, err))
			spec = nil
		}
		st := PolicyStatus{Name: name, UID: p.UID, Generation: p.Generation, Findings: errs}
		switch g, had := r.good[name]; {
		case len(errs) == 0:
			st.Outcome, st.Timeouts = Applied, res.Timeouts
			r.good[name] = lastGood{timeouts: res.Timeouts, spec: spec, file: p.Pos.File}
		case had:
			st.Outcome, st.Timeouts = Kept, g.timeouts
			if spec == nil {
				spec = g.spec
			}
		default:
			st.Outcome = Refused
		}
		out.Findings = append(out.Findings, errs...)
		entries = append(entries, entry{st, spec})
	}
	// A policy not seen because its file is broken keeps its last valid
	// version; one that is gone is forgotten.
	for name, g := range r.good {
		if seen[name] {
			continue
		}
		if !objs.Broken[g.file] {
			delete(r.good, name)
			continue
		}
		entries = append(entries, entry{PolicyStatus{Name: name, Outcome: Kept, Timeouts: g.timeouts}, g.spec})
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].status.Name < entries[j].status.Name })
	ix := policy.IndexEndpoints(objs.Endpoints)
	for _, e := range entries {
		st := e.status
		if st.InForce() {
			sp := sweep.Policy{Name: st.Name}
			for s, d := range st.Timeouts {
				sp.Timeouts[s] = uint32(max(r.env.Clock.Units(d), 1))
			}
			if e.spec != nil {
				sel := e.spec.SelectIn(ix, families...)
				sp.Keys, st.Pods, st.Nodes = sel.Keys, sel.Pods, sel.Nodes
				if e.spec.NodeSelectors {
					out.Warnings = append(out.Warnings, Warning{st.Name, "the policy selects by node too; egwct applies it to every selected pod"})
				}
			}
			if len(sp.Keys) == 0 {
				out.Warnings = append(out.Warnings, Warning{st.Name, "the policy selects no endpoint"})
			}
			st.Keys = len(sp.Keys)
			out.Set = append(out.Set, sp)
		}
		out.Policies = append(out.Policies, st)
	}
	validate.SortFindings(out.Findings)
	return out
}

// Outcomes are the policies not applied as written, as egwct's pinned
// state records them for egwct top.
func Outcomes(r *Resolved) []sweep.PolicyOutcome {
	out := []sweep.PolicyOutcome{}
	for _, p := range r.Policies {
		if p.Outcome != Applied {
			out = append(out, sweep.PolicyOutcome{Name: p.Name, Outcome: string(p.Outcome), Reason: Summary(p.Findings)})
		}
	}
	return out
}

func errorsOf(fs []validate.Finding) []validate.Finding {
	var out []validate.Finding
	for _, f := range fs {
		if f.Severity == validate.Error {
			out = append(out, f)
		}
	}
	return out
}

// Summary is a short account of the findings of a policy, for logs and
// Events: "unknown-key at f.yaml:3:5: …; 2 more".
func Summary(fs []validate.Finding) string {
	if len(fs) == 0 {
		return ""
	}
	f := fs[0]
	s := f.Rule + ": " + f.Message
	if f.File != "" {
		s = fmt.Sprintf("%s at %s:%d:%d: %s", f.Rule, f.File, f.Line, f.Column, f.Message)
	}
	if f.Suggestion != "" {
		s += " (" + f.Suggestion + ")"
	}
	if len(fs) > 1 {
		s += fmt.Sprintf("; %d more", len(fs)-1)
	}
	return strings.TrimSpace(s)
}
