package wire

import (
	"bytes"
	"errors"
	"testing"
)

// goldenData is a data packet as 4.11 lays it out (§2): the first packet of
// a sendfile-style in-order message.
var goldenData = mustHex(`
	0575f222 // bit 0 = 0 (data); seq 91615778
	a0000005 // PP=10 (first), O=1, msgno 5
	01020304 // timestamp 16909060 µs
	32f18e2c // dst socket ID 854691372
	68656c6c // payload "hell"
	6f       // payload "o" (payload is raw bytes: no padding, no swapping)
`)

var goldenDataHeader = DataHeader{
	Seq:       91615778,
	Position:  PosFirst,
	InOrder:   true,
	MsgNo:     5,
	Timestamp: 0x01020304,
	DstID:     854691372,
}

func TestParseDataGolden(t *testing.T) {
	h, payload, err := ParseData(goldenData)
	if err != nil {
		t.Fatal(err)
	}
	if h != goldenDataHeader {
		t.Errorf("header = %+v, want %+v", h, goldenDataHeader)
	}
	if string(payload) != "hello" {
		t.Errorf("payload = %q, want %q", payload, "hello")
	}
	// The payload aliases the input: decoders never copy.
	if &payload[0] != &goldenData[HeaderLen] {
		t.Error("payload does not alias the input")
	}
}

func TestAppendDataGolden(t *testing.T) {
	prefix := []byte{0xde, 0xad}
	got := AppendData(prefix, &goldenDataHeader, []byte("hello"))
	if !bytes.Equal(got[:2], prefix) {
		t.Fatalf("AppendData clobbered the prefix: %x", got[:2])
	}
	if !bytes.Equal(got[2:], goldenData) {
		t.Errorf("AppendData =\n%x\nwant\n%x", got[2:], goldenData)
	}
	// PutDataHeader writes in place, and only the header.
	b := bytes.Repeat([]byte{0xee}, HeaderLen+1)
	PutDataHeader(b, &goldenDataHeader)
	if !bytes.Equal(b[:HeaderLen], goldenData[:HeaderLen]) || b[HeaderLen] != 0xee {
		t.Errorf("PutDataHeader = %x", b)
	}
}

// TestDataWord1 pins the PP / O / message-number layout of word 1 (§2).
func TestDataWord1(t *testing.T) {
	tests := []struct {
		pos     uint8
		inOrder bool
		msgNo   uint32
		word    []byte
	}{
		{PosMiddle, false, 1, mustHex(`00000001 // PP=00 O=0 msgno 1`)},
		{PosLast, false, 1, mustHex(`40000001 // PP=01 O=0 msgno 1`)},
		{PosFirst, false, 1, mustHex(`80000001 // PP=10 O=0 msgno 1`)},
		{PosSolo, false, 1, mustHex(`c0000001 // PP=11 O=0 msgno 1 (a stream send() that fits one packet)`)},
		{PosSolo, true, 1, mustHex(`e0000001 // PP=11 O=1 msgno 1`)},
		{PosMiddle, true, 0, mustHex(`20000000 // PP=00 O=1 msgno 0`)},
		{PosSolo, true, MaxMsgNo, mustHex(`ffffffff // every bit set`)},
		{PosMiddle, false, 0x01020304, mustHex(`01020304 // big-endian msgno`)},
	}
	for _, tt := range tests {
		h := DataHeader{Seq: 1, Position: tt.pos, InOrder: tt.inOrder, MsgNo: tt.msgNo, DstID: 9}
		b := AppendData(nil, &h, nil)
		if !bytes.Equal(b[4:8], tt.word) {
			t.Errorf("%+v: word 1 = %x, want %x", h, b[4:8], tt.word)
		}
		got, _, err := ParseData(b)
		if err != nil {
			t.Fatal(err)
		}
		if got != h {
			t.Errorf("round trip: got %+v, want %+v", got, h)
		}
	}
}

func TestDataBigEndian(t *testing.T) {
	h := DataHeader{Seq: 0x01020304, MsgNo: 0x05060708 & MaxMsgNo, Timestamp: 0x090a0b0c, DstID: 0x0d0e0f10}
	want := mustHex(`
		01020304 // seq, most significant byte first
		05060708 // PP=00 O=0 msgno 0x05060708
		090a0b0c // timestamp
		0d0e0f10 // dst socket ID
	`)
	if got := AppendData(nil, &h, nil); !bytes.Equal(got, want) {
		t.Errorf("got %x, want %x", got, want)
	}
}

func TestDataRoundTrip(t *testing.T) {
	headers := []DataHeader{
		{},
		goldenDataHeader,
		{Seq: 0x7FFFFFFF, Position: PosSolo, InOrder: true, MsgNo: MaxMsgNo, Timestamp: 0xFFFFFFFF, DstID: 0xFFFFFFFF},
		{Seq: 0, Position: PosLast, MsgNo: 1, Timestamp: 1, DstID: 1},
		{Seq: 16, Position: PosMiddle, MsgNo: 1 << 28, DstID: 1 << 30},
	}
	payloads := [][]byte{nil, {0}, bytes.Repeat([]byte{0xa5}, 1456)}
	for _, h := range headers {
		for _, p := range payloads {
			b := AppendData(nil, &h, p)
			if len(b) != HeaderLen+len(p) {
				t.Fatalf("len = %d, want %d", len(b), HeaderLen+len(p))
			}
			got, payload, err := ParseData(b)
			if err != nil {
				t.Fatalf("%+v: %v", h, err)
			}
			if got != h || !bytes.Equal(payload, p) {
				t.Errorf("round trip %+v/%d: got %+v/%d", h, len(p), got, len(payload))
			}
		}
	}
}

// TestPutDataHeaderMasks checks that out-of-range fields cannot leak into
// neighbouring bits, in particular the data/control bit.
func TestPutDataHeaderMasks(t *testing.T) {
	h := DataHeader{Seq: -1, Position: 0xFF, MsgNo: 0xFFFFFFFF}
	b := AppendData(nil, &h, nil)
	want := mustHex(`
		7fffffff // seq masked to 31 bits: still a data packet
		dfffffff // PP masked to 2 bits; O stays 0; msgno masked to 29 bits
		00000000 // timestamp
		00000000 // dst
	`)
	if !bytes.Equal(b, want) {
		t.Errorf("got %x, want %x", b, want)
	}
	if IsControl(b) {
		t.Error("negative seq produced a control packet")
	}
}

func TestParseDataTruncated(t *testing.T) {
	for n := range len(goldenData) + 1 {
		h, payload, err := ParseData(goldenData[:n])
		if n < HeaderLen {
			if !errors.Is(err, ErrShort) {
				t.Errorf("%d bytes: err = %v, want ErrShort", n, err)
			}
			continue
		}
		// Data packets have no length field: any tail is the payload.
		if err != nil {
			t.Errorf("%d bytes: %v", n, err)
			continue
		}
		if h != goldenDataHeader || !bytes.Equal(payload, goldenData[HeaderLen:n]) {
			t.Errorf("%d bytes: got %+v %q", n, h, payload)
		}
	}
}

func TestParseDataRejectsControl(t *testing.T) {
	for _, b := range [][]byte{goldenKeepAlive, goldenShutdown, goldenHandshakeRequest, goldenACKFull, goldenNAK, mustHex(`
		80000000 // smallest control word
		00000000
		00000000
		00000000
	`)} {
		if _, _, err := ParseData(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseData(%x) err = %v, want ErrMalformed", b[:4], err)
		}
	}
}

func FuzzParseData(f *testing.F) {
	f.Add(goldenData)
	f.Add(AppendData(nil, &DataHeader{Seq: 0x7FFFFFFF, Position: PosSolo, InOrder: true, MsgNo: MaxMsgNo, DstID: 1}, nil))
	f.Add(goldenKeepAlive)
	f.Add(goldenData[:HeaderLen-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, err := ParseData(b)
		switch {
		case len(b) < HeaderLen:
			if !errors.Is(err, ErrShort) {
				t.Fatalf("%d bytes: err = %v, want ErrShort", len(b), err)
			}
			return
		case IsControl(b):
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("control packet: err = %v, want ErrMalformed", err)
			}
			return
		case err != nil:
			t.Fatalf("valid data packet rejected: %v", err)
		}
		if h.Seq < 0 || h.Position > PosSolo || h.MsgNo > MaxMsgNo {
			t.Fatalf("field out of range: %+v", h)
		}
		if !bytes.Equal(payload, b[HeaderLen:]) {
			t.Fatal("payload is not the tail of the packet")
		}
		// The header re-encodes to the same 16 bytes (top bit masked: it is
		// the data/control flag, not part of the sequence number).
		var hdr [HeaderLen]byte
		PutDataHeader(hdr[:], &h)
		want := [HeaderLen]byte(b)
		want[0] &= 0x7F
		if hdr != want {
			t.Fatalf("re-encoded header %x, want %x", hdr, want)
		}
		b2 := AppendData(nil, &h, payload)
		h2, payload2, err := ParseData(b2)
		if err != nil || h2 != h || !bytes.Equal(payload2, payload) {
			t.Fatalf("second parse: %+v %v, want %+v", h2, err, h)
		}
	})
}
