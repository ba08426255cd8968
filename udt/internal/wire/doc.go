// Package wire encodes and decodes UDT4 packets exactly as libudt 4.11 puts
// them on the wire (shared/udt4-protocol.md §1–§4): a 16-byte header of
// big-endian words, then either raw data or a control body of big-endian
// words.
//
// The package is stateless: it knows nothing of connections, timers or
// sockets. Decoders never allocate and never retain the input; encoders
// append to a caller's buffer. Every parser has a fuzz target.
package wire

import (
	"encoding/binary"
	"errors"
)

// HeaderLen is the length of every UDT packet header.
const HeaderLen = 16

// ErrShort is returned when a packet or body is shorter than its type needs.
var ErrShort = errors.New("udt: packet too short")

// ErrMalformed is returned for a body whose contents break the format.
var ErrMalformed = errors.New("udt: malformed packet")

var be = binary.BigEndian

// IsControl reports whether b holds a control packet (first bit set). It
// returns false for anything shorter than a header.
func IsControl(b []byte) bool { return len(b) >= HeaderLen && b[0]&0x80 != 0 }

// DstID returns the destination socket ID of any packet (data or control),
// or 0 for a packet shorter than a header.
func DstID(b []byte) uint32 {
	if len(b) < HeaderLen {
		return 0
	}
	return be.Uint32(b[12:])
}
