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

	"github.com/egwct/egwct/internal/charttest"
)

func TestChartVersion(t *testing.T) {
	for v, want := range map[string]string{
		"v1.2.3":                  "1.2.3",
		"v0.2.0-rc.1":             "0.2.0-rc.1",
		"v0.2.0-3-gabc1234-dirty": "0.2.0-3-gabc1234-dirty",
		"abc1234":                 "0.1.0-abc1234",
		"dev":                     "0.1.0-dev",
		"abc1234-dirty":           "0.1.0-abc1234-dirty",
		"v1.2":                    "0.1.0-1.2",
		"weird/build+x":           "0.1.0-weird-build-x",
	} {
		if got := ChartVersion(v, "0.1.0"); got != want || !semver.MatchString(got) {
			t.Errorf("ChartVersion(%q) = %q, want %q (SemVer)", v, got, want)
		}
	}
}

// TestReleaseChart: make release packs the Helm chart as Helm's chart
// archive, egwct-VERSION.tgz, with the release's version as the chart's
// version and appVersion, in checksums.txt, the same bytes on a second
// run; and Helm's library renders it with the release's image.
func TestReleaseChart(t *testing.T) {
	bin := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bin, "linux_amd64"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "linux_amd64", "egwct"), []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	release := func() string {
		dist := t.TempDir()
		c := config{Version: "v1.2.3", Bin: bin, Dist: dist, Root: filepath.Join("..", ".."), URL: "https://example.com/{{version}}",
			Platforms: []string{"linux/amd64"}, Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Chart: "deploy/helm/egwct"}
		if err := c.run(io.Discard); err != nil {
			t.Fatal(err)
		}
		return dist
	}
	dist := release()
	tgz, err := os.ReadFile(filepath.Join(dist, "egwct-1.2.3.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(dist, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(tgz)
	if want := hex.EncodeToString(sum[:]) + "  egwct-1.2.3.tgz\n"; !strings.HasPrefix(string(sums), want) {
		t.Errorf("checksums.txt does not start with %q:\n%s", want, sums)
	}
	again, err := os.ReadFile(filepath.Join(release(), "egwct-1.2.3.tgz"))
	if err != nil || !bytes.Equal(again, tgz) {
		t.Errorf("a second run packed other bytes (%v)", err)
	}

	gz, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		got[h.Name] = string(data)
	}
	for _, want := range []string{"egwct/Chart.yaml", "egwct/values.yaml", "egwct/values.schema.json", "egwct/templates/daemonset.yaml", "egwct/files/admission-policy/1.18.yaml"} {
		if _, ok := got[want]; !ok {
			t.Errorf("the chart archive has no %s", want)
		}
	}
	if c := got["egwct/Chart.yaml"]; !strings.Contains(c, "\nversion: 1.2.3\n") || !strings.Contains(c, "\nappVersion: 1.2.3\n") {
		t.Errorf("Chart.yaml in the archive:\n%s", c)
	}
	out := charttest.Render(t, "-n", "egwct-system", filepath.Join(dist, "egwct-1.2.3.tgz"))
	if !strings.Contains(out, `image: "ghcr.io/egwct/egwct:v1.2.3"`) {
		t.Errorf("the packed chart does not run the release's image:\n%s", out)
	}
}
