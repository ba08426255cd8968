package wire

// HandshakeLen is the length of a handshake body; a listener ignores any
// other length, a connecting socket accepts longer ones.
const HandshakeLen = 48

// Socket types (4.11: STREAM = 1, DGRAM = 2; the draft is wrong).
const (
	SockStream = 1
	SockDgram  = 2
)

// Connection request types carried in a handshake (§4.1).
const (
	ReqRegular    = 1    // client's request, and the listener's cookie answer
	ReqRendezvous = 0    // rendezvous request
	ReqResponse   = -1   // response; rendezvous "I have heard you"
	ReqAgreement  = -2   // rendezvous reply from an already-connected socket
	ReqRejected   = 1002 // refused by the listener
)

// Handshake is the body of a handshake control packet.
type Handshake struct {
	Version    int32
	SockType   int32
	ISN        int32
	MSS        int32
	FlightFlag int32 // max packets in flight the sender of this handshake accepts
	ReqType    int32
	SocketID   int32
	Cookie     int32
	PeerIP     [16]byte // libudt's host-endian copy of an address: informative only
}

// Parse decodes a handshake body of at least HandshakeLen bytes.
func (h *Handshake) Parse(body []byte) error {
	if len(body) < HandshakeLen {
		return ErrShort
	}
	h.Version = int32(be.Uint32(body[0:]))
	h.SockType = int32(be.Uint32(body[4:]))
	h.ISN = int32(be.Uint32(body[8:]))
	h.MSS = int32(be.Uint32(body[12:]))
	h.FlightFlag = int32(be.Uint32(body[16:]))
	h.ReqType = int32(be.Uint32(body[20:]))
	h.SocketID = int32(be.Uint32(body[24:]))
	h.Cookie = int32(be.Uint32(body[28:]))
	copy(h.PeerIP[:], body[32:48])
	return nil
}

// Append appends the 48-byte body.
func (h *Handshake) Append(b []byte) []byte {
	b = be.AppendUint32(b, uint32(h.Version))
	b = be.AppendUint32(b, uint32(h.SockType))
	b = be.AppendUint32(b, uint32(h.ISN))
	b = be.AppendUint32(b, uint32(h.MSS))
	b = be.AppendUint32(b, uint32(h.FlightFlag))
	b = be.AppendUint32(b, uint32(h.ReqType))
	b = be.AppendUint32(b, uint32(h.SocketID))
	b = be.AppendUint32(b, uint32(h.Cookie))
	return append(b, h.PeerIP[:]...)
}

// SetPeerIPv4 fills PeerIP the way libudt on a little-endian host does:
// the address a.b.c.d appears on the wire as d c b a followed by zeros.
func (h *Handshake) SetPeerIPv4(ip [4]byte) {
	h.PeerIP = [16]byte{ip[3], ip[2], ip[1], ip[0]}
}
