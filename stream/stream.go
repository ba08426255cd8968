// Package stream is p2pcat's pipe contract over any reliable byte stream
// (a udt.Conn, in production inside a SecureConn): it frames each
// direction into records so that a receiver knows whether it got all of
// it, tells the end of a stream apart from a cut, carries half-close,
// "stop reading" and abort back to the other side, and compresses blocks
// with zstd when asked.
//
// Wire format, version 1. Each direction is a stream of its own: an
// 8-byte preamble, then records, then an end record:
//
//	preamble: "p2pcat" 0x00 0x01
//	record:   type (1 byte) | length (3 bytes, big-endian) | body
//	  0x01 data    body = stream bytes (1 .. 65532)
//	  0x02 end     body = total stream length, uint64 big-endian
//	  0x03 abort   body = reason (1 byte) | UTF-8 message: the sender of
//	               this record gives up on everything
//	  0x04 zdata   body = one zstd frame holding 1 .. 65532 stream bytes
//	  0x05 stop    body = reason (1 byte): the sender of this record has
//	               stopped reading the other direction (its output closed)
//
// A side that only receives still sends a stream: empty, and ended only
// after what it received was complete, so the sender learns end to end
// that every byte arrived. The package knows nothing of UDT or sockets.
package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// MaxBlock is the most stream bytes one record carries; a data record
// (header + body) is then exactly 64 KiB.
const MaxBlock = 1<<16 - 4

var preamble = [8]byte{'p', '2', 'p', 'c', 'a', 't', 0, 1}

// headRoom is the space the Writer keeps in front of a record's body: the
// record header, and the preamble before the first record, are written
// there in place, so that a block of input goes out without a copy.
const headRoom = len(preamble) + 4

const (
	recData  = 0x01
	recEnd   = 0x02
	recAbort = 0x03
	recZData = 0x04
	recStop  = 0x05
)

// Abort and stop reasons.
const (
	ReasonUnknown     = 0
	ReasonInterrupted = 1 // the user stopped the peer (Ctrl-C)
	ReasonReadError   = 2 // the sender could not read its input
	ReasonWriteError  = 3 // the receiver could not write its output (disk full)
	ReasonReaderGone  = 4 // the receiver's output was closed (e.g. | head)
	ReasonIdle        = 5 // idle timeout
)

// CutError reports a stream that ended before its end record.
type CutError struct {
	Bytes int64 // stream bytes that arrived
	Err   error // what ended it
}

func (e *CutError) Error() string {
	return fmt.Sprintf("stream cut after %d bytes: %v", e.Bytes, e.Err)
}

func (e *CutError) Unwrap() error { return e.Err }

// AbortError reports that the peer aborted.
type AbortError struct {
	Reason  byte
	Message string
	Bytes   int64 // stream bytes that arrived before the abort
}

func (e *AbortError) Error() string {
	return fmt.Sprintf("peer aborted after %d bytes: %s", e.Bytes, e.Message)
}

// ErrPeerStopped means the peer stopped reading what we send.
var ErrPeerStopped = errors.New("the peer stopped reading")

// ErrNotP2pcat means the peer does not speak this framing (a --raw peer or
// a libudt program).
var ErrNotP2pcat = errors.New("peer does not speak p2pcat's stream format (is it running with --raw?)")

// ErrIntegrity means the records themselves are inconsistent.
var ErrIntegrity = errors.New("stream integrity check failed")

// Writer writes one direction. Its methods may be called from different
// goroutines: every record goes out in one Write of the underlying writer,
// under a lock, so control records (stop, abort) can interleave with data.
type Writer struct {
	mu       sync.Mutex
	w        io.Writer
	started  bool
	ended    bool
	err      error
	buf      []byte // control records, under mu
	dbuf     []byte // ReadFrom's input blocks, headRoom first
	enc      *zstd.Encoder
	zbuf     []byte // compressed blocks, headRoom first
	skip     int    // blocks to send uncompressed before trying again
	misses   int    // consecutive blocks that did not shrink
	Total    atomic.Int64
	WireData atomic.Int64 // record bytes written, for the compression ratio
}

// NewWriter returns a Writer; level > 0 compresses data blocks with zstd
// at that level, on zstd's scale (1 fastest … 19 and up best).
func NewWriter(w io.Writer, level int) *Writer {
	sw := &Writer{w: w, buf: make([]byte, headRoom+MaxBlock)}
	if level > 0 {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
			zstd.WithWindowSize(1<<17), zstd.WithLowerEncoderMem(true))
		if err == nil {
			sw.enc = enc
			sw.zbuf = make([]byte, 0, headRoom+MaxBlock+MaxBlock/8)
		}
	}
	return sw
}

// record writes one record (and the preamble before the first one).
func (w *Writer) record(typ byte, body []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.recordLocked(typ, body)
}

func (w *Writer) recordLocked(typ byte, body []byte) error {
	return w.sendLocked(typ, append(w.buf[:headRoom], body...))
}

// sendLocked writes the record whose body is rec[headRoom:], its header
// (and before the first record the preamble) filled in in rec's head room.
func (w *Writer) sendLocked(typ byte, rec []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.ended && typ != recStop && typ != recAbort {
		return errors.New("stream: write after end")
	}
	n := len(rec) - headRoom
	start := headRoom - 4
	rec[start], rec[start+1], rec[start+2], rec[start+3] = typ, byte(n>>16), byte(n>>8), byte(n)
	if !w.started {
		start -= len(preamble)
		copy(rec[start:], preamble[:])
		w.started = true
	}
	b := rec[start:]
	_, err := w.w.Write(b)
	w.WireData.Add(int64(len(b)))
	if err != nil {
		w.err = err
	}
	return err
}

// Start writes the preamble if nothing was written yet.
func (w *Writer) Start() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.err != nil {
		return w.err
	}
	w.started = true
	_, w.err = w.w.Write(preamble[:])
	return w.err
}

// block writes up to MaxBlock stream bytes, rec[headRoom:], compressed if
// that pays.
func (w *Writer) block(rec []byte) error {
	p := rec[headRoom:]
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.enc != nil {
		if w.skip > 0 {
			w.skip--
		} else {
			z := w.enc.EncodeAll(p, w.zbuf[:headRoom])
			if len(z)-headRoom < len(p)-len(p)/32 {
				w.misses = 0
				w.zbuf = z[:0]
				if err := w.sendLocked(recZData, z); err != nil {
					return err
				}
				w.Total.Add(int64(len(p)))
				return nil
			}
			// Incompressible: back off exponentially (up to 64 blocks)
			// so that random data costs almost no compression work.
			w.misses++
			w.skip = min(1<<min(w.misses, 6), 64)
		}
	}
	if err := w.sendLocked(recData, rec); err != nil {
		return err
	}
	w.Total.Add(int64(len(p)))
	return nil
}

// ReadFrom copies src into data records until EOF, then does not end the
// stream (call End). A read error is sent to the peer as an abort.
func (w *Writer) ReadFrom(src io.Reader) (int64, error) {
	if w.dbuf == nil {
		w.dbuf = make([]byte, headRoom+MaxBlock)
	}
	var n int64
	for {
		m, rerr := io.ReadFull(src, w.dbuf[headRoom:])
		if m > 0 {
			if err := w.block(w.dbuf[:headRoom+m]); err != nil {
				return n, err
			}
			n += int64(m)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return n, nil
		}
		if rerr != nil {
			_ = w.Abort(ReasonReadError, rerr.Error())
			return n, &readError{rerr}
		}
	}
}

// readError marks an error reading the local input.
type readError struct{ error }

func (e *readError) Unwrap() error { return e.error }

// InputError reports whether err came from reading the local input.
func InputError(err error) bool {
	var r *readError
	return errors.As(err, &r)
}

// End ends the stream with its length (half-close).
func (w *Writer) End() error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(w.Total.Load()))
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return nil
	}
	err := w.recordLocked(recEnd, b[:])
	w.ended = true
	return err
}

// Stop tells the peer we stopped reading its stream.
func (w *Writer) Stop(reason byte) error { return w.record(recStop, []byte{reason}) }

// Abort tells the peer we give up, and why.
func (w *Writer) Abort(reason byte, msg string) error {
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	return w.record(recAbort, append([]byte{reason}, msg...))
}

// Reader reads one direction.
type Reader struct {
	r     io.Reader
	dec   *zstd.Decoder
	dbuf  []byte
	Total atomic.Int64
}

// NewReader returns a Reader over r. It reads each record's header and
// then its body straight into place, without a buffer of its own: below
// it a SecureConn or a udt.Conn holds what has arrived.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: taggedReader{r}}
}

// WriteTo copies the stream to dst. It returns nil only after a valid end
// record whose length matches what arrived; a stream that stops earlier is
// a *CutError, an abort an *AbortError, a stop record ErrPeerStopped. An
// error writing dst is returned as an *OutputError.
func (rd *Reader) WriteTo(dst io.Writer) (int64, error) {
	var pre [8]byte
	if _, err := io.ReadFull(rd.r, pre[:]); err != nil {
		return 0, cut(0, err)
	}
	if pre != preamble {
		return 0, ErrNotP2pcat
	}
	var hdr [4]byte
	body := make([]byte, MaxBlock+MaxBlock/8)
	for {
		total := rd.Total.Load()
		if _, err := io.ReadFull(rd.r, hdr[:]); err != nil {
			return total, cut(total, err)
		}
		n := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
		if n > len(body) {
			return total, ErrIntegrity
		}
		b := body[:n]
		if _, err := io.ReadFull(rd.r, b); err != nil {
			return total, cut(total, err)
		}
		switch hdr[0] {
		case recData, recZData:
			if hdr[0] == recZData {
				d, err := rd.decompress(b)
				if err != nil {
					return total, fmt.Errorf("%w: bad compressed block: %v", ErrIntegrity, err)
				}
				b = d
			}
			if len(b) == 0 || len(b) > MaxBlock {
				return total, ErrIntegrity
			}
			if _, err := dst.Write(b); err != nil {
				return total, &OutputError{err}
			}
			rd.Total.Add(int64(len(b)))
		case recEnd:
			if n != 8 || int64(binary.BigEndian.Uint64(b)) != total {
				return total, ErrIntegrity
			}
			return total, nil
		case recAbort:
			if n < 1 {
				return total, ErrIntegrity
			}
			return total, &AbortError{Reason: b[0], Message: string(b[1:]), Bytes: total}
		case recStop:
			if n != 1 {
				return total, ErrIntegrity
			}
			return total, ErrPeerStopped
		default:
			return total, ErrIntegrity
		}
	}
}

func (rd *Reader) decompress(b []byte) ([]byte, error) {
	if rd.dec == nil {
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxBlock), zstd.WithDecoderMaxWindow(1<<17))
		if err != nil {
			return nil, err
		}
		rd.dec, rd.dbuf = dec, make([]byte, 0, MaxBlock)
	}
	d, err := rd.dec.DecodeAll(b, rd.dbuf[:0])
	if err == nil {
		rd.dbuf = d[:0]
	}
	return d, err
}

// OutputError wraps an error writing the local output.
type OutputError struct{ Err error }

func (e *OutputError) Error() string { return "cannot write output: " + e.Err.Error() }
func (e *OutputError) Unwrap() error { return e.Err }

// Send is the one-way convenience: src as a whole stream, ended.
func Send(conn io.Writer, src io.Reader, level int) (int64, error) {
	w := NewWriter(conn, level)
	if err := w.Start(); err != nil {
		return 0, err
	}
	n, err := w.ReadFrom(src)
	if err != nil {
		return n, err
	}
	return n, w.End()
}

// Receive is the one-way convenience: the whole stream to dst.
func Receive(dst io.Writer, conn io.Reader) (int64, error) {
	return NewReader(conn).WriteTo(dst)
}

// Abort writes a preamble (if needed) and an abort record on a fresh
// writer: for a side that has written nothing yet.
func Abort(conn io.Writer, reason byte, msg string) error {
	return NewWriter(conn, 0).Abort(reason, msg)
}

// readErr marks an error that came from the transport, not from dst.
type readErr struct{ error }

func (e readErr) Unwrap() error { return e.error }

type taggedReader struct{ r io.Reader }

func (t taggedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		err = readErr{err}
	}
	return n, err
}

func cut(total int64, err error) error {
	var rerr readErr
	if errors.As(err, &rerr) {
		err = rerr.error
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return &CutError{Bytes: total, Err: err}
}
