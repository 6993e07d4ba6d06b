package ctmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/egwct/egwct/pkg/profiles"
)

// DefaultBPFFS is where bpffs is mounted on a node.
const DefaultBPFFS = "/sys/fs/bpf"

// GlobalsDir is Cilium's pin directory under bpffs (TCGlobalsPath).
const GlobalsDir = "tc/globals"

// PinPath is where Cilium pins the map spec describes.
func PinPath(bpffs string, spec profiles.MapSpec) string {
	return filepath.Join(bpffs, GlobalsDir, spec.Name)
}

// Map is an opened pinned map whose shape matched its profile.
type Map struct {
	*ebpf.Map
	Spec profiles.MapSpec
	// MaxEntries is read from the map, never assumed.
	MaxEntries uint32
	Path       string
}

// MismatchError is returned when a pinned map's shape differs from the
// profile: egwct never touches such a map.
type MismatchError struct {
	Path     string
	Field    string
	Expected string
	Found    string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s: %s is %s, the profile expects %s; refusing to use this map", e.Path, e.Field, e.Found, e.Expected)
}

// ErrMapMissing wraps a pinned map that does not exist.
var ErrMapMissing = errors.New("map not pinned")

// objNameLen is BPF_OBJ_NAME_LEN - 1: the kernel keeps 15 characters of a
// map's name.
const objNameLen = 15

// Open opens the pinned map of spec under bpffs, read-only unless
// writable, and checks its name, type, key size and value size.
func Open(bpffs string, spec profiles.MapSpec, writable bool) (*Map, error) {
	path := PinPath(bpffs, spec)
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: !writable})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", path, ErrMapMissing)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	info, err := m.Info()
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: map info: %w", path, err)
	}
	if err := check(path, spec, info); err != nil {
		m.Close()
		return nil, err
	}
	return &Map{Map: m, Spec: spec, MaxEntries: info.MaxEntries, Path: path}, nil
}

func check(path string, spec profiles.MapSpec, info *ebpf.MapInfo) error {
	want := spec.Name
	if len(want) > objNameLen {
		want = want[:objNameLen]
	}
	switch {
	case info.Name != "" && info.Name != want:
		return &MismatchError{path, "name", fmt.Sprintf("%q", want), fmt.Sprintf("%q", info.Name)}
	case uint32(info.Type) != uint32(spec.Type):
		return &MismatchError{path, "type", spec.Type.String(), profiles.MapType(info.Type).String()}
	case info.KeySize != spec.KeySize:
		return &MismatchError{path, "key size", fmt.Sprint(spec.KeySize), fmt.Sprint(info.KeySize)}
	case info.ValueSize != spec.ValueSize:
		return &MismatchError{path, "value size", fmt.Sprint(spec.ValueSize), fmt.Sprint(info.ValueSize)}
	}
	return nil
}
