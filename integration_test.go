package main

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/internal/memlink"
	"github.com/p2pcat/p2pcat/punch"
	"github.com/p2pcat/p2pcat/stream"
	"github.com/p2pcat/p2pcat/udt"
)

// TestTamperedPayload flips one bit in one UDT data payload in flight:
// the receiver stops with an authentication error, and what it wrote is
// exactly a prefix of what was sent, ending before the damaged record.
func TestTamperedPayload(t *testing.T) {
	data := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{7}).Read(data)
	var seen atomic.Int64
	const victim = 2000 // the 2000th data packet, well inside the stream
	ab := memlink.Config{Tamper: func(p []byte) {
		if len(p) > 16+100 && p[0]&0x80 == 0 && seen.Add(1) == victim {
			p[16+50] ^= 0x10
		}
	}}
	a, b := memlink.Pair(ab, memlink.Config{})
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type res struct {
		c   *udt.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := udt.Rendezvous(ctx, b, a.LocalAddr(), nil); ch <- res{c, err} }()
	ca, err := udt.Rendezvous(ctx, a, b.LocalAddr(), nil)
	rb := <-ch
	if err != nil || rb.err != nil {
		t.Fatalf("rendezvous: %v %v", err, rb.err)
	}
	defer ca.Abort()
	defer rb.c.Abort()
	sa, sb := punch.NewSecret(), punch.NewSecret()
	type sres struct {
		c   *stream.SecureConn
		err error
	}
	sch := make(chan sres, 1)
	go func() {
		c, err := stream.Secure(rb.c, false, stream.Keys{Own: sb, Peer: sa, HavePeer: true})
		sch <- sres{c, err}
	}()
	secA, err := stream.Secure(ca, true, stream.Keys{Own: sa, Peer: sb, HavePeer: true})
	sr := <-sch
	if err != nil || sr.err != nil {
		t.Fatalf("secure: %v %v", err, sr.err)
	}
	go stream.Send(secA, bytes.NewReader(data), 0)
	var out bytes.Buffer
	n, err := stream.Receive(&out, sr.c)
	if !errors.Is(err, stream.ErrAuth) {
		t.Fatalf("Receive = %d, %v; want ErrAuth (tampered packet %d seen: %v)", n, err, victim, seen.Load() >= victim)
	}
	if out.Len() >= len(data) || !bytes.Equal(out.Bytes(), data[:out.Len()]) {
		t.Fatalf("wrote %d bytes, not a strict prefix of the data", out.Len())
	}
	// The damaged packet carried bytes near offset victim*1456: nothing
	// from its record on may have been written.
	if damaged := (victim - 10) * 1456; out.Len() > damaged {
		t.Fatalf("wrote %d bytes, past the damaged packet near %d", out.Len(), damaged)
	}
	if code := exitCode(&options{mode: "recv"}, n, err); code != exitAuth {
		t.Fatalf("exit status %d for %v, want %d", code, err, exitAuth)
	}
	t.Logf("stopped after %d authenticated bytes with %v", out.Len(), err)
}
