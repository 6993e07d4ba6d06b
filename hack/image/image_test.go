package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// The OCI media types the image must use (not Docker's).
const (
	mtIndex    = "application/vnd.oci.image.index.v1+json"
	mtManifest = "application/vnd.oci.image.manifest.v1+json"
	mtConfig   = "application/vnd.oci.image.config.v1+json"
	mtLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// The layout is read back with encoding/json and the OCI spec's shapes,
// not with the library that wrote it.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
	// ArtifactType is for artifacts, not images (skopeo 1.9 chokes on it).
	ArtifactType string `json:"artifactType"`
	Platform     *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	} `json:"platform"`
}

type index struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Manifests     []descriptor      `json:"manifests"`
	Annotations   map[string]string `json:"annotations"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type imageConfig struct {
	OS           string    `json:"os"`
	Architecture string    `json:"architecture"`
	Created      time.Time `json:"created"`
	Config       struct {
		Entrypoint []string          `json:"Entrypoint"`
		Cmd        []string          `json:"Cmd"`
		User       string            `json:"User"`
		Env        []string          `json:"Env"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// ociLayout is an OCI image layout on disk.
type ociLayout struct {
	t   *testing.T
	dir string
}

// blob reads a blob and checks that its bytes have its digest and size.
func (l ociLayout) blob(d descriptor) []byte {
	l.t.Helper()
	hexsum, ok := strings.CutPrefix(d.Digest, "sha256:")
	if !ok {
		l.t.Fatalf("digest %q: not sha256", d.Digest)
	}
	b, err := os.ReadFile(filepath.Join(l.dir, "blobs", "sha256", hexsum))
	if err != nil {
		l.t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != hexsum {
		l.t.Fatalf("blob %s: its bytes have sha256 %x", d.Digest, sum)
	}
	if int64(len(b)) != d.Size {
		l.t.Fatalf("blob %s: %d bytes, its descriptor says %d", d.Digest, len(b), d.Size)
	}
	return b
}

func (l ociLayout) json(d descriptor, v any) {
	l.t.Helper()
	if err := json.Unmarshal(l.blob(d), v); err != nil {
		l.t.Fatalf("blob %s: %v", d.Digest, err)
	}
}

// file is one entry of a layer.
type file struct {
	hdr  *tar.Header
	data []byte
}

// layerFiles reads a gzipped layer, checking its diff ID.
func (l ociLayout) layerFiles(d descriptor, diffID string) map[string]file {
	l.t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(l.blob(d)))
	if err != nil {
		l.t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		l.t.Errorf("layer %s: gzip header has name %q, time %v", d.Digest, zr.Name, zr.ModTime)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		l.t.Fatal(err)
	}
	if sum := sha256.Sum256(raw); "sha256:"+hex.EncodeToString(sum[:]) != diffID {
		l.t.Errorf("layer %s: uncompressed sha256 %x, config's diff_id %s", d.Digest, sum, diffID)
	}
	files := map[string]file{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			l.t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			l.t.Fatal(err)
		}
		files[h.Name] = file{h, b}
	}
}

// testConfig is a build of fake binaries (the bytes of the layer do not
// care what a binary is).
func testConfig(t *testing.T) config {
	bin := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		if err := os.MkdirAll(filepath.Join(bin, "linux_"+arch), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, "linux_"+arch, "egwct"), []byte("binary for "+arch), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return config{
		Bin:       bin,
		Platforms: []string{"linux/amd64", "linux/arm64"},
		Version:   "v1.2.3",
		Revision:  "0123456789abcdef0123456789abcdef01234567",
		Source:    "https://github.com/egwct/egwct",
		Created:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Tag:       "v1.2.3",
		License:   "../../LICENSE",
	}
}

// build writes c's layout to a new folder and returns the folder and the
// index's digest.
func build(t *testing.T, c config) (string, string) {
	t.Helper()
	c.Out = filepath.Join(t.TempDir(), "image")
	idx, _, err := buildIndex(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeLayout(c.Out, idx, c.Tag); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return c.Out, d.String()
}

// tree is every file of a folder with its bytes.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		m[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The same inputs make the same bytes, whenever they are built; another
// date makes another digest.
func TestReproducible(t *testing.T) {
	c := testConfig(t)
	dir1, d1 := build(t, c)
	dir2, d2 := build(t, c)
	if d1 != d2 {
		t.Fatalf("two builds of the same inputs: %s and %s", d1, d2)
	}
	t1, t2 := tree(t, dir1), tree(t, dir2)
	if len(t1) != len(t2) {
		t.Fatalf("two builds wrote %d and %d files", len(t1), len(t2))
	}
	for name, b := range t1 {
		if t2[name] != b {
			t.Errorf("%s differs between two builds", name)
		}
	}
	c.Created = c.Created.Add(time.Second)
	if _, d3 := build(t, c); d3 == d1 {
		t.Errorf("another date made the same digest %s", d3)
	}
}

// The layout's shape, the base's files and their owners, modes and times.
func TestLayout(t *testing.T) {
	c := testConfig(t)
	dir, digest := build(t, c)
	l := ociLayout{t, dir}
	img := checkLayout(t, l, digest, c.Tag, c.Version, c.Revision, c.Created)
	for arch, files := range img {
		if got := string(files["usr/bin/egwct"].data); got != "binary for "+arch {
			t.Errorf("%s: usr/bin/egwct is %q", arch, got)
		}
	}
}

// checkLayout checks everything of the layout at l that does not depend on
// the binaries, and returns each architecture's files.
func checkLayout(t *testing.T, l ociLayout, digest, tag, version, revision string, created time.Time) map[string]map[string]file {
	t.Helper()
	var ol struct{ ImageLayoutVersion string }
	if b, err := os.ReadFile(filepath.Join(l.dir, "oci-layout")); err != nil || json.Unmarshal(b, &ol) != nil || ol.ImageLayoutVersion != "1.0.0" {
		t.Errorf("oci-layout: %q, %v", b, err)
	}
	var top index
	b, err := os.ReadFile(filepath.Join(l.dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	// One entry, the image index: what crane push PATH (without --index),
	// skopeo copy oci:PATH and oras copy --from-oci-layout PATH:TAG push.
	if len(top.Manifests) != 1 {
		t.Fatalf("index.json names %d manifests, want the image index only", len(top.Manifests))
	}
	d := top.Manifests[0]
	if d.MediaType != mtIndex || d.Digest != digest {
		t.Errorf("index.json names %s %s, want %s %s", d.MediaType, d.Digest, mtIndex, digest)
	}
	if got := d.Annotations["org.opencontainers.image.ref.name"]; got != tag {
		t.Errorf("the layout's tag is %q, want %q", got, tag)
	}

	wantLabels := map[string]string{
		"org.opencontainers.image.source":   "https://github.com/egwct/egwct",
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.created":  created.Format(time.RFC3339),
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
	checkLabels := func(what string, got map[string]string) {
		t.Helper()
		for k, v := range wantLabels {
			if got[k] != v {
				t.Errorf("%s: %s is %q, want %q", what, k, got[k], v)
			}
		}
	}

	var idx index
	l.json(d, &idx)
	if idx.SchemaVersion != 2 || idx.MediaType != mtIndex {
		t.Errorf("image index: schemaVersion %d, mediaType %q", idx.SchemaVersion, idx.MediaType)
	}
	checkLabels("image index annotations", idx.Annotations)
	var platforms []string
	images := map[string]map[string]file{}
	for _, md := range idx.Manifests {
		if md.Platform == nil {
			t.Fatalf("manifest %s has no platform", md.Digest)
		}
		p := md.Platform.OS + "/" + md.Platform.Architecture
		platforms = append(platforms, p)
		if md.MediaType != mtManifest || md.ArtifactType != "" {
			t.Errorf("%s: media type %q, artifact type %q; want an image's", p, md.MediaType, md.ArtifactType)
		}
		var m manifest
		l.json(md, &m)
		if m.MediaType != mtManifest || m.Config.MediaType != mtConfig {
			t.Errorf("%s: manifest %q, config %q", p, m.MediaType, m.Config.MediaType)
		}
		var cfg imageConfig
		l.json(m.Config, &cfg)
		if cfg.OS+"/"+cfg.Architecture != p {
			t.Errorf("%s: the config says %s/%s", p, cfg.OS, cfg.Architecture)
		}
		if !cfg.Created.Equal(created) {
			t.Errorf("%s: created %v, want %v", p, cfg.Created, created)
		}
		if got := strings.Join(cfg.Config.Entrypoint, " "); got != "/usr/bin/egwct" || len(cfg.Config.Cmd) != 0 {
			t.Errorf("%s: entrypoint %q, cmd %q", p, cfg.Config.Entrypoint, cfg.Config.Cmd)
		}
		// Root: the agent needs the capabilities the DaemonSet adds (see
		// user in image.go).
		if cfg.Config.User != "0:0" {
			t.Errorf("%s: user %q, want 0:0", p, cfg.Config.User)
		}
		checkLabels(p+" labels", cfg.Config.Labels)
		if len(m.Layers) != 1 || m.Layers[0].MediaType != mtLayer || len(cfg.RootFS.DiffIDs) != 1 {
			t.Fatalf("%s: layers %+v, diff_ids %v; want one gzipped OCI layer", p, m.Layers, cfg.RootFS.DiffIDs)
		}
		files := l.layerFiles(m.Layers[0], cfg.RootFS.DiffIDs[0])
		var names []string
		for name, f := range files {
			names = append(names, name)
			h := f.hdr
			if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(created) {
				t.Errorf("%s: %s: owner %d:%d (%q:%q), time %v; want 0:0 and %v", p, name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime, created)
			}
		}
		sort.Strings(names)
		want := "etc/ etc/group etc/passwd root/ tmp/ usr/ usr/bin/ usr/bin/egwct usr/share/ usr/share/doc/ usr/share/doc/egwct/ usr/share/doc/egwct/LICENSE"
		if got := strings.Join(names, " "); got != want {
			t.Errorf("%s: the layer holds\n%s\nwant\n%s", p, got, want)
		}
		modes := map[string]int64{"usr/bin/egwct": 0o755, "tmp/": 0o1777, "etc/passwd": 0o644, "root/": 0o700}
		for name, mode := range modes {
			if got := files[name].hdr.Mode; got != mode {
				t.Errorf("%s: %s has mode %o, want %o", p, name, got, mode)
			}
		}
		if pw := string(files["etc/passwd"].data); !strings.HasPrefix(pw, "root:x:0:0:") || !strings.Contains(pw, "\nnobody:x:65534:65534:") {
			t.Errorf("%s: /etc/passwd is %q", p, pw)
		}
		images[md.Platform.Architecture] = files
	}
	sort.Strings(platforms)
	if got := strings.Join(platforms, " "); got != "linux/amd64 linux/arm64" {
		t.Errorf("platforms %s, want linux/amd64 linux/arm64", got)
	}

	// And go-containerregistry's own consistency checks of every blob.
	ii, err := layout.ImageIndexFromPath(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := ii.ImageIndex(mustHash(t, digest))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(inner); err != nil {
		t.Errorf("validate.Index: %v", err)
	}
	return images
}

// make image, as a user runs it: the real binaries of make cross for both
// platforms, stamped; each static, and the one this machine runs reports
// the version and commit it was given. Then again from new binaries: the
// same digest.
func TestMakeImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds egwct twice for two platforms")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	const (
		version  = "v0.0.0-imagetest"
		revision = "89abcdef0123456789abcdef0123456789abcdef"
		date     = "2026-01-02T03:04:05Z"
	)
	created, _ := time.Parse(time.RFC3339, date)
	tmp := t.TempDir()
	makeImage := func(n string) (string, string) {
		t.Helper()
		out := filepath.Join(tmp, "image"+n)
		cmd := exec.Command("make", "-C", "../..", "--no-print-directory", "image",
			"CROSS_DIR="+filepath.Join(tmp, "bin"+n), "IMAGE_DIR="+out,
			"VERSION="+version, "COMMIT="+revision, "DATE="+date)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("make image: %v\n%s%s", err, stdout.String(), stderr.String())
		}
		t.Logf("make image:\n%s", stderr.String())
		digests := regexp.MustCompile(`(?m)^sha256:[0-9a-f]{64}$`).FindAllString(stdout.String(), -1)
		if len(digests) != 1 {
			t.Fatalf("make image printed no digest line:\n%s", stdout.String())
		}
		t.Logf("index %s", digests[0])
		return out, digests[0]
	}
	dir, digest := makeImage("1")
	images := checkLayout(t, ociLayout{t, dir}, digest, version, version, revision, created)

	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	ran := false
	for arch, files := range images {
		bin := filepath.Join(tmp, "egwct-"+arch)
		if err := os.WriteFile(bin, files["usr/bin/egwct"].data, 0o755); err != nil {
			t.Fatal(err)
		}
		checkStatic(t, bin, machines[arch])
		if runtime.GOOS != "linux" || runtime.GOARCH != arch {
			continue
		}
		ran = true
		// As a container runtime would run it: the layer's files are the
		// whole root (chroot, as root), with no libc and no /proc.
		cmd := exec.Command(bin, "version", "-o", "json")
		if os.Geteuid() == 0 {
			root := filepath.Join(tmp, "rootfs-"+arch)
			unpack(t, root, files)
			cmd = exec.Command("/usr/bin/egwct", "version", "-o", "json")
			cmd.Dir = "/"
			cmd.Env = []string{"PATH=/usr/bin"}
			cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		} else {
			t.Log("not root: the binary runs outside the image's root")
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s version -o json: %v", arch, err)
		}
		var v struct{ Version, Commit, BuildDate, Platform string }
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("%s version -o json: %v\n%s", arch, err, out)
		}
		if v.Version != version || v.Commit != revision || v.BuildDate != date || v.Platform != "linux/"+arch {
			t.Errorf("the image's %s binary reports %+v; want %s, %s, %s, linux/%s", arch, v, version, revision, date, arch)
		}
		// The commands that need no kernel, as nobody (docker run --user 65534).
		if cmd.SysProcAttr != nil {
			nobody := exec.Command("/usr/bin/egwct", "profiles", "list")
			nobody.Dir, nobody.Env = "/", cmd.Env
			nobody.SysProcAttr = &syscall.SysProcAttr{Chroot: cmd.SysProcAttr.Chroot,
				Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			if out, err := nobody.CombinedOutput(); err != nil || !strings.Contains(string(out), "1.18") {
				t.Errorf("%s profiles list as 65534: %v\n%s", arch, err, out)
			}
		}
	}
	if !ran {
		t.Logf("no image for this machine (%s/%s) to run", runtime.GOOS, runtime.GOARCH)
	}

	if _, again := makeImage("2"); again != digest {
		t.Errorf("make image from newly built binaries: %s, first %s", again, digest)
	}
}

// unpack writes a layer's files under root.
func unpack(t *testing.T, root string, files map[string]file) {
	t.Helper()
	var names []string
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names) // a folder before what it holds
	for _, name := range names {
		f := files[name]
		p := filepath.Join(root, filepath.FromSlash(name))
		mode := fs.FileMode(f.hdr.Mode).Perm()
		var err error
		if f.hdr.Typeflag == tar.TypeDir {
			err = os.MkdirAll(p, mode)
		} else {
			err = os.WriteFile(p, f.data, mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkStatic checks that an ELF file is for machine m and asks for no
// interpreter and no shared library: it runs on an empty base.
func checkStatic(t *testing.T, bin string, m elf.Machine) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != m {
		t.Errorf("%s: machine %v, want %v", bin, f.Machine, m)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: has an ELF interpreter (PT_INTERP): not static", bin)
		}
		if p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: has a dynamic section", bin)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) != 0 {
		t.Errorf("%s: needs shared libraries %v (%v)", bin, libs, err)
	}
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// testRegistry is a registry for one test, as go-containerregistry's
// own tests start one; the returned prefix is its host/you/egwct.
func testRegistry(t *testing.T) string {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	return strings.TrimPrefix(reg.URL, "http://") + "/you/egwct"
}

// command runs a command and returns its output, failing the test with its
// stderr when it fails.
func command(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// crane runs the crane this module pins (go tool crane).
func crane(t *testing.T, args ...string) string {
	t.Helper()
	return command(t, "go", append([]string{"tool", "crane"}, args...)...)
}

// checkPushed checks that ref is the layout's index, whole: the digest
// make image printed, valid, and each platform resolves to its image.
func checkPushed(t *testing.T, ref, digest string) {
	t.Helper()
	if got := crane(t, "digest", ref); got != digest {
		t.Errorf("the registry's %s has digest %s, make image printed %s", ref, got, digest)
	}
	crane(t, "validate", "--remote", ref)
	for _, arch := range []string{"amd64", "arm64"} {
		var cfg imageConfig
		if err := json.Unmarshal([]byte(crane(t, "config", "--platform", "linux/"+arch, ref)), &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.Architecture != arch {
			t.Errorf("linux/%s resolves to an image for %s", arch, cfg.Architecture)
		}
	}
}

// README's crane push, to a registry in the test.
func TestCranePush(t *testing.T) {
	if testing.Short() {
		t.Skip("builds crane")
	}
	c := testConfig(t)
	dir, digest := build(t, c)
	ref := testRegistry(t) + ":" + c.Tag
	if got := crane(t, "push", dir, ref); !strings.HasSuffix(got, "@"+digest) {
		t.Errorf("crane push printed %q, want the digest %s", got, digest)
	}
	checkPushed(t, ref, digest)
}

// README's skopeo copy (Debian's skopeo; make deps installs it), to a
// registry in the test.
func TestSkopeoCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds crane")
	}
	if _, err := exec.LookPath("skopeo"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("skopeo is missing (make deps installs it)")
		}
		t.Skip("skopeo is missing (make deps installs it)")
	}
	c := testConfig(t)
	dir, digest := build(t, c)
	ref := testRegistry(t) + ":" + c.Tag
	// --insecure-policy: no /etc/containers/policy.json needed here;
	// --dest-tls-verify=false: the test's registry speaks plain HTTP.
	command(t, "skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false",
		"--all", "--preserve-digests", "oci:"+dir, "docker://"+ref)
	checkPushed(t, ref, digest)
}

// README's oras cp (the oras this module pins: go tool oras), to a
// registry in the test.
func TestOrasCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds oras and crane")
	}
	c := testConfig(t)
	dir, digest := build(t, c)
	ref := testRegistry(t) + ":" + c.Tag
	// --to-plain-http: the test's registry speaks plain HTTP.
	command(t, "go", "tool", "oras", "cp", "--to-plain-http", "--from-oci-layout", dir+":"+c.Tag, ref)
	checkPushed(t, ref, digest)
}
