package ctmap

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/egwct/egwct/pkg/profiles"
)

// Create creates the map of spec with Cilium's layout and flags and pins
// it at its place under bpffs, as the agent would. It is for simulated
// nodes (egwct lab) and tests; egwct never creates Cilium's maps on a real
// node. maxEntries 0 means the spec's default.
func Create(bpffs string, spec profiles.MapSpec, maxEntries uint32) (*Map, error) {
	if maxEntries == 0 {
		maxEntries = spec.DefaultMaxEntries
	}
	name := spec.Name
	if len(name) > objNameLen {
		name = name[:objNameLen]
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       name,
		Type:       ebpf.MapType(spec.Type),
		KeySize:    spec.KeySize,
		ValueSize:  spec.ValueSize,
		MaxEntries: maxEntries,
		Flags:      spec.Flags[0],
	})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", spec.Name, err)
	}
	path := PinPath(bpffs, spec)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.Pin(path); err != nil {
		m.Close()
		return nil, fmt.Errorf("pin %s: %w", path, err)
	}
	return &Map{Map: m, Spec: spec, MaxEntries: maxEntries, Path: path}, nil
}
