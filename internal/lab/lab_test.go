package lab

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

// fixedClock makes Up read the datapath clock as now, so that what a seed
// builds is byte for byte the same on every run.
func fixedClock(t *testing.T, now uint32) {
	t.Helper()
	old := clockNow
	clockNow = func(nodeconfig.Clock) (uint32, error) { return now, nil }
	t.Cleanup(func() { clockNow = old })
}

// digest hashes every element of a lab's maps (map by map, keys in order)
// and its manifests.
func digest(t *testing.T, st *State, stateDir string) string {
	t.Helper()
	res, err := profiles.Resolve(st.Version)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	names := slices.Clone(st.Maps)
	slices.Sort(names)
	for _, name := range names {
		var spec profiles.MapSpec
		for _, s := range res.Profile.Maps {
			if s.Name == name {
				spec = s
			}
		}
		if spec.Type == profiles.MapTypePerCPUArray {
			continue // the SNAT retry histograms: the lab leaves them empty
		}
		m, err := ctmap.Open(st.BPFFS, spec, false)
		if err != nil {
			t.Fatal(err)
		}
		var elems [][]byte
		err = m.Walk(func(k, v []byte) error {
			elems = append(elems, append(append([]byte(nil), k...), v...))
			return nil
		})
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(elems, bytes.Compare)
		fmt.Fprintf(h, "%s %d\n", name, len(elems))
		for _, e := range elems {
			h.Write(e)
		}
	}
	for _, f := range []string{PoliciesFile, EndpointsFile} {
		data, err := os.ReadFile(filepath.Join(stateDir, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(data)
	}
	return fmt.Sprintf("%x", h.Sum(nil))[:16]
}

// TestUpIsStable: a seed builds exactly the lab it built before. The
// digests of profiles before 1.18 were taken before labs became
// dual-stack and must never change (those labs stay IPv4-only), so that
// the numbers other tests and the benchmarks rely on stay put.
func TestUpIsStable(t *testing.T) {
	fixedClock(t, 5_000_000)
	for _, tc := range []struct {
		version         string
		clock           nodeconfig.Clock
		seed            uint64
		flows, policies int
		want            string
	}{
		{"1.14.16", nodeconfig.Clock{Mode: nodeconfig.Ktime}, 1, 2000, 8, "ca842454a80838bb"},
		{"1.15.5", nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: 250}, 1, 2000, 8, "5e97536a995f730f"},
		{"1.16.15", nodeconfig.Clock{Mode: nodeconfig.Ktime}, 7, 3000, 12, "fda6962086a0fa53"},
		{"1.17.8", nodeconfig.Clock{Mode: nodeconfig.Ktime}, 1, 2000, 8, "f3c95c5f9b9a8f4f"},
		{"1.17.8", nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: 1000}, 42, 1500, 20, "130d833dfcc6945d"},
		// Dual-stack labs (taken when they became dual-stack).
		{"1.18.3", nodeconfig.Clock{Mode: nodeconfig.Ktime}, 1, 2000, 8, "d37c1e05c353125c"},
		// 1.20 is what main was (1.20-dev) when this digest was taken.
		{"1.20.2", nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: 250}, 7, 2000, 12, "e82af101d3d1f40f"},
		// main as 1.21-dev: no cilium_egress_gw_policy_v4.
		{"main", nodeconfig.Clock{Mode: nodeconfig.Jiffies, HZ: 250}, 7, 2000, 12, "1e93e4c6298fc118"},
	} {
		t.Run(fmt.Sprintf("%s/%s/seed%d", tc.version, tc.clock.Mode, tc.seed), func(t *testing.T) {
			fs := testutil.PrivateBPFFS(t)
			res, err := profiles.Resolve(tc.version)
			if err != nil {
				t.Fatal(err)
			}
			state := filepath.Join(t.TempDir(), "state")
			sum, err := Up(Config{BPFFS: fs, StateDir: state, Version: res, Flows: tc.flows, Policies: tc.policies, Seed: tc.seed, Clock: tc.clock})
			if err != nil {
				t.Fatal(err)
			}
			got := digest(t, &sum.State, state)
			if err := Down(state, nil); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("digest %s, want %s", got, tc.want)
			}
		})
	}
}
