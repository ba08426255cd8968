package wire

// ACK body lengths (§4.2): light, short, full.
const (
	ACKLightLen = 4
	ACKShortLen = 16
	ACKFullLen  = 24
)

// ACK is the body of an acknowledgement. Fields tells how many words were
// present: 1 (light ACK), 4 (no rates) or 6 (full).
type ACK struct {
	Ack      int32 // first sequence number not yet received
	RTT      int32 // microseconds
	RTTVar   int32 // microseconds
	Avail    int32 // free receive buffer, packets
	RecvRate int32 // packets per second, 0 = unknown
	Capacity int32 // estimated link capacity, packets per second
	Fields   int
}

// Parse decodes an ACK body: 4–15 bytes is a light ACK (Fields 1), 16–23
// bytes the first four words (Fields 4), 24 or more the rates too (Fields
// 6). libudt reads rates from any body over 16 bytes, so never send 20.
func (a *ACK) Parse(body []byte) error {
	if len(body) < ACKLightLen {
		return ErrShort
	}
	a.Ack = int32(be.Uint32(body[0:]) & 0x7FFFFFFF)
	a.RTT, a.RTTVar, a.Avail, a.RecvRate, a.Capacity = 0, 0, 0, 0, 0
	switch {
	case len(body) < ACKShortLen:
		a.Fields = 1
	case len(body) < ACKFullLen:
		a.Fields = 4
	default:
		a.Fields = 6
		a.RecvRate = int32(be.Uint32(body[16:]))
		a.Capacity = int32(be.Uint32(body[20:]))
	}
	if a.Fields >= 4 {
		a.RTT = int32(be.Uint32(body[4:]))
		a.RTTVar = int32(be.Uint32(body[8:]))
		a.Avail = int32(be.Uint32(body[12:]))
	}
	return nil
}

// Append appends the first a.Fields words (1, 4 or 6; anything else is
// taken as 6).
func (a *ACK) Append(b []byte) []byte {
	b = be.AppendUint32(b, uint32(a.Ack)&0x7FFFFFFF)
	if a.Fields == 1 {
		return b
	}
	b = be.AppendUint32(b, uint32(a.RTT))
	b = be.AppendUint32(b, uint32(a.RTTVar))
	b = be.AppendUint32(b, uint32(a.Avail))
	if a.Fields == 4 {
		return b
	}
	b = be.AppendUint32(b, uint32(a.RecvRate))
	return be.AppendUint32(b, uint32(a.Capacity))
}
