package k8stest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAssetsDir(t *testing.T) {
	for _, tt := range []struct {
		name                  string
		assets, override, xdg string
		want                  string
	}{
		{"KUBEBUILDER_ASSETS wins", "/a", "/b", "/x", "/a"},
		{"then EGWCT_ENVTEST_DIR", "", "/b", "/x", "/b"},
		{"then the XDG cache", "", "", "/x", "/x/egwct/envtest/k8s-" + KubeVersion + "-etcd-" + EtcdVersion},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KUBEBUILDER_ASSETS", tt.assets)
			t.Setenv("EGWCT_ENVTEST_DIR", tt.override)
			t.Setenv("XDG_CACHE_HOME", tt.xdg)
			if got := AssetsDir(); got != tt.want {
				t.Errorf("AssetsDir() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestScriptVersions: hack/envtest.sh builds the versions, and into the
// folder, this package looks for.
func TestScriptVersions(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "hack", "envtest.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"KUBE_VERSION=" + KubeVersion + "\n", "ETCD_VERSION=" + EtcdVersion + "\n", "/egwct/envtest/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("hack/envtest.sh lacks %q", want)
		}
	}
	mod, err := os.ReadFile(filepath.Join("..", "..", "hack", "envtest-assets", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"k8s.io/kubernetes " + KubeVersion, "go.etcd.io/etcd/server/v3 " + EtcdVersion} {
		if !strings.Contains(string(mod), want) {
			t.Errorf("hack/envtest-assets/go.mod lacks %q", want)
		}
	}
}
