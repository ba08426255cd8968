package wire

import (
	"bytes"
	"errors"
	"testing"
)

// The loss list of §4.3: 2, 6..11, 14.
const goldenNAKBody = `
	00000002 // single loss: 2
	80000006 // range bit | first lost number 6
	0000000b // last lost number 11 (inclusive)
	0000000e // single loss: 14
`

var goldenNAK = mustHex(`
	80030000 // control; type 3 (NAK); reserved 0
	00000000 // additional info 0
	00000000 // timestamp 0
	32f18e2c // dst socket ID 854691372
` + goldenNAKBody)

type lossRange struct{ first, last int32 }

// readLoss drains a LossReader, returning the ranges read and the error, if
// any, that ended the list.
func readLoss(t testing.TB, body []byte) ([]lossRange, error) {
	t.Helper()
	r := NewLossReader(body)
	var out []lossRange
	for {
		first, last, ok, err := r.Next()
		if err != nil {
			if ok || first != 0 || last != 0 {
				t.Fatalf("error %v with ok=%v %d..%d", err, ok, first, last)
			}
			// Once broken, the reader stays at its end.
			if f, l, ok, err := r.Next(); ok || err != nil || f != 0 || l != 0 {
				t.Fatalf("Next after error = %d, %d, %v, %v", f, l, ok, err)
			}
			return out, err
		}
		if !ok {
			if first != 0 || last != 0 {
				t.Fatalf("end of list with %d..%d", first, last)
			}
			if _, _, ok, err := r.Next(); ok || err != nil {
				t.Fatalf("Next after end = %v, %v", ok, err)
			}
			return out, nil
		}
		out = append(out, lossRange{first, last})
		if len(out) > len(body)/4 {
			t.Fatalf("more ranges (%d) than words in %d bytes", len(out), len(body))
		}
	}
}

func TestNAKGolden(t *testing.T) {
	ch, body, err := ParseControl(goldenNAK)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ControlHeader{Type: TypeNAK, DstID: 854691372}); ch != want {
		t.Errorf("header = %+v, want %+v", ch, want)
	}
	got, err := readLoss(t, body)
	want := []lossRange{{2, 2}, {6, 11}, {14, 14}}
	if err != nil || !equalRanges(got, want) {
		t.Errorf("got %v %v, want %v", got, err, want)
	}
	b := AppendControlHeader(nil, &ch)
	for _, r := range want {
		b = AppendLoss(b, r.first, r.last)
	}
	if !bytes.Equal(b, goldenNAK) {
		t.Errorf("AppendLoss =\n%x\nwant\n%x", b, goldenNAK)
	}
}

func TestAppendLoss(t *testing.T) {
	tests := []struct {
		first, last int32
		want        []byte
	}{
		{0, 0, mustHex(`00000000 // single loss 0`)},
		{5, 5, mustHex(`00000005 // single loss: one plain word`)},
		{5, 6, mustHex(`80000005 00000006 // two losses are already a range`)},
		{0x7FFFFFFE, 0x7FFFFFFF, mustHex(`fffffffe 7fffffff // top of the sequence space`)},
		{0x7FFFFFFF, 0, mustHex(`ffffffff 00000000 // a range across the wrap`)},
		{0x01020304, 0x05060708, mustHex(`81020304 05060708 // big-endian words`)},
		{-1, -1, mustHex(`7fffffff // single word masked: no stray range bit`)},
		{1, -1, mustHex(`80000001 7fffffff // end word masked`)},
	}
	for _, tt := range tests {
		if got := AppendLoss([]byte{0xaa}, tt.first, tt.last); got[0] != 0xaa || !bytes.Equal(got[1:], tt.want) {
			t.Errorf("AppendLoss(%d, %d) = %x, want %x", tt.first, tt.last, got[1:], tt.want)
		}
	}
}

func TestLossReaderEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want []lossRange
		err  error
	}{
		{"empty", nil, nil, nil},
		{"one single", mustHex(`00000007`), []lossRange{{7, 7}}, nil},
		{"max single", mustHex(`7fffffff`), []lossRange{{0x7FFFFFFF, 0x7FFFFFFF}}, nil},
		{"range with equal ends", mustHex(`80000009 00000009`), []lossRange{{9, 9}}, nil},
		{"reversed range is passed through", mustHex(`8000000b 00000006 // validation is the sender's job`), []lossRange{{11, 6}}, nil},
		{"range across the wrap", mustHex(`ffffffff 00000001`), []lossRange{{0x7FFFFFFF, 1}}, nil},
		{"range start without end word", mustHex(`
			00000002 // single 2
			80000006 // range start, then nothing
		`), []lossRange{{2, 2}}, ErrMalformed},
		{"range start then partial word", mustHex(`
			80000006 // range start
			0000     // half an end word
		`), nil, ErrMalformed},
		{"end word with range bit", mustHex(`
			80000006 // range start
			8000000b // end word must have bit 0 clear
			0000000e // never reached
		`), nil, ErrMalformed},
		{"two range starts", mustHex(`80000001 80000002 00000003`), nil, ErrMalformed},
		{"trailing partial word ignored (1 byte)", mustHex(`00000002 80`), []lossRange{{2, 2}}, nil},
		{"trailing partial word ignored (3 bytes)", mustHex(`
			80000006 // range start
			0000000b // range end
			ffffff   // partial word, ignored as libudt does
		`), []lossRange{{6, 11}}, nil},
		{"only a partial word", mustHex(`800000`), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readLoss(t, tt.body)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Errorf("err = %v, want %v", err, tt.err)
			}
			if !equalRanges(got, tt.want) {
				t.Errorf("ranges = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestLossReaderTruncated reads every prefix of the golden body: a cut after
// the range start 0x80000006 (with or without part of its end word) is
// malformed; a cut anywhere else yields the whole entries before it and
// ignores the partial word.
func TestLossReaderTruncated(t *testing.T) {
	body := mustHex(goldenNAKBody)
	for n := range len(body) + 1 {
		got, err := readLoss(t, body[:n])
		var want []lossRange
		var wantErr error
		switch {
		case n < 4:
		case n < 8:
			want = []lossRange{{2, 2}}
		case n < 12:
			want, wantErr = []lossRange{{2, 2}}, ErrMalformed
		case n < 16:
			want = []lossRange{{2, 2}, {6, 11}}
		default:
			want = []lossRange{{2, 2}, {6, 11}, {14, 14}}
		}
		if err != wantErr || !equalRanges(got, want) {
			t.Errorf("%d bytes: got %v %v, want %v %v", n, got, err, want, wantErr)
		}
	}
}

func TestLossRoundTrip(t *testing.T) {
	ranges := []lossRange{{0, 0}, {1, 2}, {100, 100}, {200, 1200}, {0x7FFFFFF0, 0x7FFFFFFF}, {0x7FFFFFFF, 3}}
	var b []byte
	for _, r := range ranges {
		b = AppendLoss(b, r.first, r.last)
	}
	got, err := readLoss(t, b)
	if err != nil || !equalRanges(got, ranges) {
		t.Errorf("got %v %v, want %v", got, err, ranges)
	}
}

func equalRanges(a, b []lossRange) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzNAK(f *testing.F) {
	f.Add(mustHex(goldenNAKBody))
	f.Add(mustHex(`80000006`))
	f.Add(mustHex(`80000006 8000000b`))
	f.Add(mustHex(`ffffffff 7fffffff 00000001 ff`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := readLoss(t, body)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("unexpected error %v", err)
		}
		for _, r := range got {
			if r.first < 0 || r.last < 0 {
				t.Fatalf("range %d..%d is not 31-bit non-negative", r.first, r.last)
			}
		}
		// Re-encode what was read the way 4.11 does; it reads back the same.
		var b []byte
		for _, r := range got {
			b = AppendLoss(b, r.first, r.last)
		}
		if len(b) > len(body) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(body), len(b))
		}
		again, err := readLoss(t, b)
		if err != nil || !equalRanges(again, got) {
			t.Fatalf("second read %v %v, want %v", again, err, got)
		}
	})
}
