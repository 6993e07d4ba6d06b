// Package charttest renders egwct's Helm chart (deploy/helm/egwct) in
// tests with the renderer hack/chart.sh builds from the tool module
// hack/chart (Helm's Go library), so that egwct's own module never links
// Helm. Like the API server binaries of package k8stest, the renderer is
// built once into a cache outside the repository; tests skip without it,
// except in CI, where they fail.
package charttest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Root is the repository's root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Chart is the chart's folder.
func Chart() string { return filepath.Join(Root(), "deploy", "helm", "egwct") }

// Path is where the renderer is looked for: $EGWCT_CHART (make test sets
// it), else where hack/chart.sh builds it for the current sources of
// hack/chart: ${EGWCT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/egwct}/bin/chart-HASH.
func Path() (string, error) {
	if p := os.Getenv("EGWCT_CHART"); p != "" {
		return p, nil
	}
	mod := filepath.Join(Root(), "hack", "chart")
	// As hack/chart.sh: cat go.mod go.sum *.go | sha256sum | cut -c1-16.
	srcs, err := filepath.Glob(filepath.Join(mod, "*.go"))
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range append([]string{filepath.Join(mod, "go.mod"), filepath.Join(mod, "go.sum")}, srcs...) {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	cache := os.Getenv("EGWCT_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "egwct")
	}
	return filepath.Join(cache, "bin", "chart-"+hex.EncodeToString(h.Sum(nil))[:16]), nil
}

// Require returns the renderer's path, and skips the test when it has not
// been built (fails in CI).
func Require(t testing.TB) string {
	t.Helper()
	p, err := Path()
	if err == nil {
		_, err = os.Stat(p)
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no chart renderer (%v): CI must run the chart's tests (make test builds it)", err)
		}
		t.Skipf("no chart renderer (%v): run make test, or hack/chart.sh --path once (it builds it)", err)
	}
	return p
}

// Render renders the chart as `helm template` would: args are the
// renderer's flags (-n NS, --name RELEASE, --set K=V, -f FILE,
// --api-versions G/V, --kube-version V) followed by the chart folder; a folder given
// relative is taken from the repository's root. It fails the test on an
// error.
func Render(t testing.TB, args ...string) string {
	t.Helper()
	out, err := TryRender(t, args...)
	if err != nil {
		t.Fatalf("render the chart (%s): %v", strings.Join(args, " "), err)
	}
	return out
}

// TryRender is Render that returns the renderer's error, with what it
// said, instead of failing the test.
func TryRender(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin := Require(t)
	cmd := exec.Command(bin, args...)
	cmd.Dir = Root()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// Helm returns the path of the helm CLI that hack/helm.sh builds (the
// version hack/chart renders with, stamped as a release): $EGWCT_HELM
// (make test sets it), else hack/helm.sh is run, which builds it once into
// the cache.
func Helm(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("EGWCT_HELM"); p != "" {
		return p
	}
	out, err := exec.Command("sh", filepath.Join(Root(), "hack", "helm.sh")).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("hack/helm.sh: %v\n%s", err, stderr)
		}
		t.Skipf("no helm CLI (hack/helm.sh: %v)\n%s", err, stderr)
	}
	return strings.TrimSpace(string(out))
}
