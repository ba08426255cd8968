package udt

import (
	"fmt"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/seqno"
	"github.com/p2pcat/p2pcat/udt/internal/wire"
)

// Tests of when the receiver's ACK timer sends a full ACK
// (receiver.appendFullACK without force).

// ackRig is a receiver with a fake clock.
type ackRig struct {
	t   *testing.T
	r   receiver
	isn int32
	now int64
}

const ackRigPayload = 100

func newAckRig(t *testing.T, isn int32) *ackRig {
	a := &ackRig{t: t, isn: isn, now: int64(time.Second)}
	a.r.init(isn, 256, ackRigPayload)
	return a
}

// data delivers packets first..last (stream indexes), full-sized.
func (a *ackRig) data(first, last int) {
	a.t.Helper()
	payload := make([]byte, ackRigPayload)
	for i := first; i <= last; i++ {
		h := wire.DataHeader{Seq: seqno.Add(a.isn, i), Position: wire.PosSolo, MsgNo: 1}
		if !a.r.onData(&h, payload, a.now) {
			a.t.Fatalf("packet %d not taken as new", i)
		}
		a.now += int64(time.Millisecond)
	}
}

// tick runs the ACK timer's full ACK 10 ms later. It returns the ACK sent
// (ok false: none) and its ACK number.
func (a *ackRig) tick() (ack wire.ACK, no int32, ok bool) {
	a.t.Helper()
	a.now += int64(synInterval)
	b := a.r.appendFullACK(nil, 9, a.now, false)
	if len(b) == 0 {
		return ack, 0, false
	}
	h, body, err := wire.ParseControl(b)
	if err != nil || h.Type != wire.TypeACK {
		a.t.Fatalf("appendFullACK built %x: %v, type %v", b, err, h.Type)
	}
	if err := ack.Parse(body); err != nil || ack.Fields != 6 {
		a.t.Fatalf("appendFullACK built a bad ACK body %x: %v", body, err)
	}
	return ack, int32(h.Info), true
}

// wantACK runs the ACK timer and wants a full ACK of packet n (the first
// not received), which it confirms with an ACK2 1 ms later.
func (a *ackRig) wantACK(what string, n int) {
	a.t.Helper()
	ack, no, ok := a.tick()
	if !ok {
		a.t.Errorf("%s: no full ACK, want one of %d", what, n)
		return
	}
	if got := seqno.Off(a.isn, ack.Ack); got != n {
		a.t.Errorf("%s: full ACK of %d, want %d", what, got, n)
	}
	a.now += int64(time.Millisecond)
	a.r.onACK2(no, a.now)
}

func (a *ackRig) wantNone(what string) {
	a.t.Helper()
	if ack, _, ok := a.tick(); ok {
		a.t.Errorf("%s: full ACK of %d, want none", what, seqno.Off(a.isn, ack.Ack))
	}
}

// TestFullACKWhileACKPointWaits: once ACK2 confirmed an ACK point, libudt
// sends no full ACK while it stays put. While data keeps arriving behind a
// hole, that would leave the sender without receive-rate and RTT news for
// as long as the repair takes; so every SYN with new data since the last
// full ACK sends one, unchanged. With nothing new, the libudt rule holds:
// none. (The code before this one sent none while the ACK point waited.)
func TestFullACKWhileACKPointWaits(t *testing.T) {
	for _, isn := range []int32{5000, seqno.Max - 10} {
		t.Run(fmt.Sprint("isn ", isn), func(t *testing.T) { testFullACKWhileACKPointWaits(t, isn) })
	}
}

func testFullACKWhileACKPointWaits(t *testing.T, isn int32) {
	a := newAckRig(t, isn)
	a.data(0, 19)
	a.wantACK("20 packets", 20)
	a.wantNone("nothing new, ACK confirmed")

	// Packet 20 is lost; 21..30 arrive behind the hole.
	a.data(21, 30)
	a.wantACK("new data behind a hole", 20)
	a.wantNone("nothing new since")
	a.wantNone("still nothing new")
	a.data(31, 31)
	a.wantACK("one more packet behind the hole", 20)

	// Over several SYNs, each with data: an ACK each time, with the
	// receive rate once 16 packets and 20 ms lie behind.
	rated := false
	for i := 0; i < 5; i++ {
		a.data(32+4*i, 35+4*i)
		ack, no, ok := a.tick()
		if !ok {
			t.Errorf("SYN %d with data behind the hole: no full ACK, want one of 20", i)
			continue
		}
		if got := seqno.Off(isn, ack.Ack); got != 20 {
			t.Errorf("SYN %d with data behind the hole: full ACK of %d, want 20", i, got)
		}
		rated = rated || ack.RecvRate > 0
		a.r.onACK2(no, a.now)
	}
	if !rated {
		t.Errorf("no unchanged ACK carried a receive rate")
	}

	// The repair arrives: the ACK moves.
	a.data(20, 20)
	a.wantACK("hole repaired", 52)
	a.wantNone("all confirmed, nothing new")
}

// TestFullACKUnconfirmed: an ACK that no ACK2 confirmed is repeated after
// RTT+4·RTTVar even with nothing new (the libudt rule), and at once on the
// next SYN when new data arrived, even if it does not move the ACK point.
func TestFullACKUnconfirmed(t *testing.T) {
	a := newAckRig(t, 1)
	a.data(0, 9)
	if _, _, ok := a.tick(); !ok {
		t.Fatal("no first ACK")
	}
	// Not confirmed; packet 10 lost, 11 arrives.
	a.data(11, 11)
	if ack, _, ok := a.tick(); !ok {
		t.Errorf("unconfirmed ACK, new data behind a hole: no full ACK, want one of 10")
	} else if got := seqno.Off(1, ack.Ack); got != 10 {
		t.Errorf("unconfirmed ACK, new data behind a hole: full ACK of %d, want 10", got)
	}
	// Nothing new: quiet until RTT+4·RTTVar (the initial 100+4·50 ms)
	// has passed since the last one.
	wait := a.r.rtt + 4*a.r.rttVar
	last := a.r.lastAckTime
	for a.now+int64(synInterval)-last < wait {
		if _, _, ok := a.tick(); ok {
			t.Fatalf("%v after an unconfirmed ACK, nothing new: ACK repeated before RTT+4·RTTVar (%v)", time.Duration(a.now-last), time.Duration(wait))
		}
	}
	if _, _, ok := a.tick(); !ok {
		t.Errorf("unconfirmed ACK not repeated %v later", time.Duration(a.now-last))
	}
}

// TestNoACKBeforeData: like libudt, no full or light ACK goes out before
// the first data packet arrives, however long the connection idles. A
// libudt rendezvous peer that is still connecting (our keep-alive lost)
// takes any ACK for the end of its connect call and returns from it
// unconnected; an ACK 10 ms after we connected did exactly that through a
// lossy relay.
func TestNoACKBeforeData(t *testing.T) {
	for _, isn := range []int32{0, 5000, seqno.Max} {
		a := newAckRig(t, isn)
		for i := 0; i < 50; i++ {
			a.wantNone(fmt.Sprintf("isn %d, idle SYN %d", isn, i))
		}
		if b := a.r.appendLightACK(nil, 9); len(b) != 0 {
			t.Errorf("isn %d: a light ACK before any data", isn)
		}
		a.data(0, 0)
		a.wantACK(fmt.Sprintf("isn %d, first packet", isn), 1)
	}
}
