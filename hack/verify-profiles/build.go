package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"go/build/constraint"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/mod/modfile"

	"github.com/egwct/egwct/pkg/profiles"
)

// generations name the build tag of the extractor's files for each Cilium
// minor: the constructors and cells that create the maps changed between
// minors (see the files of ./_extract).
var generations = map[string]string{
	"1.14": "cilium114",
	"1.15": "cilium115",
	"1.16": "cilium116",
	"1.17": "cilium117",
	"1.18": "cilium118",
	"1.19": "cilium119",
	"1.20": "cilium120",
}

// srcDir is this module's directory (the extractor's sources and the facts
// module are found from it).
func srcDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// build returns the extractor binary for release v, building it if the
// cache has none for this release and these extractor sources, and the
// directory of Cilium's module source.
func build(v profiles.Version, cache string) (bin, src string, err error) {
	minor := fmt.Sprintf("%d.%d", v.Major, v.Minor)
	tag, ok := generations[minor]
	if !ok {
		known := make([]string, 0, len(generations))
		for m := range generations {
			known = append(known, m)
		}
		sort.Strings(known)
		return "", "", fmt.Errorf("the extractor has no code for Cilium %s's API (it knows %s)", minor, strings.Join(known, ", "))
	}
	ext := filepath.Join(srcDir(), "_extract")
	factsDir := filepath.Join(srcDir(), "facts")
	hash, err := hashFiles(ext, factsDir)
	if err != nil {
		return "", "", err
	}
	dir := filepath.Join(cache, v.String()+"-"+hash[:12])
	// Cilium's map code pins under the bpffs root the agent was given only
	// in a binary named like the agent (pkg/components.IsCiliumAgent);
	// any other binary pins under the first bpffs of the mount table.
	bin = filepath.Join(dir, "cilium-agent")
	mod, err := download(v)
	if err != nil {
		return "", "", err
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, mod.Dir, nil
	}
	// Builds of this release from older extractor sources are of no use.
	old, _ := filepath.Glob(filepath.Join(cache, v.String()+"-*"))
	for _, o := range old {
		if o != dir {
			os.RemoveAll(o)
		}
	}
	// Start from nothing: an interrupted build may have left files of
	// another generation.
	if err := os.RemoveAll(dir); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	gomod, err := tempGoMod(v, mod.GoMod, factsDir)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), gomod, 0o644); err != nil {
		return "", "", err
	}
	// Only the files of this generation: go mod tidy reads every file
	// whatever its build tags, and other generations import packages this
	// release does not have.
	files, _ := filepath.Glob(filepath.Join(ext, "*.go"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", "", err
		}
		ok, err := forTag(b, tag)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", f, err)
		}
		if !ok {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			return "", "", err
		}
	}
	env := []string{"GOFLAGS=-mod=mod", "GOWORK=off"}
	if err := command(dir, env, "go", "mod", "tidy"); err != nil {
		return "", "", fmt.Errorf("go mod tidy against github.com/cilium/cilium@v%s: %w", v, err)
	}
	if err := command(dir, env, "go", "build", "-tags", tag, "-o", bin+".tmp", "."); err != nil {
		return "", "", fmt.Errorf("build against github.com/cilium/cilium@v%s: %w", v, err)
	}
	return bin, mod.Dir, os.Rename(bin+".tmp", bin)
}

// forTag reports whether a Go file's //go:build line (if any) is satisfied
// by the build tag alone.
func forTag(src []byte, tag string) (bool, error) {
	for _, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "package ") {
			break
		}
		if constraint.IsGoBuild(line) {
			expr, err := constraint.Parse(line)
			if err != nil {
				return false, err
			}
			return expr.Eval(func(t string) bool { return t == tag }), nil
		}
	}
	return true, nil
}

type module struct {
	Dir, GoMod, Error string
}

// download fetches Cilium's module from the proxy into the module cache.
func download(v profiles.Version) (module, error) {
	var m module
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/cilium/cilium@v"+v.String())
	// Outside any module: the download must not depend on this one's go.mod.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	var stderr tail
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	if err := json.Unmarshal(out, &m); err != nil {
		return m, fmt.Errorf("go mod download github.com/cilium/cilium@v%s: %v: %s %s", v, runErr, strings.TrimSpace(string(out)), stderr.String())
	}
	if m.Error != "" {
		return m, fmt.Errorf("github.com/cilium/cilium@v%s is not on the Go module proxy: %s", v, m.Error)
	}
	return m, nil
}

// tempGoMod is the go.mod of the per-release module: Cilium at v, the
// facts module from this tree, and the replace directives of Cilium's own
// go.mod (its forks of client-go, controller-tools, ...), without which
// some releases do not build.
func tempGoMod(v profiles.Version, ciliumGoMod, factsDir string) ([]byte, error) {
	data, err := os.ReadFile(ciliumGoMod)
	if err != nil {
		return nil, err
	}
	cf, err := modfile.ParseLax(ciliumGoMod, data, nil)
	if err != nil {
		return nil, err
	}
	goVersion := "1.21"
	if cf.Go != nil {
		goVersion = cf.Go.Version
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "module egwct-verify-extract\n\ngo %s\n\n", goVersion)
	fmt.Fprintf(&b, "require github.com/cilium/cilium v%s\n", v)
	fmt.Fprintf(&b, "require github.com/egwct/egwct/hack/verify-profiles/facts v0.0.0\n")
	fmt.Fprintf(&b, "replace github.com/egwct/egwct/hack/verify-profiles/facts => %s\n", factsDir)
	for _, r := range cf.Replace {
		if strings.HasPrefix(r.New.Path, ".") || strings.HasPrefix(r.New.Path, "/") {
			continue // a directory inside Cilium's repository
		}
		old := r.Old.Path
		if r.Old.Version != "" {
			old += " " + r.Old.Version
		}
		fmt.Fprintf(&b, "replace %s => %s %s\n", old, r.New.Path, r.New.Version)
	}
	return b.Bytes(), nil
}

func hashFiles(dirs ...string) (string, error) {
	h := sha256.New()
	for _, d := range dirs {
		files, err := filepath.Glob(filepath.Join(d, "*"))
		if err != nil {
			return "", err
		}
		sort.Strings(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(f), len(b))
			h.Write(b)
		}
	}
	fmt.Fprintf(h, "%s", runtime.Version())
	return hex.EncodeToString(h.Sum(nil)), nil
}

// command runs a command, keeping the tail of its output for the error.
func command(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out tail
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %s", err, out.String())
	}
	return nil
}

// tail keeps the last 4 KiB written to it.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tail) String() string { return strings.TrimSpace(string(t.b)) }

var _ io.Writer = (*tail)(nil)
