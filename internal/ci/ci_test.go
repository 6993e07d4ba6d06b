package ci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func root(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// release builds a release asset holding a stand-in egwct, as
// egwct_<os>_<arch>.tar.gz, and its checksums.txt.
func release(t *testing.T) (asset string, tgz []byte, sums string) {
	t.Helper()
	asset = fmt.Sprintf("egwct_%s_%s.tar.gz", runtime.GOOS, runtime.GOARCH)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct {
		name string
		body string
		mode int64
	}{
		{"LICENSE", "license\n", 0o644},
		{"egwct", "#!/bin/sh\necho 'egwct v9.9.9'\n", 0o755},
	} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(f.body))
	}
	tw.Close()
	gz.Close()
	sum := sha256.Sum256(buf.Bytes())
	sums = fmt.Sprintf("%x  egwct_other_arch.tar.gz\n%x  %s\n", sha256.Sum256([]byte("x")), sum, asset)
	return asset, buf.Bytes(), sums
}

// TestInstallRelease runs hack/install-release.sh against a file server
// on loopback: it installs a release whose checksum matches, and refuses
// (installing nothing) one whose checksum does not, one that
// checksums.txt does not list, and one that is missing.
func TestInstallRelease(t *testing.T) {
	asset, tgz, sums := release(t)
	files := map[string][]byte{
		"/good/" + asset: tgz, "/good/checksums.txt": []byte(sums),
		"/tampered/" + asset: append(append([]byte(nil), tgz...), 0), "/tampered/checksums.txt": []byte(sums),
		"/unlisted/" + asset: tgz, "/unlisted/checksums.txt": []byte("00  other.tar.gz\n"),
		"/missing/checksums.txt": []byte(sums),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()
	script := filepath.Join(root(t), "hack", "install-release.sh")
	install := func(folder string) (string, string, error) {
		dir := t.TempDir()
		cmd := exec.Command("sh", script, "v9.9.9", dir)
		cmd.Env = append(os.Environ(), "EGWCT_RELEASE_URL="+srv.URL+"/"+folder+"/")
		out, err := cmd.CombinedOutput()
		return dir, string(out), err
	}

	dir, out, err := install("good")
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	got, err := exec.Command(filepath.Join(dir, "egwct")).Output()
	if err != nil || strings.TrimSpace(string(got)) != "egwct v9.9.9" || !strings.Contains(out, "installed egwct v9.9.9") {
		t.Errorf("installed binary says %q (%v); the script said %s", got, err, out)
	}
	for folder, want := range map[string]string{
		"tampered": "checksum mismatch for " + asset,
		"unlisted": "checksums.txt has no line for " + asset,
		"missing":  "cannot download",
	} {
		dir, out, err := install(folder)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("%s: err %v, output %q, want %q", folder, err, out, want)
		}
		if _, err := os.Stat(filepath.Join(dir, "egwct")); err == nil {
			t.Errorf("%s: egwct was installed", folder)
		}
	}
}

// TestAction: action.yml is a composite action whose steps install with
// hack/install-release.sh and validate with the inputs.
func TestAction(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root(t), "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var a struct {
		Name   string
		Inputs map[string]struct {
			Required bool
			Default  string
		}
		Runs struct {
			Using string
			Steps []struct {
				Shell string
				Run   string
				Env   map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(data, &a); err != nil {
		t.Fatal(err)
	}
	if a.Runs.Using != "composite" || len(a.Runs.Steps) != 2 {
		t.Fatalf("runs = %+v", a.Runs)
	}
	if !strings.Contains(a.Runs.Steps[0].Run, `"$GITHUB_ACTION_PATH/hack/install-release.sh"`) {
		t.Errorf("the install step does not use hack/install-release.sh: %s", a.Runs.Steps[0].Run)
	}
	for _, in := range []string{"version", "cilium-version", "paths", "strict", "sarif-file", "node-config"} {
		if _, ok := a.Inputs[in]; !ok {
			t.Errorf("no input %s", in)
		}
		found := false
		for _, s := range a.Runs.Steps {
			for _, v := range s.Env {
				if v == "${{ inputs."+in+" }}" {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("input %s is not used", in)
		}
	}
	if !a.Inputs["cilium-version"].Required || a.Runs.Steps[1].Env["EGWCT_CILIUM_VERSION"] == "" {
		t.Error("the Cilium version must be required and passed as EGWCT_CILIUM_VERSION")
	}
	for _, s := range a.Runs.Steps {
		if s.Shell != "bash" {
			t.Errorf("step shell %q", s.Shell)
		}
		if strings.Contains(s.Run, "${{") {
			t.Errorf("a run script expands an expression in place (script injection): %s", s.Run)
		}
	}
	if _, err := exec.LookPath("bash"); err == nil {
		for i, s := range a.Runs.Steps {
			if out, err := exec.Command("bash", "-n", "-c", s.Run).CombinedOutput(); err != nil {
				t.Errorf("step %d is not valid bash: %v %s", i, err, out)
			}
		}
	}
}

// TestPreCommitHooks runs the hook with Debian's pre-commit (make deps
// installs it): `pre-commit try-repo` builds egwct from this checkout and
// checks a valid and an invalid manifest.
func TestPreCommitHooks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds egwct in pre-commit's environment")
	}
	pc, err := exec.LookPath("pre-commit")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("pre-commit is missing: make deps installs it")
		}
		t.Skip("pre-commit is missing: make deps installs it (apt-get install pre-commit)")
	}
	repo := root(t)
	work := t.TempDir()
	gitRun := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	gitRun("init", "-q")
	for _, f := range []string{"valid/payments-egress.yaml", "invalid/typos.yaml"} {
		data, err := os.ReadFile(filepath.Join(repo, "examples", f))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(work, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(work, f), data, 0o644)
	}
	gitRun("add", ".")
	gocache, _ := exec.Command("go", "env", "GOMODCACHE").Output()
	try := func(file string) (string, error) {
		cmd := exec.Command(pc, "try-repo", repo, "egwct-validate", "--files", file)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "EGWCT_CILIUM_VERSION=1.18.3", "PRE_COMMIT_HOME="+filepath.Join(work, ".pre-commit-home"),
			"GOMODCACHE="+strings.TrimSpace(string(gocache)))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := try("valid/payments-egress.yaml"); err != nil || !strings.Contains(out, "Passed") {
		t.Fatalf("a valid manifest: %v\n%s", err, out)
	}
	out, err := try("invalid/typos.yaml")
	if err == nil || !strings.Contains(out, "Failed") || !strings.Contains(out, `unknown key "bpfCtTimeoutRegularTCP"`) {
		t.Errorf("an invalid manifest: %v\n%s", err, out)
	}
}
