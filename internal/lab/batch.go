package lab

import (
	"errors"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/egwct/egwct/pkg/ctmap"
)

// putAll writes n elements whose keys and values are packed back to back,
// in one batch system call where the kernel has it.
func putAll(m *ctmap.Map, keys, vals []byte, n int) error {
	err := ebpf.ErrNotSupported
	switch [2]uint32{m.Spec.KeySize, m.Spec.ValueSize} {
	case [2]uint32{14, 56}:
		err = batchPut[[14]byte, [56]byte](m.Map, keys, vals, n)
	case [2]uint32{14, 40}:
		err = batchPut[[14]byte, [40]byte](m.Map, keys, vals, n)
	case [2]uint32{38, 56}: // IPv6 CT and SNAT maps
		err = batchPut[[38]byte, [56]byte](m.Map, keys, vals, n)
	}
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	ks, vs := int(m.Spec.KeySize), int(m.Spec.ValueSize)
	for i := 0; i < n; i++ {
		if err := m.Put(keys[i*ks:(i+1)*ks], vals[i*vs:(i+1)*vs]); err != nil {
			return err
		}
	}
	return nil
}

// batchPut views the packed buffers as slices of fixed-size elements,
// which is what batch operations take.
func batchPut[K, V any](m *ebpf.Map, keys, vals []byte, n int) error {
	ks := unsafe.Slice((*K)(unsafe.Pointer(unsafe.SliceData(keys))), n)
	vs := unsafe.Slice((*V)(unsafe.Pointer(unsafe.SliceData(vals))), n)
	_, err := m.BatchUpdate(ks, vs, nil)
	return err
}
