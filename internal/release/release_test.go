package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestRelease packs fake binaries of every platform and checks the
// contract: the archive names, checksums.txt in sha256sum's format that
// verifies, what each archive holds, the same bytes on a second run, and a
// krew manifest whose platforms point at the archives with their sums.
func TestRelease(t *testing.T) {
	bin := t.TempDir()
	platforms := []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64"}
	for _, p := range platforms {
		goos, goarch, _ := strings.Cut(p, "/")
		dir := filepath.Join(bin, goos+"_"+goarch)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, binaryName(goos)), []byte("binary for "+p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pack := func() string {
		dist := t.TempDir()
		c := config{Version: "v1.2.3", Bin: bin, Dist: dist, Root: filepath.Join("..", ".."), URL: "https://example.com/{{version}}",
			Platforms: platforms, Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		if err := c.run(io.Discard); err != nil {
			t.Fatal(err)
		}
		return dist
	}
	dist := pack()

	sums, err := os.ReadFile(filepath.Join(dist, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(sums)), "\n")
	want := []string{"egwct_darwin_amd64.tar.gz", "egwct_darwin_arm64.tar.gz", "egwct_linux_amd64.tar.gz", "egwct_linux_arm64.tar.gz", "egwct_windows_amd64.tar.gz"}
	if len(lines) != len(want) {
		t.Fatalf("checksums.txt:\n%s", sums)
	}
	bySum := map[string]string{}
	for i, l := range lines {
		sum, name, ok := strings.Cut(l, "  ")
		if !ok || name != want[i] {
			t.Fatalf("checksums.txt line %d: %q, want the sum of %s", i+1, l, want[i])
		}
		data, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.Sum256(data)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: checksum %s does not verify", name, sum)
		}
		bySum[name] = sum
		goos := strings.Split(name, "_")[1]
		files := untar(t, data)
		if files[binaryName(goos)] != "binary for "+goos+"/"+strings.TrimSuffix(strings.Split(name, "_")[2], ".tar.gz") {
			t.Errorf("%s: binary %q", name, files[binaryName(goos)])
		}
		for _, f := range []string{"LICENSE", "README.md", "man/man1/egwct.1", "man/man1/egwct-validate.1"} {
			if files[f] == "" {
				t.Errorf("%s has no %s", name, f)
			}
		}
	}

	again := pack()
	for _, name := range append(want, "checksums.txt", "egwct.krew.yaml") {
		a, _ := os.ReadFile(filepath.Join(dist, name))
		b, _ := os.ReadFile(filepath.Join(again, name))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two runs", name)
		}
	}

	var krew struct {
		Kind     string
		Metadata struct{ Name string }
		Spec     struct {
			Version   string
			Platforms []struct {
				Selector struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				}
				URI, SHA256, Bin string
			}
		}
	}
	data, err := os.ReadFile(filepath.Join(dist, "egwct.krew.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &krew); err != nil {
		t.Fatal(err)
	}
	if krew.Kind != "Plugin" || krew.Metadata.Name != "egwct" || krew.Spec.Version != "v1.2.3" || len(krew.Spec.Platforms) != len(want) {
		t.Fatalf("krew manifest:\n%s", data)
	}
	for _, p := range krew.Spec.Platforms {
		name := ArchiveName(p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"])
		if p.URI != "https://example.com/v1.2.3/"+name || p.SHA256 != bySum[name] || p.Bin != binaryName(p.Selector.MatchLabels["os"]) {
			t.Errorf("krew platform %+v, want %s with sum %s", p, name, bySum[name])
		}
	}
}

func untar(t *testing.T, tgz []byte) map[string]string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" {
			t.Errorf("%s is owned by %d/%d %q", h.Name, h.Uid, h.Gid, h.Uname)
		}
		data, _ := io.ReadAll(tr)
		out[h.Name] = string(data)
	}
}
