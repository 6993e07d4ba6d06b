package admission

import (
	"fmt"
	"strings"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/egwct/egwct/pkg/profiles"
)

func TestParseActions(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []admv1.ValidationAction
		err  string
	}{
		{in: "Deny", want: []admv1.ValidationAction{admv1.Deny}},
		{in: "warn, audit", want: []admv1.ValidationAction{admv1.Warn, admv1.Audit}},
		{in: "Deny,Audit,Deny", want: []admv1.ValidationAction{admv1.Deny, admv1.Audit}},
		{in: "Deny,Warn", err: "exclude each other"},
		{in: "Block", err: `unknown validation action "Block"`},
	} {
		got, err := ParseActions(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseActions(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("ParseActions(%q) = %v, %v", tt.in, got, err)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("ParseActions(%q) = %v", tt.in, got)
			}
		}
	}
}

// TestYAML: the manifest is two documents that read back as the policy
// and binding Generate returns, for every profile.
func TestYAML(t *testing.T) {
	for _, name := range profiles.Names() {
		res, err := profiles.Resolve(name)
		if err != nil {
			t.Fatal(err)
		}
		out, err := YAML(Options{Resolution: res, Actions: []admv1.ValidationAction{admv1.Warn}})
		if err != nil {
			t.Fatal(err)
		}
		docs := strings.Split(string(out), "---\n")
		if len(docs) != 3 {
			t.Fatalf("%s: %d documents", name, len(docs)-1)
		}
		var vap admv1.ValidatingAdmissionPolicy
		var bind admv1.ValidatingAdmissionPolicyBinding
		if err := yaml.UnmarshalStrict([]byte(docs[1]), &vap); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := yaml.UnmarshalStrict([]byte(docs[2]), &bind); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, _ := Generate(Options{Resolution: res})
		if len(vap.Spec.Validations) != len(want.Spec.Validations) || len(vap.Spec.Variables) != len(want.Spec.Variables) {
			t.Errorf("%s: read back %d validations, %d variables", name, len(vap.Spec.Validations), len(vap.Spec.Variables))
		}
		if bind.Spec.PolicyName != Name || len(bind.Spec.ValidationActions) != 1 || bind.Spec.ValidationActions[0] != admv1.Warn {
			t.Errorf("%s: binding %+v", name, bind.Spec)
		}
		// The node default of the version is in the policy.
		est := res.Profile.ParameterFor(profiles.StateEstablished)
		if want := fmt.Sprintf(`"%s": %d,`, est.Key, est.Default/time.Second); !strings.Contains(docs[1], want) {
			t.Errorf("%s: no %s in the policy", name, want)
		}
	}
}
