package nodeconfig

import (
	"os"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, name := range []string{"../../examples/node/agent-runtime-config.json", "../../examples/node/cilium-config.yaml"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"ClockSource": 1, "KernelHz": 1, "CTMapEntriesTimeoutTCP": 1}`))
	f.Add([]byte("kind: List\nitems: [{kind: ConfigMap, data: {bpf-ct-timeout-regular-tcp: '5'}}]"))
	f.Add([]byte(`{"ClockSource": 0, "NodePortMin": 30000, "NodePortMax": 32767}`))
	f.Add([]byte("kind: ConfigMap\ndata: {node-port-range: '30000,32767'}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz", data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for flag, d := range c.Timeouts {
			if d <= 0 {
				t.Fatalf("%s = %v", flag, d)
			}
		}
		if c.ClockKnown && c.Clock.Mode == Jiffies && c.Clock.HZ <= 0 {
			t.Fatalf("clock %+v", c.Clock)
		}
		if n, _ := c.PortCapacity(1); n < 1 || n > 65535 {
			t.Fatalf("port capacity %d (NodePortMax %d)", n, c.NodePortMax)
		}
	})
}
