package metrics

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestTopPorts(t *testing.T) {
	a := netip.MustParseAddr
	use := func(egress, dst string, port uint16, proto uint8, used int) PortUse {
		return PortUse{Egress: a(egress), Dst: a(dst), DstPort: port, Proto: proto, Used: used}
	}
	for _, tc := range []struct {
		name    string
		in      []PortUse
		n       int
		want    []PortUse
		wantErr string
	}{
		{"empty", nil, 30, []PortUse{}, ""},
		{"most first", []PortUse{use("10.0.0.1", "1.1.1.1", 53, 17, 5), use("10.0.0.1", "1.1.1.2", 443, 6, 500)}, 30,
			[]PortUse{use("10.0.0.1", "1.1.1.2", 443, 6, 500), use("10.0.0.1", "1.1.1.1", 53, 17, 5)}, ""},
		{"capped", []PortUse{use("10.0.0.1", "1.1.1.1", 1, 6, 1), use("10.0.0.1", "1.1.1.1", 2, 6, 3), use("10.0.0.1", "1.1.1.1", 3, 6, 2)}, 2,
			[]PortUse{use("10.0.0.1", "1.1.1.1", 2, 6, 3), use("10.0.0.1", "1.1.1.1", 3, 6, 2)}, ""},
		{"ties in a fixed order", []PortUse{use("10.0.0.2", "1.1.1.1", 1, 6, 7), use("10.0.0.1", "1.1.1.2", 1, 6, 7), use("10.0.0.1", "1.1.1.1", 1, 17, 7), use("10.0.0.1", "1.1.1.1", 1, 6, 7)}, 30,
			[]PortUse{use("10.0.0.1", "1.1.1.1", 1, 6, 7), use("10.0.0.1", "1.1.1.1", 1, 17, 7), use("10.0.0.1", "1.1.1.2", 1, 6, 7), use("10.0.0.2", "1.1.1.1", 1, 6, 7)}, ""},
		{"same tuple merged", []PortUse{use("10.0.0.1", "1.1.1.1", 80, 6, 2), use("10.0.0.1", "1.1.1.1", 80, 6, 3)}, 30,
			[]PortUse{use("10.0.0.1", "1.1.1.1", 80, 6, 5)}, ""},
		{"no egress", []PortUse{{Dst: a("1.1.1.1"), Used: 1}}, 30, nil, "port use 0: no egress IP"},
		{"no destination", []PortUse{use("10.0.0.1", "1.1.1.1", 1, 6, 1), {Egress: a("10.0.0.1"), Used: 1}}, 30, nil, "port use 1: no destination IP"},
		{"negative", []PortUse{use("10.0.0.1", "1.1.1.1", 1, 6, -1)}, 30, nil, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := topPorts(tc.in, tc.n)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestPortsReplaced: each update replaces the series; a refused update
// keeps the previous ones; the default cap is DefaultTopPorts.
func TestPortsReplaced(t *testing.T) {
	m := newMetrics(t, Options{})
	many := make([]PortUse, 40)
	for i := range many {
		many[i] = PortUse{Egress: netip.MustParseAddr("192.0.2.1"), Dst: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), DstPort: 443, Proto: 6, Used: 100 + i}
	}
	dsts := func() []string {
		_, fams := scrape(t, m)
		return labelsOf(fams, "egwct_snat_ports_in_use", "dst_ip")
	}
	if err := m.Ports(many); err != nil {
		t.Fatal(err)
	}
	if got := dsts(); len(got) != DefaultTopPorts || !slices.Contains(got, "198.51.100.39") || slices.Contains(got, "198.51.100.9") {
		t.Errorf("top %d of 40: %v", DefaultTopPorts, got)
	}
	if err := m.Ports(many[:1]); err != nil {
		t.Fatal(err)
	}
	if got := dsts(); !slices.Equal(got, []string{"198.51.100.0"}) {
		t.Errorf("after replacing: %v", got)
	}
	if err := m.Ports([]PortUse{{Used: 1}}); err == nil {
		t.Error("no error for a port use without addresses")
	}
	if got := dsts(); !slices.Equal(got, []string{"198.51.100.0"}) {
		t.Errorf("after a refused update: %v", got)
	}
	if err := m.Ports(nil); err != nil {
		t.Fatal(err)
	}
	if got := dsts(); len(got) != 0 {
		t.Errorf("after an empty update: %v", got)
	}
}

// TestSetPortCapacity: egwct_snat_port_capacity is the option's, then the
// node's once the agent sets it; a capacity of 0 or less is the default.
func TestSetPortCapacity(t *testing.T) {
	m := newMetrics(t, Options{PortCapacity: 1000})
	capacity := func() float64 {
		_, fams := scrape(t, m)
		return fams["egwct_snat_port_capacity"].GetMetric()[0].GetGauge().GetValue()
	}
	for _, c := range []struct {
		set  int // 0: not called
		want float64
	}{{0, 1000}, {25535, 25535}, {-1, DefaultPortCapacity}} {
		if c.set != 0 {
			m.SetPortCapacity(c.set)
		}
		if got := capacity(); got != c.want {
			t.Errorf("after SetPortCapacity(%d): %v, want %v", c.set, got, c.want)
		}
	}
}
