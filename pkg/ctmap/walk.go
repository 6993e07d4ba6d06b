package ctmap

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
)

// BatchSize is the number of elements read per batch system call.
const BatchSize = 4096

// Walk calls fn for every element of the map. key and value are only valid
// during the call. Elements are read in batches (one system call per
// BatchSize elements) into buffers reused across batches, so memory does
// not grow with the map; where the kernel has no batch operations for the
// map type (LPM tries, old kernels) Walk iterates key by key.
//
// Like Cilium's own dumps, a walk of a map that changes meanwhile may miss
// or repeat elements that were inserted or deleted during the walk.
func (m *Map) Walk(fn func(key, value []byte) error) error {
	err := m.walkBatch(fn)
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, errNoBatchType) {
		return m.WalkIterate(fn)
	}
	return err
}

var errNoBatchType = errors.New("no batch buffer type for this key/value size")

// walkBatch dispatches on the sizes of the maps egwct reads: batch lookups
// need fixed-size element types.
func (m *Map) walkBatch(fn func(k, v []byte) error) error {
	switch [2]uint32{m.Spec.KeySize, m.Spec.ValueSize} {
	case [2]uint32{14, 56}:
		return batch[[14]byte, [56]byte](m.Map, fn)
	case [2]uint32{38, 56}:
		return batch[[38]byte, [56]byte](m.Map, fn)
	case [2]uint32{14, 40}:
		return batch[[14]byte, [40]byte](m.Map, fn)
	}
	return errNoBatchType
}

func batch[K, V any](m *ebpf.Map, fn func(k, v []byte) error) error {
	n := BatchSize
	keys, vals := make([]K, n), make([]V, n)
	var cursor ebpf.MapBatchCursor
	for {
		count, err := m.BatchLookup(&cursor, keys, vals, nil)
		done := errors.Is(err, ebpf.ErrKeyNotExist)
		if err != nil && !done {
			if errors.Is(err, errNoSpace) && n < 1<<20 {
				// A hash bucket holds more elements than the buffer: grow.
				n *= 4
				keys, vals = make([]K, n), make([]V, n)
				continue
			}
			return err
		}
		for i := 0; i < count; i++ {
			k := unsafe.Slice((*byte)(unsafe.Pointer(&keys[i])), unsafe.Sizeof(keys[i]))
			v := unsafe.Slice((*byte)(unsafe.Pointer(&vals[i])), unsafe.Sizeof(vals[i]))
			if err := fn(k, v); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}

// WalkIterate walks the map key by key with the kernel's get-next-key and
// lookup, two system calls per element. Walk uses it where batches are not
// available.
func (m *Map) WalkIterate(fn func(key, value []byte) error) error {
	key := make([]byte, m.Spec.KeySize)
	val := make([]byte, m.Spec.ValueSize)
	it := m.Iterate()
	for it.Next(&key, &val) {
		if err := fn(key, val); err != nil {
			return err
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%s: %w", m.Path, err)
	}
	return nil
}
