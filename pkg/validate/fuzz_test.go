package validate

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/policy"
)

// FuzzValidate runs whole manifests through validation against a jiffies
// node: no panic, and every finding names a known rule.
func FuzzValidate(f *testing.F) {
	files, _ := filepath.Glob("../../examples/*/*.yaml")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(manifest("bpfCtTimeoutRegularTcpSyn: 90s\nbpfCtTimeoutRegularTcp: 1m\nx: 1\nbpfCtTimeoutRegularAny: 0.1s")))
	known := map[string]bool{}
	for _, r := range Rules {
		known[r.ID] = true
	}
	node := &nodeconfig.Config{ClockKnown: true, Clock: nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: 300}}
	f.Fuzz(func(t *testing.T, data []byte) {
		v := validator(t, "1.18.3", node)
		_ = policy.NewSource("fuzz.yaml", data).Each(func(p *policy.Policy) {
			res := v.Policy(p)
			for _, fd := range res.Findings {
				if !known[fd.Rule] || fd.Message == "" {
					t.Fatalf("finding %+v", fd)
				}
			}
			for s, d := range res.Timeouts {
				if d < 1e9 || d > v.NodeTimeout(s) {
					t.Fatalf("timeout %v for %s outside 1s..node", d, s)
				}
			}
		}, nil)
	})
}
