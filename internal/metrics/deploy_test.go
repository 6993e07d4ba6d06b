package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDeployUsesThePort: the DaemonSet of deploy/egwct.yaml serves on
// DefaultPort, announces it to Prometheus, and probes the two health
// paths of Handler, which exist.
func TestDeployUsesThePort(t *testing.T) {
	if !strings.HasSuffix(DefaultAddr, ":"+strconv.Itoa(DefaultPort)) || !strings.HasPrefix(DefaultAddr, "127.0.0.1:") {
		t.Errorf("DefaultAddr %q is not the loopback address with DefaultPort %d", DefaultAddr, DefaultPort)
	}
	f, err := os.Open(filepath.Join("..", "..", "deploy", "egwct.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type probe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
	var ds struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Template struct {
				Metadata struct {
					Annotations map[string]string `yaml:"annotations"`
				} `yaml:"metadata"`
				Spec struct {
					Containers []struct {
						Args  []string `yaml:"args"`
						Ports []struct {
							Name          string `yaml:"name"`
							ContainerPort int    `yaml:"containerPort"`
						} `yaml:"ports"`
						LivenessProbe  probe `yaml:"livenessProbe"`
						ReadinessProbe probe `yaml:"readinessProbe"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	dec := yaml.NewDecoder(f)
	for {
		if err := dec.Decode(&ds); errors.Is(err, io.EOF) {
			t.Fatal("no DaemonSet in deploy/egwct.yaml")
		} else if err != nil {
			t.Fatal(err)
		}
		if ds.Kind == "DaemonSet" {
			break
		}
	}
	tpl := ds.Spec.Template
	port := strconv.Itoa(DefaultPort)
	if got := tpl.Metadata.Annotations["prometheus.io/port"]; got != port {
		t.Errorf("prometheus.io/port %q, want %s", got, port)
	}
	if len(tpl.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(tpl.Spec.Containers))
	}
	c := tpl.Spec.Containers[0]
	if !slices.Contains(c.Args, "--metrics-addr=:"+port) {
		t.Errorf("args %q lack --metrics-addr=:%s", c.Args, port)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != DefaultPort || c.Ports[0].Name != "metrics" {
		t.Errorf("ports %+v, want metrics: %d", c.Ports, DefaultPort)
	}
	m := newMetrics(t, Options{})
	if err := m.Sweep(nil, result(0), at); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		what string
		p    probe
		want string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.p.HTTPGet.Path != p.want || p.p.HTTPGet.Port != "metrics" {
			t.Errorf("%s probe %+v, want %s on the metrics port", p.what, p.p.HTTPGet, p.want)
		}
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p.p.HTTPGet.Path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s probe %s: %d", p.what, p.p.HTTPGet.Path, rec.Code)
		}
	}
}
