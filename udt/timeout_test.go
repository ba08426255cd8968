package udt

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/udt/cc"
	"github.com/p2pcat/p2pcat/udt/internal/seqno"
	"github.com/p2pcat/p2pcat/udt/internal/wire"
)

// Tests of the sender's retransmission timeout (EXP as it concerns data):
// the first expiration after progress resends only the likely losses, the
// second in a row everything in flight (go-back-N), and none resends
// anything while losses are queued already.

// timeoutRecorder is a cc.Controller that never limits the sender and
// records what OnTimeout was told.
type timeoutRecorder struct {
	timeouts []int // Snapshot.Timeouts of each OnTimeout call
	inFlight []int // Snapshot.InFlight of each
}

func (c *timeoutRecorder) OnACK(int32, *cc.Snapshot)             {}
func (c *timeoutRecorder) OnLoss(int32, *cc.Snapshot)            {}
func (c *timeoutRecorder) OnSent(int32, int, bool, *cc.Snapshot) {}
func (c *timeoutRecorder) OnCongestionWarning()                  {}
func (c *timeoutRecorder) PacketInterval() time.Duration         { return 0 }
func (c *timeoutRecorder) Window() float64                       { return 1 << 20 }
func (c *timeoutRecorder) OnTimeout(s *cc.Snapshot) {
	c.timeouts = append(c.timeouts, s.Timeouts)
	c.inFlight = append(c.inFlight, s.InFlight)
}

// expRig is a connection reduced to what the EXP timer touches: a sender
// with a fake clock, driven through Conn.expiredEXP as the timer goroutine
// drives it.
type expRig struct {
	t   *testing.T
	c   *Conn
	s   *sender
	ctl *timeoutRecorder
	now int64
	isn int32
}

const expRigPayload = 16

func newExpRig(t *testing.T, isn int32, size int) *expRig {
	r := &expRig{t: t, c: &Conn{}, ctl: &timeoutRecorder{}, now: int64(time.Second), isn: isn}
	r.c.cfg = Config{PeerTimeout: time.Hour}
	r.s = &r.c.snd
	r.s.now = func() int64 { return r.now }
	r.s.init(isn, size, expRigPayload, 1<<20, 1500, r.ctl)
	r.s.peerReady = true
	return r
}

// seq is the n-th packet of the stream.
func (r *expRig) seq(n int) int32 { return seqno.Add(r.isn, n) }

// send writes n packets and sends them (sendLoop without the socket).
func (r *expRig) send(n int) {
	r.t.Helper()
	if got := r.s.fill(make([]byte, n*expRigPayload)); got != n*expRigPayload {
		r.t.Fatalf("fill took %d bytes, want %d", got, n*expRigPayload)
	}
	for i := 0; i < n; i++ {
		if _, re, ok := r.s.next(); !ok || re {
			r.t.Fatalf("next: ok %v retransmit %v, want a new packet", ok, re)
		}
	}
	r.s.lastProgress = r.now
}

// ack delivers a full ACK up to (not including) packet n.
func (r *expRig) ack(n int) {
	r.s.onACK(&wire.ACK{Ack: r.seq(n), RTT: 50_000, RTTVar: 5_000, Avail: 1 << 20, RecvRate: 400, Capacity: 1000, Fields: 6})
}

// nak reports packets first..last (stream indexes) lost and sends their
// retransmissions.
func (r *expRig) nak(first, last int) {
	r.t.Helper()
	if !r.s.onNAK(wire.AppendLoss(nil, r.seq(first), r.seq(last))) {
		r.t.Fatalf("NAK %d..%d refused", first, last)
	}
	if got := r.drain(); len(got) != last-first+1 {
		r.t.Fatalf("NAK %d..%d: retransmitted %v", first, last, got)
	}
}

// drain sends every queued retransmission and returns their stream
// indexes.
func (r *expRig) drain() []int {
	var out []int
	for r.s.losses > 0 {
		seq, re, ok := r.s.next()
		if !ok || !re {
			r.t.Fatalf("next with %d losses queued: seq %d retransmit %v ok %v", r.s.losses, seq, re, ok)
		}
		out = append(out, seqno.Off(r.isn, seq))
	}
	return out
}

// expire moves the clock past the current retransmission timeout and runs
// the EXP timer once.
func (r *expRig) expire() {
	r.now = r.s.lastProgress + r.s.rto() + int64(time.Millisecond)
	r.c.lastHeard.Store(r.now)
	if !r.c.expiredEXP(r.now) {
		r.t.Fatalf("expiredEXP ended the connection")
	}
}

func span(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// TestEXPResendsLikelyLossesFirst: 40 packets in flight, the ACK at 10,
// 15 and 20..22 NAKed and retransmitted; the peer then falls silent. The
// first expiration resends 10 (the ACK point), 15, 20, 21, 22 (NAKed
// before: their retransmission may be lost too) and 39 (the newest: a
// tail-loss probe, so that a receiver that saw nothing after a lost tail
// sees a gap and NAKs it), not the 24 others; the
// controller hears Timeouts 1. The second in a row resends all 30
// (go-back-N), Timeouts 2. The code before this one resent all 30 at the
// first expiration already.
func TestEXPResendsLikelyLossesFirst(t *testing.T) {
	for _, isn := range []int32{1000, seqno.Max - 20} {
		t.Run(fmt.Sprintf("isn %d", isn), func(t *testing.T) {
			r := newExpRig(t, isn, 64)
			r.send(40)
			r.now += int64(50 * time.Millisecond)
			r.ack(10)
			r.nak(15, 15)
			r.nak(20, 22)

			r.expire()
			if got, want := r.drain(), []int{10, 15, 20, 21, 22, 39}; !slices.Equal(got, want) {
				t.Errorf("first expiration resent %v, want %v", got, want)
			}
			if got, want := r.ctl.timeouts, []int{1}; !slices.Equal(got, want) {
				t.Errorf("after the first expiration OnTimeout saw Timeouts %v, want %v", got, want)
			}

			r.expire()
			if got, want := r.drain(), span(10, 40); !slices.Equal(got, want) {
				t.Errorf("second expiration in a row resent %v, want all of %v", got, want)
			}
			if got, want := r.ctl.timeouts, []int{1, 2}; !slices.Equal(got, want) {
				t.Errorf("after the second expiration OnTimeout saw Timeouts %v, want %v", got, want)
			}
			if got := r.ctl.inFlight; got[0] != 30 || got[1] != 30 {
				t.Errorf("OnTimeout saw InFlight %v, want 30 both times", got)
			}

			// Progress starts over: the next expiration is a first one
			// again, and what the ACK covered is no longer NAKed.
			r.now += int64(10 * time.Millisecond)
			r.ack(21)
			r.expire()
			if got, want := r.drain(), []int{21, 22, 39}; !slices.Equal(got, want) {
				t.Errorf("first expiration after new progress resent %v, want %v", got, want)
			}
			if got, want := r.ctl.timeouts, []int{1, 2, 1}; !slices.Equal(got, want) {
				t.Errorf("OnTimeout saw Timeouts %v, want %v", got, want)
			}
		})
	}
}

// TestEXPNothingWhileLossesQueued: with retransmissions still queued an
// expiration adds none and does not tell the controller.
func TestEXPNothingWhileLossesQueued(t *testing.T) {
	r := newExpRig(t, 77, 64)
	r.send(20)
	r.ack(2)
	if !r.s.onNAK(wire.AppendLoss(nil, r.seq(5), r.seq(6))) {
		t.Fatal("NAK refused")
	}
	r.expire()
	if r.s.losses != 2 || len(r.ctl.timeouts) != 0 {
		t.Errorf("expiration with 2 losses queued: %d queued, OnTimeout called %d times; want 2, 0", r.s.losses, len(r.ctl.timeouts))
	}
	if got, want := r.drain(), []int{5, 6}; !slices.Equal(got, want) {
		t.Errorf("resent %v, want %v", got, want)
	}
	// Now the queue is empty and this is the second expiration in a row.
	r.expire()
	if got, want := r.drain(), span(2, 20); !slices.Equal(got, want) {
		t.Errorf("second expiration resent %v, want %v", got, want)
	}
}

// TestOnTimeoutCount: onTimeout reports how many packets it queued, 0 when
// nothing is in flight or losses are queued already, and a NAK flag does
// not outlive the packet: a slot reused by a later packet is not taken for
// NAKed.
func TestOnTimeoutCount(t *testing.T) {
	r := newExpRig(t, seqno.Max-5, 16)
	if got := r.s.onTimeout(); got != 0 {
		t.Errorf("onTimeout with nothing in flight = %d, want 0", got)
	}
	r.send(12)
	r.ack(1)
	r.nak(3, 4)
	r.nak(9, 9)
	if got := r.s.onTimeout(); got != 5 {
		t.Errorf("first onTimeout = %d, want 5 (the ACK point, 3 NAKed, the newest)", got)
	}
	if got := r.s.onTimeout(); got != 0 {
		t.Errorf("onTimeout with losses queued = %d, want 0", got)
	}
	if got, want := r.drain(), []int{1, 3, 4, 9, 11}; !slices.Equal(got, want) {
		t.Errorf("resent %v, want %v", got, want)
	}
	r.s.expCount++
	if got := r.s.onTimeout(); got != 11 {
		t.Errorf("second onTimeout = %d, want 11 (all in flight)", got)
	}
	r.drain()

	// Everything acknowledged; 12 more packets reuse the 16 slots, among
	// them those of 3, 4 and 9.
	r.ack(12)
	r.send(12)
	if got := r.s.onTimeout(); got != 2 {
		t.Errorf("first onTimeout after reusing NAKed slots = %d, want 2 (the ACK point and the newest only)", got)
	}
	if got, want := r.drain(), []int{12, 23}; !slices.Equal(got, want) {
		t.Errorf("resent %v, want %v", got, want)
	}
}
