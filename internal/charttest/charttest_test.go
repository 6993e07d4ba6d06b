package charttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPathIsChartSh: Path finds the renderer where hack/chart.sh puts it,
// so a test never uses a renderer built from other sources.
func TestPathIsChartSh(t *testing.T) {
	t.Setenv("EGWCT_CHART", "")
	t.Setenv("EGWCT_CACHE", t.TempDir())
	want, err := Path()
	if err != nil {
		t.Fatal(err)
	}
	// chart.sh --path builds when the file is missing: give it one.
	if err := os.MkdirAll(filepath.Dir(want), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(want, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "hack/chart.sh", "--path")
	cmd.Dir = Root()
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("hack/chart.sh --path = %s, Path() = %s", got, want)
	}
}
