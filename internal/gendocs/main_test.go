package main

import (
	"bytes"
	"os"
	"testing"
)

// TestTimeoutsDocIsCurrent fails when docs/timeouts.md was not regenerated
// after a change to the profiles or the rules.
func TestTimeoutsDocIsCurrent(t *testing.T) {
	var b bytes.Buffer
	write(&b)
	got, err := os.ReadFile("../../docs/timeouts.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Fatal("docs/timeouts.md is stale: run `make docs` and commit the result")
	}
}

// TestAdmissionPolicyFresh fails when deploy/admission-policy.yaml was not
// regenerated after a change to the profiles, the rules or the generator.
func TestAdmissionPolicyFresh(t *testing.T) {
	want, err := admissionPolicy()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../deploy/admission-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("deploy/admission-policy.yaml is stale: run `make docs` and commit the result")
	}
}
