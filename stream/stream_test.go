package stream

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

func framed(t *testing.T, data []byte) []byte {
	t.Helper()
	var wire bytes.Buffer
	n, err := Send(&wire, bytes.NewReader(data), 0)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Send = %d, %v", n, err)
	}
	return wire.Bytes()
}

func TestRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 1000, MaxBlock, MaxBlock + 1, 5*MaxBlock + 17} {
		data := randomBytes(size)
		var out bytes.Buffer
		n, err := Receive(&out, bytes.NewReader(framed(t, data)))
		if err != nil || n != int64(size) || !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("size %d: Receive = %d, %v; equal %v", size, n, err, bytes.Equal(out.Bytes(), data))
		}
	}
}

// Every prefix of a valid stream is a cut, never a success, and what was
// written is exactly the prefix of the data that arrived in whole records
// or parts of them.
func TestEveryTruncationIsCut(t *testing.T) {
	data := randomBytes(3*MaxBlock + 100)
	w := framed(t, data)
	for _, cutAt := range []int{0, 3, 8, 9, 12, 100, 4 + 8 + MaxBlock, len(w) - 13, len(w) - 12, len(w) - 1} {
		var out bytes.Buffer
		n, err := Receive(&out, bytes.NewReader(w[:cutAt]))
		var ce *CutError
		if !errors.As(err, &ce) {
			t.Fatalf("cut at %d: err = %v, want *CutError", cutAt, err)
		}
		if ce.Bytes != n || int64(out.Len()) != n || !bytes.Equal(out.Bytes(), data[:n]) {
			t.Fatalf("cut at %d: reported %d, wrote %d, prefix ok %v", cutAt, ce.Bytes, out.Len(), bytes.Equal(out.Bytes(), data[:n]))
		}
	}
}

func TestTransportErrorIsCut(t *testing.T) {
	w := framed(t, randomBytes(2*MaxBlock))
	boom := errors.New("peer timed out")
	r := io.MultiReader(bytes.NewReader(w[:MaxBlock]), errReader{boom})
	_, err := Receive(io.Discard, r)
	var ce *CutError
	if !errors.As(err, &ce) || !errors.Is(err, boom) {
		t.Fatalf("err = %v, want a CutError wrapping %v", err, boom)
	}
}

func TestWriteErrorIsNotCut(t *testing.T) {
	w := framed(t, randomBytes(2*MaxBlock))
	full := errors.New("no space left on device")
	_, err := Receive(failWriter{full}, bytes.NewReader(w))
	var ce *CutError
	if errors.As(err, &ce) || !errors.Is(err, full) {
		t.Fatalf("err = %v, want %v and not a cut", err, full)
	}
}

func TestWrongLengthInEndRecord(t *testing.T) {
	w := framed(t, []byte("hello"))
	w[len(w)-1]++ // end record claims 6 bytes
	if _, err := Receive(io.Discard, bytes.NewReader(w)); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("err = %v, want ErrIntegrity", err)
	}
}

func TestNotP2pcat(t *testing.T) {
	if _, err := Receive(io.Discard, bytes.NewReader([]byte("GET / HTTP/1.1\r\n"))); !errors.Is(err, ErrNotP2pcat) {
		t.Fatalf("err = %v, want ErrNotP2pcat", err)
	}
}

func TestAbort(t *testing.T) {
	var wire bytes.Buffer
	if err := Abort(&wire, ReasonInterrupted, "interrupted"); err != nil {
		t.Fatal(err)
	}
	_, err := Receive(io.Discard, &wire)
	var ae *AbortError
	if !errors.As(err, &ae) || ae.Reason != ReasonInterrupted || ae.Message != "interrupted" {
		t.Fatalf("err = %v, want abort(interrupted)", err)
	}
}

func TestSenderReadErrorAborts(t *testing.T) {
	var wire bytes.Buffer
	boom := errors.New("input/output error")
	_, err := Send(&wire, io.MultiReader(bytes.NewReader([]byte("abc")), errReader{boom}), 0)
	if !errors.Is(err, boom) {
		t.Fatalf("Send err = %v", err)
	}
	var out bytes.Buffer
	_, err = Receive(&out, &wire)
	var ae *AbortError
	if !errors.As(err, &ae) || ae.Reason != ReasonReadError || out.String() != "abc" {
		t.Fatalf("Receive err = %v, out %q", err, out.String())
	}
}

// FuzzReceive feeds arbitrary bytes to the record parser: it must not
// panic, must never report success for a stream whose end record does not
// match, and must write no more than the data records carried.
func FuzzReceive(f *testing.F) {
	f.Add(framedBytes([]byte("hello")))
	f.Add(framedBytes(nil))
	f.Add(append(preamble[:], 3, 0, 0, 1, 2))
	f.Add(append(preamble[:], 2, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 9))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		n, err := Receive(&out, bytes.NewReader(in))
		if int64(out.Len()) != n {
			t.Fatalf("returned %d, wrote %d", n, out.Len())
		}
		if err == nil && int64(len(in)) < int64(len(preamble))+12 {
			t.Fatalf("success on %d bytes: too short to hold an end record", len(in))
		}
		if n > int64(len(in)) {
			t.Fatalf("wrote %d bytes from %d input bytes", n, len(in))
		}
	})
}

func framedBytes(data []byte) []byte {
	var wire bytes.Buffer
	Send(&wire, bytes.NewReader(data), 0)
	return wire.Bytes()
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type failWriter struct{ err error }

func (f failWriter) Write(p []byte) (int, error) { return 0, f.err }

func TestCompressionRoundTripAndRatio(t *testing.T) {
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog; "), 40000)
	var wire bytes.Buffer
	w := NewWriter(&wire, 1)
	if _, err := w.ReadFrom(bytes.NewReader(text)); err != nil {
		t.Fatal(err)
	}
	w.End()
	if wire.Len()*5 > len(text) {
		t.Fatalf("text compressed to %d of %d bytes", wire.Len(), len(text))
	}
	var out bytes.Buffer
	if n, err := Receive(&out, &wire); err != nil || n != int64(len(text)) || !bytes.Equal(out.Bytes(), text) {
		t.Fatalf("Receive = %d, %v", n, err)
	}
}

// Random data is sent uncompressed (costing at most a few per cent of
// wire bytes), and the back-off keeps compression attempts rare.
func TestCompressionIncompressible(t *testing.T) {
	data := randomBytes(200 * MaxBlock)
	var wire bytes.Buffer
	w := NewWriter(&wire, 1)
	w.ReadFrom(bytes.NewReader(data))
	w.End()
	if over := wire.Len() - len(data); over > len(data)/100 {
		t.Fatalf("%d bytes of overhead on %d random bytes", over, len(data))
	}
	if w.misses < 5 {
		t.Fatalf("only %d misses recorded: back-off not engaged", w.misses)
	}
	var out bytes.Buffer
	if _, err := Receive(&out, &wire); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("Receive: %v", err)
	}
}

func TestStopRecord(t *testing.T) {
	var wire bytes.Buffer
	w := NewWriter(&wire, 0)
	w.Start()
	w.Stop(ReasonReaderGone)
	if _, err := Receive(io.Discard, &wire); err != ErrPeerStopped {
		t.Fatalf("err = %v, want ErrPeerStopped", err)
	}
}

// Both directions at once over one pipe pair, each half-closed on its own.
func TestBidirectionalHalfClose(t *testing.T) {
	a2b, b2a := newPipe(), newPipe()
	dataA, dataB := randomBytes(3*MaxBlock+5), randomBytes(MaxBlock/2)
	run := func(out io.Writer, in io.Reader, data []byte) (got []byte, err error) {
		w := NewWriter(out, 0)
		errc := make(chan error, 1)
		go func() {
			_, err := w.ReadFrom(bytes.NewReader(data))
			if err == nil {
				err = w.End()
			}
			errc <- err
		}()
		var buf bytes.Buffer
		_, rerr := Receive(&buf, in)
		if werr := <-errc; werr != nil {
			return nil, werr
		}
		return buf.Bytes(), rerr
	}
	type res struct {
		got []byte
		err error
	}
	ch := make(chan res, 1)
	go func() { g, e := run(b2a.w, a2b.r, dataB); ch <- res{g, e} }()
	gotA, errA := run(a2b.w, b2a.r, dataA)
	rb := <-ch
	if errA != nil || rb.err != nil || !bytes.Equal(gotA, dataB) || !bytes.Equal(rb.got, dataA) {
		t.Fatalf("A: %v, B: %v", errA, rb.err)
	}
}

type halfPipe struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func newPipe() halfPipe { r, w := io.Pipe(); return halfPipe{r, w} }

// The whole receive and send path above UDT: a stream framed, encrypted,
// carried over net.Pipe, decrypted and unframed, as pipeStreams runs it.
func BenchmarkStreamOverSecure(b *testing.B) {
	si, sr := connected(b, knowledges[0])
	block := randomBytes(8 << 20)
	b.SetBytes(int64(len(block)))
	b.ReportAllocs()
	done := make(chan error, 1)
	go func() {
		_, err := NewReader(sr).WriteTo(io.Discard)
		done <- err
	}()
	w := NewWriter(si, 0)
	src := bytes.NewReader(nil)
	for b.Loop() {
		src.Reset(block)
		if _, err := w.ReadFrom(src); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.End(); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
