package wire

import (
	"bytes"
	"errors"
	"testing"
)

// The client/server handshake of §14 (C = 127.0.0.1:55146, listener L),
// four 64-byte datagrams.
var (
	// C->L: dst=0 ver=4 type=1 isn=91615778 mss=1500 flight=8192 req=1
	// id=854691372 cookie=0.
	goldenHandshakeRequest = mustHex(`
		80000000 // control; type 0 (handshake); reserved 0
		00000000 // additional info 0
		00000000 // timestamp 0
		00000000 // dst socket ID 0: connection request
		00000004 // version 4
		00000001 // socket type 1 = STREAM
		0575f222 // ISN 91615778
		000005dc // MSS 1500
		00002000 // flight flag size 8192
		00000001 // request type 1: regular request
		32f18e2c // socket ID 854691372
		00000000 // SYN cookie 0
		0100007f // peer IP 127.0.0.1, libudt little-endian host layout
		00000000 // peer IP (IPv6 words unused)
		00000000 // peer IP
		00000000 // peer IP
	`)
	// L->C: the listener's cookie answer keeps request type 1.
	goldenHandshakeCookie = mustHex(`
		80000000 // control; type 0 (handshake)
		00000000 // additional info 0
		00000000 // timestamp 0
		32f18e2c // dst socket ID 854691372
		00000004 // version 4
		00000001 // socket type 1 = STREAM
		0575f222 // ISN 91615778
		000005dc // MSS 1500
		00002000 // flight flag size 8192
		00000001 // request type 1: still "regular" in the cookie answer
		32f18e2c // socket ID 854691372 (echoed)
		4f10cac9 // SYN cookie 0x4f10cac9
		0100007f // peer IP 127.0.0.1 as the listener saw it
		00000000 // peer IP
		00000000 // peer IP
		00000000 // peer IP
	`)
	// C->L: the follow-up request, dst 0, type -1, cookie echoed.
	goldenHandshakeEcho = mustHex(`
		80000000 // control; type 0 (handshake)
		00000000 // additional info 0
		00000000 // timestamp 0
		00000000 // dst socket ID 0
		00000004 // version 4
		00000001 // socket type 1 = STREAM
		0575f222 // ISN 91615778
		000005dc // MSS 1500
		00002000 // flight flag size 8192
		ffffffff // request type -1
		32f18e2c // socket ID 854691372
		4f10cac9 // SYN cookie echoed
		0100007f // peer IP 127.0.0.1
		00000000 // peer IP
		00000000 // peer IP
		00000000 // peer IP
	`)
	// L->C: the accepted socket's response; the server adopts the client's ISN.
	goldenHandshakeResponse = mustHex(`
		80000000 // control; type 0 (handshake)
		00000000 // additional info 0
		00000000 // timestamp 0
		32f18e2c // dst socket ID 854691372
		00000004 // version 4
		00000001 // socket type 1 = STREAM
		0575f222 // ISN 91615778 (the client's)
		000005dc // MSS 1500
		00002000 // flight flag size 8192
		ffffffff // request type -1: response
		0ff689ec // socket ID 267815404 (the accepted socket)
		4f10cac9 // SYN cookie
		0100007f // peer IP 127.0.0.1
		00000000 // peer IP
		00000000 // peer IP
		00000000 // peer IP
	`)
	// B->A: a rendezvous -2 from an already-connected socket (§14). Version,
	// socket type, cookie and peer IP are zero. ISN and MSS are not in the
	// abridged trace; the values here are illustrative.
	goldenHandshakeAgreement = mustHex(`
		80000000 // control; type 0 (handshake)
		00000000 // additional info 0
		00000000 // timestamp 0
		24947dc6 // dst socket ID 613711302
		00000000 // version 0
		00000000 // socket type 0
		12345678 // ISN (illustrative)
		000005dc // MSS 1500
		00006400 // flight flag size 25600
		fffffffe // request type -2
		32b49e65 // socket ID 850697829
		00000000 // SYN cookie 0
		00000000 // peer IP 0
		00000000 // peer IP
		00000000 // peer IP
		00000000 // peer IP
	`)
)

var localhost = [16]byte{0x01, 0x00, 0x00, 0x7f}

func TestHandshakeGolden(t *testing.T) {
	tests := []struct {
		name string
		pkt  []byte
		dst  uint32
		hs   Handshake
	}{
		{"request", goldenHandshakeRequest, 0, Handshake{
			Version: 4, SockType: SockStream, ISN: 91615778, MSS: 1500, FlightFlag: 8192,
			ReqType: ReqRegular, SocketID: 854691372, Cookie: 0, PeerIP: localhost,
		}},
		{"cookie answer", goldenHandshakeCookie, 854691372, Handshake{
			Version: 4, SockType: SockStream, ISN: 91615778, MSS: 1500, FlightFlag: 8192,
			ReqType: ReqRegular, SocketID: 854691372, Cookie: 0x4f10cac9, PeerIP: localhost,
		}},
		{"cookie echo", goldenHandshakeEcho, 0, Handshake{
			Version: 4, SockType: SockStream, ISN: 91615778, MSS: 1500, FlightFlag: 8192,
			ReqType: ReqResponse, SocketID: 854691372, Cookie: 0x4f10cac9, PeerIP: localhost,
		}},
		{"response", goldenHandshakeResponse, 854691372, Handshake{
			Version: 4, SockType: SockStream, ISN: 91615778, MSS: 1500, FlightFlag: 8192,
			ReqType: ReqResponse, SocketID: 267815404, Cookie: 0x4f10cac9, PeerIP: localhost,
		}},
		{"rendezvous -2", goldenHandshakeAgreement, 613711302, Handshake{
			ISN: 0x12345678, MSS: 1500, FlightFlag: 25600, ReqType: ReqAgreement, SocketID: 850697829,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.pkt) != 64 {
				t.Fatalf("golden datagram is %d bytes, want 64", len(tt.pkt))
			}
			ch, body, err := ParseControl(tt.pkt)
			if err != nil {
				t.Fatal(err)
			}
			if want := (ControlHeader{Type: TypeHandshake, DstID: tt.dst}); ch != want {
				t.Errorf("header = %+v, want %+v", ch, want)
			}
			var hs Handshake
			if err := hs.Parse(body); err != nil {
				t.Fatal(err)
			}
			if hs != tt.hs {
				t.Errorf("got  %+v\nwant %+v", hs, tt.hs)
			}
			b := AppendControlHeader(nil, &ch)
			if b = tt.hs.Append(b); !bytes.Equal(b, tt.pkt) {
				t.Errorf("Append =\n%x\nwant\n%x", b, tt.pkt)
			}
		})
	}
}

// TestHandshakeConstants pins §4.1's numbers; the draft's socket types are
// wrong and must not creep back in.
func TestHandshakeConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"HandshakeLen", HandshakeLen, 48},
		{"SockStream", SockStream, 1},
		{"SockDgram", SockDgram, 2},
		{"ReqRegular", ReqRegular, 1},
		{"ReqRendezvous", ReqRendezvous, 0},
		{"ReqResponse", ReqResponse, -1},
		{"ReqAgreement", ReqAgreement, -2},
		{"ReqRejected", ReqRejected, 1002},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestSetPeerIPv4(t *testing.T) {
	tests := []struct {
		ip   [4]byte
		want []byte
	}{
		{[4]byte{127, 0, 0, 1}, mustHex(`0100007f 00000000 00000000 00000000 // trace: 127.0.0.1`)},
		{[4]byte{10, 1, 2, 3}, mustHex(`0302010a 00000000 00000000 00000000 // a.b.c.d -> d c b a`)},
	}
	for _, tt := range tests {
		h := Handshake{PeerIP: [16]byte{15: 0xff}} // stale bytes must be cleared
		h.SetPeerIPv4(tt.ip)
		if !bytes.Equal(h.PeerIP[:], tt.want) {
			t.Errorf("SetPeerIPv4(%v) = %x, want %x", tt.ip, h.PeerIP, tt.want)
		}
		if b := h.Append(nil); !bytes.Equal(b[32:], tt.want) {
			t.Errorf("SetPeerIPv4(%v): on the wire %x, want %x", tt.ip, b[32:], tt.want)
		}
	}
}

func TestHandshakeRoundTrip(t *testing.T) {
	for _, h := range []Handshake{
		{},
		{Version: 4, SockType: SockDgram, ISN: 0x7FFFFFFF, MSS: 65535, FlightFlag: 25600, ReqType: ReqRejected, SocketID: 1 << 30, Cookie: -1},
		{Version: -1, SockType: -1, ISN: -1, MSS: -1, FlightFlag: -1, ReqType: -1, SocketID: -1, Cookie: -1,
			PeerIP: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
	} {
		b := h.Append(nil)
		if len(b) != HandshakeLen {
			t.Fatalf("Append: %d bytes, want %d", len(b), HandshakeLen)
		}
		var got Handshake
		if err := got.Parse(b); err != nil || got != h {
			t.Errorf("round trip %+v: got %+v %v", h, got, err)
		}
	}
}

func TestHandshakeBigEndian(t *testing.T) {
	h := Handshake{Version: 0x01020304, ReqType: -2}
	b := h.Append(nil)
	if !bytes.Equal(b[0:4], []byte{1, 2, 3, 4}) {
		t.Errorf("version on the wire %x, want 01020304", b[0:4])
	}
	if !bytes.Equal(b[20:24], []byte{0xff, 0xff, 0xff, 0xfe}) {
		t.Errorf("request type -2 on the wire %x, want fffffffe", b[20:24])
	}
}

func TestHandshakeTruncated(t *testing.T) {
	body := goldenHandshakeRequest[HeaderLen:]
	for n := range len(body) {
		h := Handshake{Version: 99}
		if err := h.Parse(body[:n]); !errors.Is(err, ErrShort) {
			t.Errorf("%d bytes: err = %v, want ErrShort", n, err)
		}
		if h != (Handshake{Version: 99}) {
			t.Errorf("%d bytes: short parse modified the value", n)
		}
	}
}

// TestHandshakeLonger: a connecting socket accepts bodies longer than 48
// bytes (§4.1); the extra bytes are ignored. Rejecting non-48 bodies in
// listener mode is the caller's job.
func TestHandshakeLonger(t *testing.T) {
	body := append(bytes.Clone(goldenHandshakeRequest[HeaderLen:]), 0xde, 0xad, 0xbe, 0xef)
	var h Handshake
	if err := h.Parse(body); err != nil {
		t.Fatal(err)
	}
	var want Handshake
	if err := want.Parse(goldenHandshakeRequest[HeaderLen:]); err != nil {
		t.Fatal(err)
	}
	if h != want {
		t.Errorf("got %+v, want %+v", h, want)
	}
}

func FuzzHandshake(f *testing.F) {
	for _, pkt := range [][]byte{goldenHandshakeRequest, goldenHandshakeCookie, goldenHandshakeEcho, goldenHandshakeResponse, goldenHandshakeAgreement} {
		f.Add(pkt[HeaderLen:])
	}
	f.Add(goldenHandshakeRequest[HeaderLen : len(goldenHandshakeRequest)-1])
	f.Add(append(bytes.Clone(goldenHandshakeRequest[HeaderLen:]), 0xff))
	f.Fuzz(func(t *testing.T, body []byte) {
		var h Handshake
		err := h.Parse(body)
		if len(body) < HandshakeLen {
			if !errors.Is(err, ErrShort) {
				t.Fatalf("%d bytes: err = %v, want ErrShort", len(body), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%d bytes: %v", len(body), err)
		}
		b := h.Append(nil)
		if !bytes.Equal(b, body[:HandshakeLen]) {
			t.Fatalf("re-encoded\n%x\nwant\n%x", b, body[:HandshakeLen])
		}
		var h2 Handshake
		if err := h2.Parse(b); err != nil || h2 != h {
			t.Fatalf("second parse %+v %v, want %+v", h2, err, h)
		}
	})
}
