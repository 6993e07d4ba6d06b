package admission

import (
	"fmt"
	"testing"

	celgo "github.com/google/cel-go/cel"
	"k8s.io/apimachinery/pkg/util/version"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/egwct/egwct/pkg/profiles"
)

// expr is a policy expression as the API server's compiler takes it.
type expr struct {
	name, text string
	returns    *celgo.Type
}

func (e expr) GetName() string       { return e.name }
func (e expr) GetExpression() string { return e.text }

// ReturnTypes is the one type the API server wants of the expression
// (a variable's is AnyType).
func (e expr) ReturnTypes() []*celgo.Type { return []*celgo.Type{e.returns} }

// TestCompilesForOldestKubernetes: every expression of the policy, for
// every profile, compiles with the API server's own compiler (variables
// composed as a ValidatingAdmissionPolicy composes them) in the CEL
// environment that the oldest API server with ValidatingAdmissionPolicy
// v1, Kubernetes 1.30, gives new expressions: the libraries introduced up
// to its compatibility version 1.29 (a server accepts in new expressions
// only what the release before it knows, so that it can be rolled back).
// The API-server tests run one recent release; this keeps the policy
// within what older clusters accept at `kubectl apply` time, and names the
// expression that would not be.
func TestCompilesForOldestKubernetes(t *testing.T) {
	for _, compat := range []*version.Version{version.MajorMinor(1, 29), environment.DefaultCompatibilityVersion()} {
		for _, name := range profiles.Names() {
			res, err := profiles.Resolve(name)
			if err != nil {
				t.Fatal(err)
			}
			c, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(compat))
			if err != nil {
				t.Fatal(err)
			}
			opts := plugincel.OptionalVariableDeclarations{HasAuthorizer: true}
			vap, _ := Generate(Options{Resolution: res})
			check := func(e expr, r plugincel.CompilationResult) {
				if r.Error != nil {
					t.Errorf("Kubernetes CEL compatibility version %s, profile %s, %s: %v\nin: %s", compat, name, e.name, r.Error, e.text)
				}
			}
			for _, v := range vap.Spec.Variables {
				e := expr{v.Name, v.Expression, celgo.AnyType}
				check(e, c.CompileAndStoreVariable(e, opts, environment.NewExpressions))
			}
			var exprs []expr
			for _, m := range vap.Spec.MatchConditions {
				exprs = append(exprs, expr{"matchCondition " + m.Name, m.Expression, celgo.BoolType})
			}
			for i, v := range vap.Spec.Validations {
				exprs = append(exprs, expr{fmt.Sprintf("validation %d", i), v.Expression, celgo.BoolType})
				if v.MessageExpression != "" {
					exprs = append(exprs, expr{fmt.Sprintf("messageExpression of validation %d", i), v.MessageExpression, celgo.StringType})
				}
			}
			for _, e := range exprs {
				check(e, c.CompileCELExpression(e, opts, environment.NewExpressions))
			}
		}
	}
}
