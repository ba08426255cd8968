package wire

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// mustHex decodes a golden vector written one field per line:
//
//	80000000 // control, type 0
//	00000004 // version 4
//
// Everything after "//" on a line is a comment; whitespace is ignored, so a
// word may be written in groups ("8000 0000").
func mustHex(s string) []byte {
	var sb strings.Builder
	for line := range strings.SplitSeq(s, "\n") {
		if i := strings.Index(line, "//"); i >= 0 {
			line = line[:i]
		}
		sb.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(sb.String())
	if err != nil {
		panic("bad golden vector: " + err.Error())
	}
	return b
}

func TestMustHex(t *testing.T) {
	got := mustHex(`
		8000 0001 // two groups
		00000002  // one word
	`)
	want := []byte{0x80, 0, 0, 1, 0, 0, 0, 2}
	if string(got) != string(want) {
		t.Fatalf("mustHex = %x, want %x", got, want)
	}
}

func TestIsControlAndDstID(t *testing.T) {
	data := mustHex(`
		00000007 // data, seq 7
		c0000001 // PP=11, O=0, msgno 1
		00000000 // timestamp
		32f18e2c // dst 854691372
	`)
	ctrl := mustHex(`
		80010000 // control, keep-alive
		00000000 // info
		00000000 // timestamp
		0ff689ec // dst 267815404
	`)
	if IsControl(data) {
		t.Error("IsControl(data) = true")
	}
	if !IsControl(ctrl) {
		t.Error("IsControl(keep-alive) = false")
	}
	if got := DstID(data); got != 854691372 {
		t.Errorf("DstID(data) = %d, want 854691372", got)
	}
	if got := DstID(ctrl); got != 267815404 {
		t.Errorf("DstID(keep-alive) = %d, want 267815404", got)
	}
	// Anything shorter than a header is neither control nor addressed.
	for n := range HeaderLen {
		if IsControl(ctrl[:n]) {
			t.Errorf("IsControl(%d bytes) = true", n)
		}
		if got := DstID(ctrl[:n]); got != 0 {
			t.Errorf("DstID(%d bytes) = %d, want 0", n, got)
		}
	}
	if IsControl(nil) || DstID(nil) != 0 {
		t.Error("nil input not treated as short")
	}
}

// TestErrorsDistinct guards against the two sentinel errors being merged:
// callers tell "truncated" from "garbage" with errors.Is.
func TestErrorsDistinct(t *testing.T) {
	if errors.Is(ErrShort, ErrMalformed) || errors.Is(ErrMalformed, ErrShort) {
		t.Fatal("ErrShort and ErrMalformed must be distinct")
	}
}

// The decoders are on the receive path of every packet and the encoders on
// the send path: neither may allocate (doc.go; pion/stun-style allocation
// tests, STYLE.md).

func TestParseAllocs(t *testing.T) {
	dataPkt := AppendData(nil, &goldenDataHeader, []byte("hello"))
	nak := mustHex(goldenNAKBody)
	var (
		hs  Handshake
		ack ACK
		dr  DropReq
	)
	hsBody := goldenHandshakeRequest[HeaderLen:]
	ackBody := goldenACKFull[HeaderLen:]
	drBody := goldenDropReq[HeaderLen:]
	tests := []struct {
		name string
		f    func()
	}{
		{"ParseData", func() { _, _, _ = ParseData(dataPkt) }},
		{"ParseControl", func() { _, _, _ = ParseControl(goldenKeepAlive) }},
		{"Handshake.Parse", func() { _ = hs.Parse(hsBody) }},
		{"ACK.Parse", func() { _ = ack.Parse(ackBody) }},
		{"DropReq.Parse", func() { _ = dr.Parse(drBody) }},
		{"LossReader", func() {
			r := NewLossReader(nak)
			for {
				_, _, ok, err := r.Next()
				if !ok || err != nil {
					break
				}
			}
		}},
		{"IsControl+DstID", func() { _, _ = IsControl(dataPkt), DstID(dataPkt) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, tt.f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", tt.name, n)
		}
	}
}

func TestAppendAllocs(t *testing.T) {
	buf := make([]byte, 0, 1500)
	payload := make([]byte, 1456)
	dh := goldenDataHeader
	ch := ControlHeader{Type: TypeACK, Info: 1, DstID: 854691372}
	hs := Handshake{Version: 4, SockType: SockStream, ISN: 91615778, MSS: 1500, FlightFlag: 8192, ReqType: ReqRegular, SocketID: 854691372}
	ack := ACK{Ack: 91615779, RTT: 100000, RTTVar: 50000, Avail: 8190, RecvRate: 1, Capacity: 1000, Fields: 6}
	dr := DropReq{First: 100, Last: 110}
	tests := []struct {
		name string
		f    func()
	}{
		{"AppendData", func() { buf = AppendData(buf[:0], &dh, payload) }},
		{"PutDataHeader", func() { PutDataHeader(buf[:HeaderLen], &dh) }},
		{"AppendControlHeader", func() { buf = AppendControlHeader(buf[:0], &ch) }},
		{"AppendEmpty", func() { buf = AppendEmpty(buf[:0], TypeKeepAlive, 0, 854691372) }},
		{"Handshake.Append", func() { buf = hs.Append(AppendControlHeader(buf[:0], &ch)) }},
		{"ACK.Append", func() { buf = ack.Append(AppendControlHeader(buf[:0], &ch)) }},
		{"DropReq.Append", func() { buf = dr.Append(AppendControlHeader(buf[:0], &ch)) }},
		{"AppendLoss", func() {
			buf = AppendLoss(buf[:0], 2, 2)
			buf = AppendLoss(buf, 6, 11)
		}},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, tt.f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", tt.name, n)
		}
	}
}
