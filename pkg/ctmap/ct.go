package ctmap

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/egwct/egwct/pkg/profiles"
)

// CTEntrySize is the size of struct ct_entry in every supported version.
const CTEntrySize = 56

// Offsets in struct ct_entry that are the same in every version (§3).
const (
	offLifetime    = 32
	offFlags       = 36
	offRevNAT      = 38
	offTxFlagsSeen = 42
	offRxFlagsSeen = 43
	offSrcSecID    = 44
	offLastTx      = 48
	offLastRx      = 52
)

// ct_entry flag bits used to classify entries; the same in every version.
const (
	FlagRxClosing  uint16 = 1 << 0
	FlagTxClosing  uint16 = 1 << 1
	FlagSeenNonSyn uint16 = 1 << 4
)

// CTEntry is a CT map value. It keeps the 56 raw bytes; accessors decode
// the fields, setters change exactly the bytes of one field.
type CTEntry [CTEntrySize]byte

// DecodeCTEntry copies a 56-byte value.
func DecodeCTEntry(b []byte) (CTEntry, error) {
	if len(b) != CTEntrySize {
		return CTEntry{}, fmt.Errorf("ct_entry: %d bytes, want %d", len(b), CTEntrySize)
	}
	return CTEntry(b), nil
}

// Lifetime is the expiry in datapath clock units (seconds, or 256 jiffies).
func (e *CTEntry) Lifetime() uint32 { return binary.LittleEndian.Uint32(e[offLifetime:]) }

// SetLifetime changes the lifetime and nothing else.
func (e *CTEntry) SetLifetime(v uint32) { binary.LittleEndian.PutUint32(e[offLifetime:], v) }

// Flags is the u16 flags bitfield.
func (e *CTEntry) Flags() uint16 { return binary.LittleEndian.Uint16(e[offFlags:]) }

// SetFlags changes the flags bitfield and nothing else.
func (e *CTEntry) SetFlags(v uint16) { binary.LittleEndian.PutUint16(e[offFlags:], v) }

// RevNATIndex is rev_nat_index as the agent's Go mirror reads it.
func (e *CTEntry) RevNATIndex() uint16 { return binary.LittleEndian.Uint16(e[offRevNAT:]) }

// TxFlagsSeen is the OR of TCP flags seen in the egress direction.
func (e *CTEntry) TxFlagsSeen() uint8 { return e[offTxFlagsSeen] }

// RxFlagsSeen is the OR of TCP flags seen in the ingress direction.
func (e *CTEntry) RxFlagsSeen() uint8 { return e[offRxFlagsSeen] }

// SrcSecID is the source security identity.
func (e *CTEntry) SrcSecID() uint32 { return binary.LittleEndian.Uint32(e[offSrcSecID:]) }

// LastTxReport and LastRxReport are the monitor report times (clock units).
func (e *CTEntry) LastTxReport() uint32 { return binary.LittleEndian.Uint32(e[offLastTx:]) }

// LastRxReport see LastTxReport.
func (e *CTEntry) LastRxReport() uint32 { return binary.LittleEndian.Uint32(e[offLastRx:]) }

// Field reads a field of the profile's layout as an unsigned integer in
// host (little-endian) order, as the agent's Go mirror reads it.
func (e *CTEntry) Field(f profiles.Field) uint64 {
	b := e[f.Offset : f.Offset+f.Size]
	switch f.Size {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(b))
	case 4:
		return uint64(binary.LittleEndian.Uint32(b))
	case 8:
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// SetField writes a field of the profile's layout.
func (e *CTEntry) SetField(f profiles.Field, v uint64) {
	b := e[f.Offset : f.Offset+f.Size]
	switch f.Size {
	case 1:
		b[0] = uint8(v)
	case 2:
		binary.LittleEndian.PutUint16(b, uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(b, uint32(v))
	case 8:
		binary.LittleEndian.PutUint64(b, v)
	}
}

// CT is one element of a CT map.
type CT struct {
	Key   Tuple
	Value CTEntry
}

// Flow returns the connection as the user sees it, P:p → W:w: for the
// usual outbound entry the pod is at offset 0 with its port at offset 10.
// This is the orientation of `cilium-dbg bpf ct list`.
func (c *CT) Flow() (src, dst netip.AddrPort) {
	return netip.AddrPortFrom(c.Key.DAddr, c.Key.SPort), netip.AddrPortFrom(c.Key.SAddr, c.Key.DPort)
}

// Closing reports whether both closing bits are set.
func (c *CT) Closing() bool {
	f := c.Value.Flags()
	return f&FlagRxClosing != 0 && f&FlagTxClosing != 0
}

// State classifies the entry (cilium-datapath.md §5): non-TCP protocols;
// TCP with both closing bits; TCP that has seen only SYNs; established.
func (c *CT) State() profiles.State {
	switch {
	case c.Key.NextHdr != ProtoTCP:
		return profiles.StateNonTCP
	case c.Closing():
		return profiles.StateClosing
	case c.Value.Flags()&FlagSeenNonSyn == 0:
		return profiles.StateSyn
	}
	return profiles.StateEstablished
}
