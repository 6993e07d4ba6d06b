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

// chunk is one batch of elements read from the kernel.
type chunk[K, V any] struct {
	keys  []K
	vals  []V
	count int
	err   error // nil, or the error that ended the walk (ErrKeyNotExist: done)
}

// batch reads the map in batches on one goroutine while fn consumes the
// previous batch on the caller's: the system calls and the caller's work
// (decoding, encoding) overlap. Two buffers circulate, so memory stays
// flat whatever the map's size.
func batch[K, V any](m *ebpf.Map, fn func(k, v []byte) error) error {
	full := make(chan *chunk[K, V], 1)
	free := make(chan *chunk[K, V], 2)
	for i := 0; i < 2; i++ {
		free <- &chunk[K, V]{keys: make([]K, BatchSize), vals: make([]V, BatchSize)}
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		var cursor ebpf.MapBatchCursor
		for {
			var c *chunk[K, V]
			select {
			case c = <-free:
			case <-stop:
				return
			}
			c.count, c.err = m.BatchLookup(&cursor, c.keys, c.vals, nil)
			for errors.Is(c.err, errNoSpace) && len(c.keys) < 1<<20 {
				// A hash bucket holds more elements than the buffer: grow.
				c.keys, c.vals = make([]K, 4*len(c.keys)), make([]V, 4*len(c.vals))
				c.count, c.err = m.BatchLookup(&cursor, c.keys, c.vals, nil)
			}
			select {
			case full <- c:
			case <-stop:
				return
			}
			if c.err != nil {
				return
			}
		}
	}()
	for c := range full {
		done := errors.Is(c.err, ebpf.ErrKeyNotExist)
		if c.err != nil && !done {
			return c.err
		}
		for i := 0; i < c.count; i++ {
			k := unsafe.Slice((*byte)(unsafe.Pointer(&c.keys[i])), unsafe.Sizeof(c.keys[i]))
			v := unsafe.Slice((*byte)(unsafe.Pointer(&c.vals[i])), unsafe.Sizeof(c.vals[i]))
			if err := fn(k, v); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
		free <- c
	}
	return nil
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
