package wire

import (
	"bytes"
	"errors"
	"testing"
)

// ACKs of the three lengths 4.11 sends (§4.2). The full one is the first ACK
// of the §14 trace.
var (
	goldenACKFull = mustHex(`
		80020000 // control; type 2 (ACK); reserved 0
		00000001 // additional info: ACK sequence number 1
		00000000 // timestamp 0
		32f18e2c // dst socket ID 854691372
		0575f223 // ACK number ISN+1 = 91615779
		000186a0 // RTT 100000 µs
		0000c350 // RTT variance 50000 µs
		00001ffe // available buffer 8190 packets
		00000001 // receive rate 1 packet/s
		000003e8 // link capacity 1000 packets/s
	`)
	goldenACKShort = mustHex(`
		80020000 // control; type 2 (ACK)
		00000002 // additional info: ACK sequence number 2
		00000000 // timestamp 0
		32f18e2c // dst socket ID 854691372
		0575f300 // ACK number 91616000
		00002710 // RTT 10000 µs
		000003e8 // RTT variance 1000 µs
		00001f00 // available buffer 7936 packets
	`)
	goldenACKLight = mustHex(`
		80020000 // control; type 2 (ACK)
		00000000 // additional info: 0 in a light ACK
		00000000 // timestamp 0
		32f18e2c // dst socket ID 854691372
		0575f310 // ACK number 91616016
	`)
)

func TestACKGolden(t *testing.T) {
	tests := []struct {
		name string
		pkt  []byte
		info uint32
		ack  ACK
	}{
		{"full", goldenACKFull, 1, ACK{Ack: 91615779, RTT: 100000, RTTVar: 50000, Avail: 8190, RecvRate: 1, Capacity: 1000, Fields: 6}},
		{"short", goldenACKShort, 2, ACK{Ack: 91616000, RTT: 10000, RTTVar: 1000, Avail: 7936, Fields: 4}},
		{"light", goldenACKLight, 0, ACK{Ack: 91616016, Fields: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, body, err := ParseControl(tt.pkt)
			if err != nil {
				t.Fatal(err)
			}
			if want := (ControlHeader{Type: TypeACK, Info: tt.info, DstID: 854691372}); ch != want {
				t.Errorf("header = %+v, want %+v", ch, want)
			}
			var a ACK
			if err := a.Parse(body); err != nil {
				t.Fatal(err)
			}
			if a != tt.ack {
				t.Errorf("got  %+v\nwant %+v", a, tt.ack)
			}
			b := tt.ack.Append(AppendControlHeader(nil, &ch))
			if !bytes.Equal(b, tt.pkt) {
				t.Errorf("Append =\n%x\nwant\n%x", b, tt.pkt)
			}
		})
	}
}

func TestACKConstants(t *testing.T) {
	if ACKLightLen != 4 || ACKShortLen != 16 || ACKFullLen != 24 {
		t.Errorf("ACK lengths %d/%d/%d, want 4/16/24", ACKLightLen, ACKShortLen, ACKFullLen)
	}
}

// TestACKTruncated checks every prefix of a full ACK body. ack.go's
// semantics: under 4 bytes is ErrShort (and leaves the value alone); 4..15
// bytes is a light ACK; 16..23 bytes carries the first four words (a 20-byte
// body must not be read as having rates: the sixth word is not there); 24 or
// more is a full ACK.
func TestACKTruncated(t *testing.T) {
	body := goldenACKFull[HeaderLen:]
	for n := range len(body) + 1 {
		a := ACK{Ack: -1, Fields: -1}
		err := a.Parse(body[:n])
		var want ACK
		switch {
		case n < ACKLightLen:
			if !errors.Is(err, ErrShort) {
				t.Errorf("%d bytes: err = %v, want ErrShort", n, err)
			}
			if a != (ACK{Ack: -1, Fields: -1}) {
				t.Errorf("%d bytes: short parse modified the value: %+v", n, a)
			}
			continue
		case n < ACKShortLen:
			want = ACK{Ack: 91615779, Fields: 1}
		case n < ACKFullLen:
			want = ACK{Ack: 91615779, RTT: 100000, RTTVar: 50000, Avail: 8190, Fields: 4}
		default:
			want = ACK{Ack: 91615779, RTT: 100000, RTTVar: 50000, Avail: 8190, RecvRate: 1, Capacity: 1000, Fields: 6}
		}
		if err != nil || a != want {
			t.Errorf("%d bytes: got %+v %v, want %+v", n, a, err, want)
		}
	}
}

// TestACKParseResets: a light ACK parsed into a value that held a full ACK
// must not keep the old RTT and rates.
func TestACKParseResets(t *testing.T) {
	var a ACK
	if err := a.Parse(goldenACKFull[HeaderLen:]); err != nil {
		t.Fatal(err)
	}
	if err := a.Parse(goldenACKLight[HeaderLen:]); err != nil {
		t.Fatal(err)
	}
	if want := (ACK{Ack: 91616016, Fields: 1}); a != want {
		t.Errorf("got %+v, want %+v", a, want)
	}
	if err := a.Parse(goldenACKFull[HeaderLen:]); err != nil {
		t.Fatal(err)
	}
	if err := a.Parse(goldenACKShort[HeaderLen:]); err != nil {
		t.Fatal(err)
	}
	if a.RecvRate != 0 || a.Capacity != 0 || a.Fields != 4 {
		t.Errorf("short ACK kept rates: %+v", a)
	}
}

func TestACKMasksAckNumber(t *testing.T) {
	var a ACK
	if err := a.Parse(mustHex(`ffffffff // ACK number with the top bit set`)); err != nil {
		t.Fatal(err)
	}
	if a.Ack != 0x7FFFFFFF {
		t.Errorf("Ack = %#x, want 0x7fffffff", a.Ack)
	}
	b := (&ACK{Ack: -1, Fields: 1}).Append(nil)
	if !bytes.Equal(b, mustHex(`7fffffff`)) {
		t.Errorf("Append(Ack: -1) = %x, want 7fffffff", b)
	}
}

// TestACKAppendFields: Fields selects the length; anything but 1 or 4
// (including the zero value) writes all six words.
func TestACKAppendFields(t *testing.T) {
	a := ACK{Ack: 1, RTT: 2, RTTVar: 3, Avail: 4, RecvRate: 5, Capacity: 6}
	for _, tt := range []struct{ fields, n int }{{1, 4}, {4, 16}, {6, 24}, {0, 24}, {2, 24}, {5, 24}, {-1, 24}} {
		a.Fields = tt.fields
		if b := a.Append(nil); len(b) != tt.n {
			t.Errorf("Fields=%d: %d bytes, want %d", tt.fields, len(b), tt.n)
		}
	}
}

func TestACKRoundTrip(t *testing.T) {
	for _, a := range []ACK{
		{Fields: 1},
		{Ack: 0x7FFFFFFF, Fields: 1},
		{Ack: 1, RTT: -1, RTTVar: -1, Avail: 2, Fields: 4},
		{Ack: 0, RTT: 0x7FFFFFFF, RTTVar: 1, Avail: 25600, RecvRate: -1, Capacity: 0x7FFFFFFF, Fields: 6},
	} {
		b := a.Append(nil)
		if len(b) != 4*a.Fields {
			t.Fatalf("%+v: %d bytes", a, len(b))
		}
		var got ACK
		if err := got.Parse(b); err != nil || got != a {
			t.Errorf("round trip %+v: got %+v %v", a, got, err)
		}
	}
}

func TestACKBigEndian(t *testing.T) {
	a := ACK{Ack: 0x01020304, RTT: 0x05060708, RTTVar: 0x090a0b0c, Avail: 0x0d0e0f10, RecvRate: 0x11121314, Capacity: 0x15161718, Fields: 6}
	want := mustHex(`
		01020304 // ACK number
		05060708 // RTT
		090a0b0c // RTT variance
		0d0e0f10 // available buffer
		11121314 // receive rate
		15161718 // link capacity
	`)
	if got := a.Append(nil); !bytes.Equal(got, want) {
		t.Errorf("got %x, want %x", got, want)
	}
}

func FuzzACK(f *testing.F) {
	for _, pkt := range [][]byte{goldenACKFull, goldenACKShort, goldenACKLight} {
		f.Add(pkt[HeaderLen:])
	}
	f.Add(goldenACKFull[HeaderLen : HeaderLen+20])
	f.Add(goldenACKFull[HeaderLen : HeaderLen+3])
	f.Add(mustHex(`ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff ff`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var a ACK
		err := a.Parse(body)
		if len(body) < ACKLightLen {
			if !errors.Is(err, ErrShort) {
				t.Fatalf("%d bytes: err = %v, want ErrShort", len(body), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%d bytes: %v", len(body), err)
		}
		want := 6
		switch {
		case len(body) < ACKShortLen:
			want = 1
		case len(body) < ACKFullLen:
			want = 4
		}
		if a.Fields != want {
			t.Fatalf("%d bytes: Fields = %d, want %d", len(body), a.Fields, want)
		}
		if a.Ack < 0 {
			t.Fatalf("negative ACK number %d", a.Ack)
		}
		// Re-encoding writes exactly the words that were read, the ACK
		// number with its top bit cleared.
		b := a.Append(nil)
		wantB := bytes.Clone(body[:4*a.Fields])
		wantB[0] &= 0x7F
		if !bytes.Equal(b, wantB) {
			t.Fatalf("re-encoded %x, want %x", b, wantB)
		}
		var a2 ACK
		if err := a2.Parse(b); err != nil || a2 != a {
			t.Fatalf("second parse %+v %v, want %+v", a2, err, a)
		}
	})
}
