// Package stream is p2pcat's pipe contract over any io.ReadWriteCloser (a
// udt.Conn in production): it frames a byte stream into records so that
// the receiver knows whether it got all of it, and tells the end of a
// stream apart from a cut.
//
// Wire format, version 1. The sender writes an 8-byte preamble, then
// records:
//
//	preamble: "p2pcat" 0x00 0x01
//	record:   type (1 byte) | length (3 bytes, big-endian) | body (length bytes)
//	  0x01 data   body = stream bytes (1 .. MaxRecord)
//	  0x02 end    body = total stream length, uint64 big-endian
//	  0x03 abort  body = reason code (1 byte) | UTF-8 message
//
// The package knows nothing of UDT, sockets or NATs.
package stream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxRecord is the largest record body.
const MaxRecord = 1<<24 - 1

// dataRecord is the body size the sender uses for data records.
const dataRecord = 64 << 10

var preamble = [8]byte{'p', '2', 'p', 'c', 'a', 't', 0, 1}

const (
	recData  = 0x01
	recEnd   = 0x02
	recAbort = 0x03
)

// Abort reasons carried by an abort record.
const (
	ReasonUnknown     = 0
	ReasonInterrupted = 1 // the user stopped the peer (Ctrl-C)
	ReasonReadError   = 2 // the sender could not read its input
	ReasonWriteError  = 3 // the receiver could not write its output (disk full)
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

// AbortError reports that the peer aborted the stream.
type AbortError struct {
	Reason  byte
	Message string
	Bytes   int64 // stream bytes that arrived before the abort
}

func (e *AbortError) Error() string {
	return fmt.Sprintf("peer aborted after %d bytes: %s", e.Bytes, e.Message)
}

// ErrNotP2pcat means the peer does not speak this framing (a --raw peer or
// a libudt program).
var ErrNotP2pcat = errors.New("peer does not speak p2pcat's stream format (is it running with --raw?)")

// ErrIntegrity means the records themselves are inconsistent.
var ErrIntegrity = errors.New("stream integrity check failed")

// Send copies src to conn as records, ends the stream with an end record
// and flushes. bufSize is the write buffer (a multiple of the transport's
// packet payload avoids short packets); 0 picks a default. It returns the
// number of stream bytes sent. A read error from src is reported to the
// peer as an abort.
func Send(conn io.Writer, src io.Reader, bufSize int) (int64, error) {
	if bufSize <= 0 {
		bufSize = dataRecord + 4
	}
	w := bufio.NewWriterSize(conn, bufSize)
	if _, err := w.Write(preamble[:]); err != nil {
		return 0, err
	}
	buf := make([]byte, 4+dataRecord)
	var total int64
	for {
		n, rerr := src.Read(buf[4:])
		if n > 0 {
			putHeader(buf, recData, n)
			if _, err := w.Write(buf[:4+n]); err != nil {
				return total, err
			}
			total += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			_ = writeAbort(w, ReasonReadError, rerr.Error())
			_ = w.Flush()
			return total, rerr
		}
	}
	var end [4 + 8]byte
	putHeader(end[:], recEnd, 8)
	binary.BigEndian.PutUint64(end[4:], uint64(total))
	if _, err := w.Write(end[:]); err != nil {
		return total, err
	}
	return total, w.Flush()
}

// Abort tells the peer the stream will not complete, and why.
func Abort(conn io.Writer, reason byte, msg string) error {
	return writeAbort(conn, reason, msg)
}

func writeAbort(w io.Writer, reason byte, msg string) error {
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	b := make([]byte, 5+len(msg))
	putHeader(b, recAbort, 1+len(msg))
	b[4] = reason
	copy(b[5:], msg)
	_, err := w.Write(b)
	return err
}

func putHeader(b []byte, typ byte, n int) {
	b[0] = typ
	b[1], b[2], b[3] = byte(n>>16), byte(n>>8), byte(n)
}

// Receive copies the stream from conn to dst and returns the number of
// bytes written. It returns nil only after a valid end record whose length
// matches what arrived; a stream that stops earlier is a *CutError, an
// abort an *AbortError. A write error on dst is returned as is (after
// telling the peer, if possible, through abort; see the caller).
func Receive(dst io.Writer, conn io.Reader) (int64, error) {
	// Errors from conn are tagged so that a failing transport (a cut) is
	// told apart from a failing dst (which the caller reports).
	r := bufio.NewReaderSize(taggedReader{conn}, dataRecord+4)
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
			return 0, &CutError{Bytes: 0, Err: io.ErrUnexpectedEOF}
		}
		return 0, &CutError{Bytes: 0, Err: err}
	}
	if pre != preamble {
		return 0, ErrNotP2pcat
	}
	var total int64
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return total, cut(total, err)
		}
		n := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
		switch hdr[0] {
		case recData:
			if n == 0 {
				return total, ErrIntegrity
			}
			m, err := io.CopyN(dst, r, int64(n))
			total += m
			if err != nil {
				var rerr readErr
				if err == io.EOF || errors.As(err, &rerr) {
					return total, cut(total, err)
				}
				return total, err
			}
		case recEnd:
			if n != 8 {
				return total, ErrIntegrity
			}
			var b [8]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return total, cut(total, err)
			}
			if int64(binary.BigEndian.Uint64(b[:])) != total {
				return total, ErrIntegrity
			}
			return total, nil
		case recAbort:
			if n < 1 || n > 4096 {
				return total, ErrIntegrity
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				return total, cut(total, err)
			}
			return total, &AbortError{Reason: b[0], Message: string(b[1:]), Bytes: total}
		default:
			return total, ErrIntegrity
		}
	}
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
