package wire

// Position of a data packet in its message (PP bits, §2).
const (
	PosMiddle = 0
	PosLast   = 1
	PosFirst  = 2
	PosSolo   = 3
)

// MaxMsgNo is the largest 29-bit message number; numbering starts at 1.
const MaxMsgNo = 1<<29 - 1

// DataHeader is the header of a data packet.
type DataHeader struct {
	Seq       int32  // 31-bit packet sequence number
	Position  uint8  // PP bits: PosFirst, PosLast, PosSolo or PosMiddle
	InOrder   bool   // O bit
	MsgNo     uint32 // 29-bit message number
	Timestamp uint32 // microseconds since the sending socket opened
	DstID     uint32 // the receiver's socket ID
}

// ParseData decodes a data packet. payload aliases b.
func ParseData(b []byte) (h DataHeader, payload []byte, err error) {
	if len(b) < HeaderLen {
		return h, nil, ErrShort
	}
	w0 := be.Uint32(b[0:])
	if w0&0x80000000 != 0 {
		return h, nil, ErrMalformed
	}
	w1 := be.Uint32(b[4:])
	h.Seq = int32(w0)
	h.Position = uint8(w1 >> 30)
	h.InOrder = w1&(1<<29) != 0
	h.MsgNo = w1 & MaxMsgNo
	h.Timestamp = be.Uint32(b[8:])
	h.DstID = be.Uint32(b[12:])
	return h, b[HeaderLen:], nil
}

// PutDataHeader writes h into the first HeaderLen bytes of b, which must be
// at least that long.
func PutDataHeader(b []byte, h *DataHeader) {
	_ = b[HeaderLen-1]
	be.PutUint32(b[0:], uint32(h.Seq)&0x7FFFFFFF)
	w1 := uint32(h.Position&3)<<30 | h.MsgNo&MaxMsgNo
	if h.InOrder {
		w1 |= 1 << 29
	}
	be.PutUint32(b[4:], w1)
	be.PutUint32(b[8:], h.Timestamp)
	be.PutUint32(b[12:], h.DstID)
}

// AppendData appends a whole data packet to b.
func AppendData(b []byte, h *DataHeader, payload []byte) []byte {
	n := len(b)
	b = append(b, make([]byte, HeaderLen)...)
	PutDataHeader(b[n:], h)
	return append(b, payload...)
}
