package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// semver is what Helm takes as a chart version (SemVer 2, without "v").
var semver = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// ChartVersion is the chart's version and appVersion in a release of
// egwct version v: v without its "v" ("v0.2.0-3-gabc1234" is
// "0.2.0-3-gabc1234", a pre-release); a version that is not SemVer (a
// bare commit, "dev") follows the chart's own version as a pre-release.
// The chart's default image tag, "v" and the appVersion, is then the tag
// make image gives the release's image.
func ChartVersion(v, chartVersion string) string {
	s := strings.TrimPrefix(v, "v")
	if semver.MatchString(s) {
		return s
	}
	base, _, _ := strings.Cut(chartVersion, "-")
	return base + "-" + regexp.MustCompile(`[^0-9A-Za-z.-]+`).ReplaceAllString(s, "-")
}

// packChart packs the Helm chart folder dir as Helm's chart archive
// (NAME-VERSION.tgz holding NAME/...), its version and appVersion set
// to the release's, and returns its name and contents.
func (c *config) packChart(dir string) (string, []byte, error) {
	chartYAML, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return "", nil, err
	}
	var name, version string
	lines := strings.Split(string(chartYAML), "\n")
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "name:"); ok {
			name = strings.Trim(strings.TrimSpace(v), `"`)
		}
		if v, ok := strings.CutPrefix(l, "version:"); ok {
			version = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	if name == "" || version == "" {
		return "", nil, fmt.Errorf("%s/Chart.yaml has no name or version", dir)
	}
	cv := ChartVersion(c.Version, version)
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "version:"):
			lines[i] = "version: " + cv
		case strings.HasPrefix(l, "appVersion:"):
			lines[i] = "appVersion: " + cv
		}
	}
	var files []file
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if rel == "Chart.yaml" {
			data = []byte(strings.Join(lines, "\n"))
		}
		files = append(files, file{Name: name + "/" + filepath.ToSlash(rel), Mode: 0o644, Data: data})
		return err
	})
	if err != nil {
		return "", nil, err
	}
	tgz, err := pack(files, c.Date)
	return fmt.Sprintf("%s-%s.tgz", name, cv), tgz, err
}
