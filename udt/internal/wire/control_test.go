package wire

import (
	"bytes"
	"errors"
	"testing"
)

// Empty control packets as libudt sends them: header plus 4 zero bytes
// (§3 notes, §13 item 9).
var (
	goldenKeepAlive = mustHex(`
		80010000 // control; type 1 (keep-alive); reserved 0
		00000000 // additional info 0
		00000000 // timestamp: always 0 from 4.11
		32f18e2c // dst socket ID 854691372
		00000000 // 4-byte zero body
	`)
	goldenShutdown = mustHex(`
		80050000 // control; type 5 (shutdown); reserved 0
		00000000 // additional info 0
		00000000 // timestamp 0
		0ff689ec // dst socket ID 267815404
		00000000 // 4-byte zero body
	`)
	goldenACK2 = mustHex(`
		80060000 // control; type 6 (ACK2); reserved 0
		00000001 // additional info: the ACK sequence number being acknowledged
		00000000 // timestamp 0
		0ff689ec // dst socket ID 267815404
		00000000 // 4-byte zero body
	`)
	goldenPeerError = mustHex(`
		80080000 // control; type 8 (peer error); reserved 0
		00000fa0 // additional info: error code 4000
		00000000 // timestamp 0
		0ff689ec // dst socket ID 267815404
		00000000 // 4-byte zero body
	`)
	goldenUser = mustHex(`
		ffff0102 // control; type 0x7FFF (user defined); sub-type 0x0102
		0a0b0c0d // additional info
		00000000 // timestamp 0
		0ff689ec // dst socket ID 267815404
		cafe     // opaque body, any length
	`)
	// A message drop request (§4.4). 4.11 sends last = first + length, one
	// too many; the codec carries whatever it is given.
	goldenDropReq = mustHex(`
		80070000 // control; type 7 (message drop request); reserved 0
		00000007 // additional info: message number 7
		00000000 // timestamp 0
		32f18e2c // dst socket ID 854691372
		00000064 // first sequence number 100
		0000006f // last sequence number 111
	`)
)

func TestTypeString(t *testing.T) {
	tests := []struct {
		typ  Type
		want string
	}{
		{TypeHandshake, "handshake"},
		{TypeKeepAlive, "keep-alive"},
		{TypeACK, "ack"},
		{TypeNAK, "nak"},
		{TypeCongestion, "congestion-warning"},
		{TypeShutdown, "shutdown"},
		{TypeACK2, "ack2"},
		{TypeDropReq, "drop-request"},
		{TypePeerError, "peer-error"},
		{TypeUser, "user"},
		{9, "type-0x9"},
		{0x100, "type-0x100"},
		{0x7FFE, "type-0x7ffe"},
	}
	for _, tt := range tests {
		if got := tt.typ.String(); got != tt.want {
			t.Errorf("Type(%d).String() = %q, want %q", uint16(tt.typ), got, tt.want)
		}
	}
}

// TestTypeValues pins the numeric values of §3: they are the wire format.
func TestTypeValues(t *testing.T) {
	got := []Type{TypeHandshake, TypeKeepAlive, TypeACK, TypeNAK, TypeCongestion, TypeShutdown, TypeACK2, TypeDropReq, TypePeerError, TypeUser}
	want := []Type{0, 1, 2, 3, 4, 5, 6, 7, 8, 0x7FFF}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%v = %d, want %d", got[i], uint16(got[i]), uint16(want[i]))
		}
	}
}

func TestParseControlGolden(t *testing.T) {
	tests := []struct {
		name string
		pkt  []byte
		h    ControlHeader
		body []byte
	}{
		{"keep-alive", goldenKeepAlive, ControlHeader{Type: TypeKeepAlive, DstID: 854691372}, []byte{0, 0, 0, 0}},
		{"keep-alive 16-byte form", goldenKeepAlive[:HeaderLen], ControlHeader{Type: TypeKeepAlive, DstID: 854691372}, []byte{}},
		{"shutdown", goldenShutdown, ControlHeader{Type: TypeShutdown, DstID: 267815404}, []byte{0, 0, 0, 0}},
		{"shutdown 16-byte form", goldenShutdown[:HeaderLen], ControlHeader{Type: TypeShutdown, DstID: 267815404}, []byte{}},
		{"ack2", goldenACK2, ControlHeader{Type: TypeACK2, Info: 1, DstID: 267815404}, []byte{0, 0, 0, 0}},
		{"peer error", goldenPeerError, ControlHeader{Type: TypePeerError, Info: 4000, DstID: 267815404}, []byte{0, 0, 0, 0}},
		{"user", goldenUser, ControlHeader{Type: TypeUser, SubType: 0x0102, Info: 0x0a0b0c0d, DstID: 267815404}, []byte{0xca, 0xfe}},
		{"drop request", goldenDropReq, ControlHeader{Type: TypeDropReq, Info: 7, DstID: 854691372}, goldenDropReq[HeaderLen:]},
		{"handshake", goldenHandshakeRequest, ControlHeader{Type: TypeHandshake}, goldenHandshakeRequest[HeaderLen:]},
		{"ack", goldenACKFull, ControlHeader{Type: TypeACK, Info: 1, DstID: 854691372}, goldenACKFull[HeaderLen:]},
		{"nak", goldenNAK, ControlHeader{Type: TypeNAK, DstID: 854691372}, goldenNAK[HeaderLen:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, body, err := ParseControl(tt.pkt)
			if err != nil {
				t.Fatal(err)
			}
			if h != tt.h {
				t.Errorf("header = %+v, want %+v", h, tt.h)
			}
			if !bytes.Equal(body, tt.body) {
				t.Errorf("body = %x, want %x", body, tt.body)
			}
			if got := AppendControlHeader(nil, &h); !bytes.Equal(got, tt.pkt[:HeaderLen]) {
				t.Errorf("AppendControlHeader = %x, want %x", got, tt.pkt[:HeaderLen])
			}
		})
	}
}

func TestAppendEmptyGolden(t *testing.T) {
	tests := []struct {
		typ       Type
		info, dst uint32
		want      []byte
	}{
		{TypeKeepAlive, 0, 854691372, goldenKeepAlive},
		{TypeShutdown, 0, 267815404, goldenShutdown},
		{TypeACK2, 1, 267815404, goldenACK2},
		{TypePeerError, 4000, 267815404, goldenPeerError},
	}
	for _, tt := range tests {
		got := AppendEmpty([]byte{0xaa}, tt.typ, tt.info, tt.dst)
		if got[0] != 0xaa || !bytes.Equal(got[1:], tt.want) {
			t.Errorf("AppendEmpty(%v) =\n%x\nwant\n%x", tt.typ, got[1:], tt.want)
		}
		if len(got[1:]) != 20 {
			t.Errorf("AppendEmpty(%v): %d bytes, want 20", tt.typ, len(got[1:]))
		}
	}
}

func TestControlBigEndian(t *testing.T) {
	h := ControlHeader{Type: 0x0102, SubType: 0x0304, Info: 0x05060708, Timestamp: 0x090a0b0c, DstID: 0x0d0e0f10}
	want := mustHex(`
		8102 // control bit | type 0x0102
		0304 // sub-type
		05060708 // additional info
		090a0b0c // timestamp
		0d0e0f10 // dst socket ID
	`)
	if got := AppendControlHeader(nil, &h); !bytes.Equal(got, want) {
		t.Errorf("got %x, want %x", got, want)
	}
}

func TestControlRoundTrip(t *testing.T) {
	headers := []ControlHeader{
		{},
		{Type: TypeACK, Info: 0x7FFFFFFF, DstID: 1},
		{Type: TypeUser, SubType: 0xFFFF, Info: 0xFFFFFFFF, Timestamp: 0xFFFFFFFF, DstID: 0xFFFFFFFF},
		{Type: 0x1234, SubType: 1},
	}
	for _, h := range headers {
		b := AppendControlHeader(nil, &h)
		b = append(b, 1, 2, 3)
		if len(b) != HeaderLen+3 {
			t.Fatalf("header length %d", len(b)-3)
		}
		got, body, err := ParseControl(b)
		if err != nil {
			t.Fatal(err)
		}
		if got != h || !bytes.Equal(body, []byte{1, 2, 3}) {
			t.Errorf("round trip %+v: got %+v body %x", h, got, body)
		}
	}
}

// TestAppendControlHeaderMasksType checks that a type with bit 15 set cannot
// clear the control flag or be mistaken for it.
func TestAppendControlHeaderMasksType(t *testing.T) {
	b := AppendControlHeader(nil, &ControlHeader{Type: 0x8001})
	if !bytes.Equal(b[:2], []byte{0x80, 0x01}) {
		t.Errorf("word 0 = %x, want 8001", b[:2])
	}
	h, _, err := ParseControl(b)
	if err != nil || h.Type != TypeKeepAlive {
		t.Errorf("got %v %v, want keep-alive", h.Type, err)
	}
}

func TestParseControlTruncated(t *testing.T) {
	for _, pkt := range [][]byte{goldenKeepAlive, goldenHandshakeRequest, goldenACKFull, goldenNAK, goldenDropReq, goldenUser} {
		full, _, err := ParseControl(pkt)
		if err != nil {
			t.Fatal(err)
		}
		for n := range len(pkt) + 1 {
			h, body, err := ParseControl(pkt[:n])
			if n < HeaderLen {
				if !errors.Is(err, ErrShort) {
					t.Errorf("%v, %d bytes: err = %v, want ErrShort", full.Type, n, err)
				}
				continue
			}
			// The header has no length field: the body is whatever follows.
			if err != nil || h != full || !bytes.Equal(body, pkt[HeaderLen:n]) {
				t.Errorf("%v, %d bytes: %+v %x %v", full.Type, n, h, body, err)
			}
		}
	}
}

func TestParseControlRejectsData(t *testing.T) {
	for _, b := range [][]byte{goldenData, goldenData[:HeaderLen], make([]byte, HeaderLen), mustHex(`
		7fffffff // largest data word 0
		ffffffff
		ffffffff
		ffffffff
	`)} {
		if _, _, err := ParseControl(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseControl(%x) err = %v, want ErrMalformed", b[:4], err)
		}
	}
}

func TestDropReqGolden(t *testing.T) {
	var d DropReq
	if err := d.Parse(goldenDropReq[HeaderLen:]); err != nil {
		t.Fatal(err)
	}
	if want := (DropReq{First: 100, Last: 111}); d != want {
		t.Errorf("got %+v, want %+v", d, want)
	}
	b := AppendControlHeader(nil, &ControlHeader{Type: TypeDropReq, Info: 7, DstID: 854691372})
	if b = d.Append(b); !bytes.Equal(b, goldenDropReq) {
		t.Errorf("Append =\n%x\nwant\n%x", b, goldenDropReq)
	}
}

func TestDropReqRoundTrip(t *testing.T) {
	for _, d := range []DropReq{{}, {First: 0x7FFFFFFF, Last: 0}, {First: 0x01020304, Last: 0x05060708}} {
		b := d.Append(nil)
		if len(b) != 8 {
			t.Fatalf("Append: %d bytes, want 8", len(b))
		}
		var got DropReq
		if err := got.Parse(b); err != nil || got != d {
			t.Errorf("round trip %+v: got %+v %v", d, got, err)
		}
	}
}

func TestDropReqParseMasks(t *testing.T) {
	var d DropReq
	err := d.Parse(mustHex(`
		ffffffff // first: top bit is not part of a sequence number
		80000001 // last
		deadbeef // trailing words are ignored
	`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (DropReq{First: 0x7FFFFFFF, Last: 1}); d != want {
		t.Errorf("got %+v, want %+v", d, want)
	}
}

func TestDropReqTruncated(t *testing.T) {
	body := goldenDropReq[HeaderLen:]
	for n := range len(body) {
		d := DropReq{First: -5, Last: -5}
		if err := d.Parse(body[:n]); !errors.Is(err, ErrShort) {
			t.Errorf("%d bytes: err = %v, want ErrShort", n, err)
		}
		if d != (DropReq{First: -5, Last: -5}) {
			t.Errorf("%d bytes: short parse modified the value: %+v", n, d)
		}
	}
}

// FuzzParseControl feeds whole datagrams through the receive path: header,
// then the body decoder its type selects. Nothing may panic, and the header
// must re-encode to the same 16 bytes.
func FuzzParseControl(f *testing.F) {
	for _, b := range [][]byte{
		goldenKeepAlive, goldenKeepAlive[:HeaderLen], goldenShutdown, goldenACK2,
		goldenPeerError, goldenUser, goldenDropReq, goldenHandshakeRequest,
		goldenHandshakeCookie, goldenACKFull, goldenACKShort, goldenACKLight,
		goldenNAK, goldenData,
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, body, err := ParseControl(b)
		switch {
		case len(b) < HeaderLen:
			if !errors.Is(err, ErrShort) {
				t.Fatalf("%d bytes: err = %v, want ErrShort", len(b), err)
			}
			return
		case !IsControl(b):
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("data packet: err = %v, want ErrMalformed", err)
			}
			if _, _, err := ParseData(b); err != nil {
				t.Fatalf("neither data nor control: %v", err)
			}
			return
		case err != nil:
			t.Fatalf("valid control packet rejected: %v", err)
		}
		if _, _, err := ParseData(b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("both data and control: %v", err)
		}
		if h.Type > TypeUser {
			t.Fatalf("type %#x has the control bit", uint16(h.Type))
		}
		if h.DstID != DstID(b) {
			t.Fatalf("DstID %d, header says %d", DstID(b), h.DstID)
		}
		if !bytes.Equal(body, b[HeaderLen:]) {
			t.Fatal("body is not the tail of the packet")
		}
		if got := AppendControlHeader(nil, &h); !bytes.Equal(got, b[:HeaderLen]) {
			t.Fatalf("re-encoded header %x, want %x", got, b[:HeaderLen])
		}
		h2, _, err := ParseControl(AppendControlHeader(nil, &h))
		if err != nil || h2 != h {
			t.Fatalf("second parse %+v %v, want %+v", h2, err, h)
		}
		switch h.Type {
		case TypeHandshake:
			var hs Handshake
			_ = hs.Parse(body)
		case TypeACK:
			var a ACK
			_ = a.Parse(body)
		case TypeNAK:
			r := NewLossReader(body)
			for i := 0; ; i++ {
				_, _, ok, err := r.Next()
				if !ok || err != nil {
					break
				}
				if i > len(body)/4 {
					t.Fatal("LossReader does not terminate")
				}
			}
		case TypeDropReq:
			var d DropReq
			_ = d.Parse(body)
		}
	})
}

func FuzzDropReq(f *testing.F) {
	f.Add(goldenDropReq[HeaderLen:])
	f.Add((&DropReq{First: 0x7FFFFFFF, Last: 0}).Append(nil))
	f.Add(mustHex(`ffffffff 80000001 deadbeef`))
	f.Add(goldenDropReq[HeaderLen : HeaderLen+7])
	f.Fuzz(func(t *testing.T, body []byte) {
		var d DropReq
		err := d.Parse(body)
		if len(body) < 8 {
			if !errors.Is(err, ErrShort) {
				t.Fatalf("%d bytes: err = %v, want ErrShort", len(body), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%d bytes: %v", len(body), err)
		}
		if d.First < 0 || d.Last < 0 {
			t.Fatalf("negative sequence number: %+v", d)
		}
		// Re-encoding gives the two words with their top bits cleared.
		want := []byte{body[0] & 0x7F, body[1], body[2], body[3], body[4] & 0x7F, body[5], body[6], body[7]}
		got := d.Append(nil)
		if !bytes.Equal(got, want) {
			t.Fatalf("re-encoded %x, want %x", got, want)
		}
		var d2 DropReq
		if err := d2.Parse(got); err != nil || d2 != d {
			t.Fatalf("second parse %+v %v, want %+v", d2, err, d)
		}
	})
}
