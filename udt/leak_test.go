package udt

import (
	"context"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/p2pcat/p2pcat/internal/memlink"
	"github.com/p2pcat/p2pcat/udt/internal/wire"
)

// Connection setup that fails, and listeners that close, must leave no
// goroutine behind. Every test takes its baseline before the memlink pair
// exists; the pair's two delivery goroutines end when both endpoints close.

// blackHole is a memlink impairment that drops everything.
var blackHole = memlink.Config{Filter: func([]byte) bool { return false }}

func TestRendezvousNoPeerDeadline(t *testing.T) {
	base := goroutineBaseline()
	pa, pb := memlink.Pair(memlink.Config{}, memlink.Config{}) // b never reads
	defer closeLink(pa, pb)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := Rendezvous(ctx, pa, pb.LocalAddr(), nil)
	took := time.Since(start)
	if c != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Rendezvous without a peer = %v, %v; want nil, context.DeadlineExceeded", c, err)
	}
	if took < 600*time.Millisecond || took > 3*time.Second {
		t.Errorf("Rendezvous returned after %v, want about 700 ms", took)
	}
	// The handshakes were sent: the engine was trying.
	if s := pa.Stats(); s.Sent < 2 {
		t.Errorf("only %d handshakes sent in %v", s.Sent, took)
	}
	waitGoroutines(t, base+2, "after a failed Rendezvous")
	closeLink(pa, pb)
	waitGoroutines(t, base, "after closing the link")
}

func TestRendezvousCancel(t *testing.T) {
	base := goroutineBaseline()
	pa, pb := memlink.Pair(blackHole, blackHole)
	defer closeLink(pa, pb)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	c, err := Rendezvous(ctx, pa, pb.LocalAddr(), nil)
	if c != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Rendezvous cancelled = %v, %v; want nil, context.Canceled", c, err)
	}
	closeLink(pa, pb)
	waitGoroutines(t, base, "after a cancelled Rendezvous")
}

func TestDialSilentDeadline(t *testing.T) {
	base := goroutineBaseline()
	pa, pb := memlink.Pair(blackHole, memlink.Config{})
	defer closeLink(pa, pb)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := Dial(ctx, pa, pb.LocalAddr(), nil)
	took := time.Since(start)
	if c != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a silent address = %v, %v; want nil, context.DeadlineExceeded", c, err)
	}
	if took > 3*time.Second {
		t.Errorf("Dial returned after %v, want about 700 ms", took)
	}
	if s := pa.Stats(); s.Filtered < 2 {
		t.Errorf("only %d requests sent in %v", s.Filtered, took)
	}
	waitGoroutines(t, base+2, "after a failed Dial")
	closeLink(pa, pb)
	waitGoroutines(t, base, "after closing the link")
}

// A rendezvous peer instead of a listener: the client's type-1 requests
// must never connect it (§6.2: never send type 1 to a rendezvous socket),
// and both calls must give up at their deadlines.
func TestDialToRendezvousPeerFails(t *testing.T) {
	base := goroutineBaseline()
	pa, pb := memlink.Pair(memlink.Config{}, memlink.Config{})
	defer closeLink(pa, pb)
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		c, err := Rendezvous(ctx, pb, pa.LocalAddr(), nil)
		if c != nil {
			c.Close()
		}
		errc <- err
	}()
	c, err := Dial(ctx, pa, pb.LocalAddr(), nil)
	if c != nil {
		c.Close()
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial to a rendezvous peer: %v, want context.DeadlineExceeded", err)
	}
	if err := <-errc; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Rendezvous with a dialling peer: %v, want context.DeadlineExceeded", err)
	}
	closeLink(pa, pb)
	waitGoroutines(t, base, "after both failed")
}

func TestListenerCloseUnblocksAccept(t *testing.T) {
	base := goroutineBaseline()
	pa, pb := memlink.Pair(memlink.Config{}, memlink.Config{})
	defer closeLink(pa, pb)
	l, err := Listen(pb, nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		c, err := l.Accept(context.Background())
		if c != nil {
			c.Close()
		}
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrListenerClosed) {
			t.Errorf("Accept after Close: %v, want ErrListenerClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still blocked 2 s after the listener closed")
	}
	if c, err := l.Accept(context.Background()); c != nil || !errors.Is(err, ErrListenerClosed) {
		t.Errorf("second Accept after Close = %v, %v", c, err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	waitGoroutines(t, base+2, "after closing the listener")
	closeLink(pa, pb)
	waitGoroutines(t, base, "after closing the link")
}

func TestListenerAcceptContext(t *testing.T) {
	base := goroutineBaseline()
	pa, pb := memlink.Pair(memlink.Config{}, memlink.Config{})
	defer closeLink(pa, pb)
	l, err := Listen(pb, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if c, err := l.Accept(ctx); c != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Accept with nobody dialling = %v, %v; want context.DeadlineExceeded", c, err)
	}
	l.Close()
	closeLink(pa, pb)
	waitGoroutines(t, base, "after closing the listener")
}

// An accepted connection outlives its listener; a connection the
// application never accepted is closed with it, and its client sees the
// end of the stream.
func TestListenerCloseAndChildren(t *testing.T) {
	base := goroutineBaseline()
	pa, pb := memlink.Pair(memlink.Config{}, memlink.Config{})
	defer closeLink(pa, pb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b, l, err := connectListen(ctx, pa, pb, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data := testData(4 << 20)
	oneWay(t, a, b, data, 30*time.Second, func() { closeLink(pa, pb) })
	b.Close()
	waitGoroutines(t, base+2, "after closing the accepted conn and the listener")
	closeLink(pa, pb)
	waitGoroutines(t, base, "after closing the link")
}

func TestListenerCloseUnaccepted(t *testing.T) {
	base := goroutineBaseline()
	pa, pb := memlink.Pair(memlink.Config{}, memlink.Config{})
	defer closeLink(pa, pb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := Listen(pb, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Dial(ctx, pa, pb.LocalAddr(), &Config{PeerTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := l.Close(); err != nil { // closes the unaccepted child
		t.Fatal(err)
	}
	start := time.Now()
	var one [1]byte
	n, err := a.Read(one[:])
	if n != 0 || err != io.EOF {
		t.Errorf("client Read after the listener closed its unaccepted conn = %d, %v; want 0, io.EOF", n, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("client learnt of the close after %v (Shutdown lost?)", took)
	}
	a.Close()
	waitGoroutines(t, base+2, "after closing everything")
	closeLink(pa, pb)
	waitGoroutines(t, base, "after closing the link")
}

// A listener that lives on must not keep the connections it accepted
// after they are closed: each holds two 12 MB packet rings by default.
func TestListenerForgetsClosedChildren(t *testing.T) {
	pa, pb := memlink.Pair(memlink.Config{}, memlink.Config{})
	defer closeLink(pa, pb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b, l, err := connectListen(ctx, pa, pb, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	oneWay(t, a, b, testData(1<<20), 30*time.Second, func() { closeLink(pa, pb) })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wa, wb := weak.Make(a), weak.Make(b)
	a, b = nil, nil
	for i := 0; i < 20 && (wa.Value() != nil || wb.Value() != nil); i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if wa.Value() != nil {
		t.Errorf("the closed dialling conn is still reachable")
	}
	if wb.Value() != nil {
		t.Errorf("the closed accepted conn is still reachable while its listener lives (Listener.children is never pruned)")
	}
	runtime.KeepAlive(l)
}

// A listener that refuses the connection (type 1002 after the cookie
// exchange, §6.1) makes Dial fail at once with ErrRejected.
func TestDialRejected(t *testing.T) {
	base := goroutineBaseline()
	pa, pb := memlink.Pair(memlink.Config{}, memlink.Config{})
	defer closeLink(pa, pb)
	// A fake listener on pb: echo the request with a cookie, then reject.
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pb.ReadFrom(buf)
			if err != nil {
				return
			}
			h, body, err := wire.ParseControl(buf[:n])
			var hs wire.Handshake
			if err != nil || h.Type != wire.TypeHandshake || hs.Parse(body) != nil {
				continue
			}
			reply := hs
			switch hs.ReqType {
			case wire.ReqRegular:
				reply.Cookie = 0x1234
			case wire.ReqResponse:
				reply.ReqType = wire.ReqRejected
			}
			b := wire.AppendControlHeader(nil, &wire.ControlHeader{Type: wire.TypeHandshake, DstID: uint32(hs.SocketID)})
			pb.WriteTo(reply.Append(b), from)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	c, err := Dial(ctx, pa, pb.LocalAddr(), nil)
	if c != nil || !errors.Is(err, ErrRejected) {
		t.Fatalf("Dial to a rejecting listener = %v, %v; want ErrRejected", c, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("rejection took %v", took)
	}
	closeLink(pa, pb)
	waitGoroutines(t, base, "after the rejection")
}

// Rendezvous completes when one side starts well after the other (its
// peer's early handshakes wait in its socket's queue), also when 30 % of
// the handshakes are lost, and the connection then works.
func TestRendezvousLateStart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
		loss  float64
	}{{"500ms", 500 * time.Millisecond, 0}, {"2s", 2 * time.Second, 0}, {"2s-loss30", 2 * time.Second, 0.3}} {
		t.Run(tc.name, func(t *testing.T) {
			base := goroutineBaseline()
			pa, pb := memlink.Pair(memlink.Config{Loss: tc.loss, Seed: 1}, memlink.Config{Loss: tc.loss, Seed: 2})
			defer closeLink(pa, pb)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			type res struct {
				c   *Conn
				err error
			}
			ch := make(chan res, 1)
			go func() {
				time.Sleep(tc.delay)
				c, err := Rendezvous(ctx, pb, pa.LocalAddr(), nil)
				ch <- res{c, err}
			}()
			a, err := Rendezvous(ctx, pa, pb.LocalAddr(), nil)
			r := <-ch
			if err != nil || r.err != nil {
				t.Fatalf("late rendezvous: a %v, b %v", err, r.err)
			}
			// The loss is for the handshake; the transfer runs clean.
			pa.SetConfig(memlink.Config{})
			pb.SetConfig(memlink.Config{})
			oneWay(t, a, r.c, testData(1<<20), 30*time.Second, func() { closeLink(pa, pb) })
			r.c.Close()
			closeLink(pa, pb)
			waitGoroutines(t, base, "after Close")
		})
	}
}

// Connections a listener has finished with — refused for a full backlog,
// or accepted and closed — must not stay in memory while it keeps
// listening: a peer that completes handshakes with fresh socket IDs would
// otherwise grow the listener's memory without bound (two packet rings,
// 24 MB with the default Config, per connection).
func TestListenerMemoryAfterManyConnections(t *testing.T) {
	const n = 20 // more than the accept backlog (16)
	pa, pb := memlink.Pair(memlink.Config{}, memlink.Config{})
	defer closeLink(pa, pb)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	l, err := Listen(pb, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A raw client on pa completes n handshakes with fresh socket IDs.
	buf := make([]byte, 2048)
	exchange := func(hs *wire.Handshake) wire.Handshake {
		b := wire.AppendControlHeader(nil, &wire.ControlHeader{Type: wire.TypeHandshake})
		if _, err := pa.WriteTo(hs.Append(b), pb.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		for {
			pa.SetReadDeadline(time.Now().Add(2 * time.Second))
			k, _, err := pa.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no answer to handshake %+v: %v", hs, err)
			}
			h, body, err := wire.ParseControl(buf[:k])
			var reply wire.Handshake
			if err == nil && h.Type == wire.TypeHandshake && reply.Parse(body) == nil && reply.ReqType == hs.ReqType {
				return reply
			}
		}
	}
	for i := range n {
		hs := wire.Handshake{Version: 4, SockType: wire.SockStream, ISN: 1000, MSS: 1500, FlightFlag: 8192, ReqType: wire.ReqRegular, SocketID: int32(i + 1)}
		hs.Cookie = exchange(&hs).Cookie
		hs.ReqType = wire.ReqResponse
		exchange(&hs)
	}
	// Accept what the backlog holds and close it.
	accepted := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		c, err := l.Accept(ctx)
		cancel()
		if err != nil {
			break
		}
		accepted++
		c.Close() // nothing written: returns at once
	}
	t.Logf("accepted and closed %d of %d connections", accepted, n)
	var after runtime.MemStats
	for range 5 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %.1f MB for %d finished connections", float64(grown)/1e6, n)
	if grown > 50e6 {
		t.Errorf("listener retains %.1f MB after %d connections were closed (about %.1f MB each)", float64(grown)/1e6, n, float64(grown)/1e6/n)
	}
	runtime.KeepAlive(l)
}
