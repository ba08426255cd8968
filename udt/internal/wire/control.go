package wire

import "fmt"

// Type is a control packet type (§3).
type Type uint16

// Control packet types of UDT4 as libudt 4.11 knows them.
const (
	TypeHandshake  Type = 0
	TypeKeepAlive  Type = 1
	TypeACK        Type = 2
	TypeNAK        Type = 3
	TypeCongestion Type = 4 // delay warning; never sent by 4.11
	TypeShutdown   Type = 5
	TypeACK2       Type = 6
	TypeDropReq    Type = 7 // message drop request
	TypePeerError  Type = 8
	TypeUser       Type = 0x7FFF
)

func (t Type) String() string {
	switch t {
	case TypeHandshake:
		return "handshake"
	case TypeKeepAlive:
		return "keep-alive"
	case TypeACK:
		return "ack"
	case TypeNAK:
		return "nak"
	case TypeCongestion:
		return "congestion-warning"
	case TypeShutdown:
		return "shutdown"
	case TypeACK2:
		return "ack2"
	case TypeDropReq:
		return "drop-request"
	case TypePeerError:
		return "peer-error"
	case TypeUser:
		return "user"
	}
	return fmt.Sprintf("type-%#x", uint16(t))
}

// ControlHeader is the header of a control packet.
type ControlHeader struct {
	Type      Type
	SubType   uint16 // only meaningful for TypeUser
	Info      uint32 // "additional info": ACK seq no for ACK/ACK2, message number for drop requests, error code for peer errors
	Timestamp uint32 // always 0 from libudt 4.11
	DstID     uint32 // 0 for connection requests
}

// ParseControl decodes a control packet's header; body aliases b.
func ParseControl(b []byte) (h ControlHeader, body []byte, err error) {
	if len(b) < HeaderLen {
		return h, nil, ErrShort
	}
	if b[0]&0x80 == 0 {
		return h, nil, ErrMalformed
	}
	h.Type = Type(be.Uint16(b[0:]) & 0x7FFF)
	h.SubType = be.Uint16(b[2:])
	h.Info = be.Uint32(b[4:])
	h.Timestamp = be.Uint32(b[8:])
	h.DstID = be.Uint32(b[12:])
	return h, b[HeaderLen:], nil
}

// AppendControlHeader appends a control header to b.
func AppendControlHeader(b []byte, h *ControlHeader) []byte {
	b = be.AppendUint16(b, 0x8000|uint16(h.Type&0x7FFF))
	b = be.AppendUint16(b, h.SubType)
	b = be.AppendUint32(b, h.Info)
	b = be.AppendUint32(b, h.Timestamp)
	return be.AppendUint32(b, h.DstID)
}

// AppendEmpty appends a whole control packet whose body is empty in UDT4
// (keep-alive, shutdown, ACK2, congestion warning, peer error). Like libudt
// it sends 4 zero bytes as the body; receivers accept 0 or 4.
func AppendEmpty(b []byte, typ Type, info, dst uint32) []byte {
	b = AppendControlHeader(b, &ControlHeader{Type: typ, Info: info, DstID: dst})
	return append(b, 0, 0, 0, 0)
}

// DropReq is the body of a message drop request (type 7).
type DropReq struct {
	First, Last int32
}

// Parse decodes a drop request body.
func (d *DropReq) Parse(body []byte) error {
	if len(body) < 8 {
		return ErrShort
	}
	d.First = int32(be.Uint32(body[0:]) & 0x7FFFFFFF)
	d.Last = int32(be.Uint32(body[4:]) & 0x7FFFFFFF)
	return nil
}

// Append appends the body.
func (d *DropReq) Append(b []byte) []byte {
	b = be.AppendUint32(b, uint32(d.First)&0x7FFFFFFF)
	return be.AppendUint32(b, uint32(d.Last)&0x7FFFFFFF)
}
