package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/egwct/egwct/internal/bpffs"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
)

// State is what a lab records in <state-dir>/lab.json, so that drive and
// down know what up built.
type State struct {
	Version  string   `json:"version"`
	Profile  string   `json:"profile"`
	BPFFS    string   `json:"bpffs"`
	Mounted  bool     `json:"mounted"`
	Clock    string   `json:"clock"`
	HZ       int      `json:"hz,omitempty"`
	Seed     uint64   `json:"seed"`
	Flows    int      `json:"flows"`
	Policies int      `json:"policies"`
	CTMax    uint32   `json:"ctMax"`
	CTAnyMax uint32   `json:"ctAnyMax"`
	NATMax   uint32   `json:"natMax"`
	Maps     []string `json:"maps"`
	IPv6     bool     `json:"ipv6,omitempty"` // a dual-stack lab (see DualStack)
}

// Files of a lab's state directory.
const (
	StateFile         = "lab.json"
	RuntimeConfigFile = "agent-runtime-config.json"
	PoliciesFile      = "manifests/policies.yaml"
	EndpointsFile     = "manifests/endpoints.yaml"
)

// LoadState reads lab.json.
func LoadState(stateDir string) (*State, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, StateFile))
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(stateDir, StateFile), err)
	}
	return &st, nil
}

func saveState(stateDir string, st *State) error {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(st, "", "  ")
	return os.WriteFile(filepath.Join(stateDir, StateFile), append(data, '\n'), 0o644)
}

func writeState(cfg Config, st *State, w *world, timeouts map[profiles.State]time.Duration) error {
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "manifests"), 0o755); err != nil {
		return err
	}
	if err := saveState(cfg.StateDir, st); err != nil {
		return err
	}
	// The agent's dump of its configuration, with the fields egwct reads.
	rc := map[string]any{
		"ClockSource":             map[bool]int{false: 0, true: 1}[cfg.Clock.Mode.String() == "jiffies"],
		"KernelHz":                cfg.Clock.HZ,
		"CTMapEntriesGlobalTCP":   st.CTMax,
		"CTMapEntriesGlobalAny":   st.CTAnyMax,
		"NATMapEntriesGlobal":     st.NATMax,
		"EnableIPv4EgressGateway": true,
		"ConntrackGCInterval":     0,
		"ConntrackGCMaxInterval":  0,
	}
	if st.IPv6 {
		rc["EnableIPv6"] = true
	}
	fields := map[string]string{
		"bpf-ct-timeout-regular-tcp-syn": "CTMapEntriesTimeoutSYN", "bpf-ct-timeout-regular-tcp": "CTMapEntriesTimeoutTCP",
		"bpf-ct-timeout-regular-tcp-fin": "CTMapEntriesTimeoutFIN", "bpf-ct-timeout-regular-any": "CTMapEntriesTimeoutAny",
	}
	p := cfg.Version.Profile
	for _, prm := range p.Parameters {
		rc[fields[prm.Flag]] = int64(timeouts[prm.State])
	}
	for _, t := range p.ServiceTimers {
		name := map[string]string{"bpf-ct-timeout-service-tcp": "CTMapEntriesTimeoutSVCTCP",
			"bpf-ct-timeout-service-tcp-grace": "CTMapEntriesTimeoutSVCTCPGrace", "bpf-ct-timeout-service-any": "CTMapEntriesTimeoutSVCAny"}[t.Flag]
		rc[name] = int64(t.Default)
	}
	data, _ := json.MarshalIndent(rc, "", "  ")
	if err := os.WriteFile(filepath.Join(cfg.StateDir, RuntimeConfigFile), append(data, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.StateDir, PoliciesFile), policiesYAML(w), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cfg.StateDir, EndpointsFile), endpointsYAML(w), 0o644)
}

// policiesYAML prints the policies as `kubectl get cegp -o yaml` would.
func policiesYAML(w *world) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n")
	for _, p := range w.policies {
		fmt.Fprintf(&b, "- apiVersion: %s\n  kind: %s\n  metadata:\n", policy.APIVersion, policy.Kind)
		if p.Timeouts != "" {
			fmt.Fprintf(&b, "    annotations:\n      %s: |\n", policy.Annotation)
			for _, l := range strings.Split(strings.TrimSuffix(p.Timeouts, "\n"), "\n") {
				fmt.Fprintf(&b, "        %s\n", l)
			}
		}
		fmt.Fprintf(&b, "    generation: 1\n    name: %s\n  spec:\n    destinationCIDRs:\n", p.Name)
		for _, d := range slices.Concat(p.Dests, p.Dests6) {
			fmt.Fprintf(&b, "    - %s\n", d)
		}
		fmt.Fprintf(&b, "    egressGateway:\n      egressIP: %s\n      nodeSelector:\n        matchLabels:\n          egress-gateway: \"true\"\n", p.EgressIP)
		if len(p.Excluded)+len(p.Excluded6) > 0 {
			b.WriteString("    excludedCIDRs:\n")
			for _, d := range slices.Concat(p.Excluded, p.Excluded6) {
				fmt.Fprintf(&b, "    - %s\n", d)
			}
		}
		fmt.Fprintf(&b, "    selectors:\n    - podSelector:\n        matchLabels:\n          app: %s\n          io.kubernetes.pod.namespace: %s\n", p.App, p.Namespace)
	}
	return []byte(b.String())
}

// endpointsYAML prints the CiliumEndpoints of the selected pods as
// `kubectl get cep -A -o yaml` would; on a dual-stack lab each address
// pair has the pod's IPv6 address beside its IPv4 one.
func endpointsYAML(w *world) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n")
	id := 100
	for _, p := range w.policies {
		for i, pod := range p.Pods {
			id++
			name := fmt.Sprintf("%s-%d", p.App, i)
			fmt.Fprintf(&b, `- apiVersion: cilium.io/v2
  kind: CiliumEndpoint
  metadata:
    labels:
      app: %[1]s
    name: %[2]s
    namespace: %[3]s
    uid: 00000000-0000-4000-8000-%012[4]d
  status:
    id: %[4]d
    identity:
      id: %[5]d
      labels:
      - k8s:app=%[1]s
      - k8s:io.kubernetes.pod.namespace=%[3]s
    networking:
      addressing:
      - ipv4: %[6]s
%[8]s      node: 10.0.0.%[7]d
    state: ready
`, p.App, name, p.Namespace, id, p.Identity, pod, 11+id%3, ipv6Line(p, i))
		}
	}
	return []byte(b.String())
}

// ipv6Line is the ipv6 field of the i-th pod's address pair, if it has one.
func ipv6Line(p Policy, i int) string {
	if i >= len(p.Pods6) {
		return ""
	}
	return fmt.Sprintf("        ipv6: %s\n", p.Pods6[i])
}

// Down removes what a lab built: the pins it created (nothing else), the
// bpffs if it mounted one, and its state directory. st may be nil: it is
// then read from the state directory.
func Down(stateDir string, st *State) error {
	if st == nil {
		var err error
		if st, err = LoadState(stateDir); err != nil {
			return fmt.Errorf("no lab here: %w", err)
		}
	}
	var errs []error
	names := append([]string(nil), st.Maps...)
	sort.Strings(names)
	for _, name := range names {
		path := ctmap.PinPath(st.BPFFS, profiles.MapSpec{Name: name})
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// Remove tc/globals and tc only if the lab left them empty.
	_ = os.Remove(filepath.Join(st.BPFFS, ctmap.GlobalsDir))
	_ = os.Remove(filepath.Dir(filepath.Join(st.BPFFS, ctmap.GlobalsDir)))
	if st.Mounted {
		if err := bpffs.Unmount(st.BPFFS); err != nil {
			errs = append(errs, err)
		}
	}
	// Only the files the lab wrote, then the folders if that left them
	// empty: the state directory may be shared.
	for _, f := range []string{StateFile, RuntimeConfigFile, PoliciesFile, EndpointsFile, "manifests", ""} {
		if err := os.Remove(filepath.Join(stateDir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) && f != "" {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
