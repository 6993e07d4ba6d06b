package sweep

import (
	"encoding/binary"
	"hash/fnv"
)

// Fingerprint identifies a policy set: its names, timeouts and keys in
// order. Two sets with the same fingerprint put the same judgement in
// force (but for a 64-bit hash collision).
func Fingerprint(set []Policy) uint64 {
	h := fnv.New64a()
	var b [4]byte
	for _, p := range set {
		h.Write([]byte(p.Name))
		h.Write([]byte{0})
		for _, t := range p.Timeouts {
			binary.LittleEndian.PutUint32(b[:], t)
			h.Write(b[:])
		}
		for _, k := range p.Keys {
			h.Write(k.Pod.AsSlice())
			h.Write(k.Dest.Addr().AsSlice())
			ex := byte(0)
			if k.Excluded {
				ex = 1
			}
			h.Write([]byte{byte(k.Dest.Bits()), ex})
		}
		h.Write([]byte{1})
	}
	return h.Sum64()
}
