package enforce

import (
	"errors"
	"fmt"
	"io"

	"github.com/egwct/egwct/internal/manifest"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/validate"
)

// Objects are the policies and endpoints of a node's inputs, with the
// findings of inputs that could not be read whole (syntax errors, too
// large).
type Objects struct {
	Policies  []*policy.Policy
	Endpoints []*policy.Endpoint
	// Findings are the inputs' own problems; a policy after a syntax
	// error in its file is not in Policies.
	Findings []validate.Finding
	// Broken names the inputs whose findings are errors: policies last
	// seen in them keep their last good timeouts (see Resolver).
	Broken map[string]bool
}

// Add appends the objects of o.
func (o *Objects) Add(more Objects) {
	o.Policies = append(o.Policies, more.Policies...)
	o.Endpoints = append(o.Endpoints, more.Endpoints...)
	o.Findings = append(o.Findings, more.Findings...)
	for k := range more.Broken {
		o.broken(k)
	}
}

func (o *Objects) broken(name string) {
	if o.Broken == nil {
		o.Broken = map[string]bool{}
	}
	o.Broken[name] = true
}

// Parse reads every input and decodes its policies and endpoints. An
// input that cannot be read at all (missing, unreadable) is an error; one
// that is too large or has a syntax error becomes a finding, and what
// came before the syntax error is kept.
func Parse(inputs []manifest.Input, stdin io.Reader) (Objects, error) {
	var o Objects
	for _, in := range inputs {
		data, err := in.Read(stdin)
		if errors.Is(err, manifest.ErrTooLarge) {
			o.Findings = append(o.Findings, validate.FileTooLarge(in.Name, manifest.MaxSize))
			o.broken(in.Name)
			continue
		}
		if err != nil {
			return Objects{}, fmt.Errorf("%s: %w", in.Name, err)
		}
		err = policy.NewSource(in.Name, data).EachObject(
			func(p *policy.Policy) { o.Policies = append(o.Policies, p) },
			func(e *policy.Endpoint) { o.Endpoints = append(o.Endpoints, e) }, nil)
		var se *policy.SyntaxError
		if errors.As(err, &se) {
			o.Findings = append(o.Findings, validate.SyntaxFinding(se))
			o.broken(in.Name)
		} else if err != nil {
			return Objects{}, fmt.Errorf("%s: %w", in.Name, err)
		}
	}
	return o, nil
}
