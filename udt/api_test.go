package udt

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/internal/memlink"
)

// The net.Conn contract of Conn: end of stream, deadlines, Close from any
// goroutine, a vanished peer, addresses and packet sizes.

// pairOver connects two conns over a fresh memlink pair (rendezvous, or
// Listen/Dial with listen) and closes everything when the test ends.
func pairOver(t *testing.T, ab, ba memlink.Config, listen bool, cfgA, cfgB *Config) (a, b *Conn, pa, pb *memlink.Conn) {
	t.Helper()
	pa, pb = memlink.Pair(ab, ba)
	a, b, l := connectPair(t, pa, pb, listen, cfgA, cfgB)
	t.Cleanup(func() {
		closeLink(pa, pb) // first: makes Close quick whatever the test left behind
		a.Close()
		b.Close()
		if l != nil {
			l.Close()
		}
	})
	return a, b, pa, pb
}

func modes() []struct {
	name   string
	listen bool
} {
	return []struct {
		name   string
		listen bool
	}{{"rendezvous", false}, {"listen", true}}
}

func TestReadAfterPeerClose(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			base := goroutineBaseline()
			a, b, pa, pb := pairOver(t, memlink.Config{}, memlink.Config{}, m.listen, nil, nil)
			msg := []byte("hello, udt")
			if n, err := a.Write(msg); n != len(msg) || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			if err := a.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			b.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(b)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("ReadAll after peer Close = %q, %v; want %q, nil", got, err, msg)
			}
			for i := 0; i < 2; i++ {
				if n, err := b.Read(make([]byte, 10)); n != 0 || err != io.EOF {
					t.Errorf("Read #%d after EOF = %d, %v; want 0, io.EOF", i, n, err)
				}
			}
			if n, err := b.Write([]byte("x")); n != 0 || !errors.Is(err, ErrPeerClosed) {
				t.Errorf("Write after the peer closed = %d, %v; want 0, ErrPeerClosed", n, err)
			}
			if err := b.Close(); err != nil {
				t.Errorf("Close after the peer closed: %v", err)
			}
			closeLink(pa, pb)
			waitGoroutines(t, base, "after Close")
		})
	}
}

func TestOperationsAfterClose(t *testing.T) {
	a, b, _, _ := pairOver(t, memlink.Config{}, memlink.Config{}, false, nil, nil)
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n, err := a.Write([]byte("late")); n != 0 || !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %d, %v; want 0, ErrClosed", n, err)
	}
	if n, err := a.Read(make([]byte, 10)); n != 0 || err == nil || err == io.EOF {
		t.Errorf("Read after own Close = %d, %v; want 0 and an error other than io.EOF", n, err)
	} else if !errors.Is(err, ErrClosed) {
		t.Logf("Read after own Close returns %v (not ErrClosed)", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n, err := a.Read(nil); n != 0 {
		t.Errorf("Read(nil) after Close = %d, %v", n, err)
	}
	if _, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("peer Read after Close: %v, want io.EOF", err)
	}
}

func TestReadDeadline(t *testing.T) {
	a, b, _, _ := pairOver(t, memlink.Config{}, memlink.Config{}, false, nil, nil)

	// A deadline in the past wakes a blocked Read.
	errc := make(chan error, 1)
	go func() {
		_, err := b.Read(make([]byte, 100))
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	b.SetReadDeadline(time.Now().Add(-time.Second))
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("blocked Read after a past deadline: %v, want os.ErrDeadlineExceeded", err)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("deadline error %v is not a net.Error with Timeout()", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read still blocked 2 s after its deadline was set in the past")
	}

	// A future deadline expires while Read waits.
	b.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	start := time.Now()
	_, err := b.Read(make([]byte, 100))
	if took := time.Since(start); !errors.Is(err, os.ErrDeadlineExceeded) || took < 150*time.Millisecond || took > 2*time.Second {
		t.Errorf("Read with a 200 ms deadline: %v after %v", err, took)
	}

	// SetDeadline covers reads too; clearing it makes the conn usable
	// again, and data is not lost by the timeouts.
	b.SetDeadline(time.Now().Add(-time.Second))
	if _, err := b.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read after SetDeadline in the past: %v", err)
	}
	b.SetDeadline(time.Time{})
	msg := []byte("after the deadlines")
	if _, err := a.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, msg) {
		t.Errorf("read after clearing the deadline: %q, %v", got, err)
	}
}

func TestWriteDeadline(t *testing.T) {
	// A small receive window and send buffer, and a reader that does not
	// read: Write blocks once both are full.
	small := &Config{FlowWindow: 32, SendBuffer: 32}
	a, b, _, _ := pairOver(t, memlink.Config{}, memlink.Config{}, false, small, small)
	data := testData(4 << 20)
	a.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	start := time.Now()
	n, err := a.Write(data)
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n >= len(data) {
		t.Fatalf("Write into a full pipe with a deadline = %d, %v", n, err)
	}
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Errorf("Write returned after %v, want about 300 ms", took)
	}
	t.Logf("Write accepted %d bytes before its deadline", n)
	// A deadline in the past fails at once.
	a.SetWriteDeadline(time.Now().Add(-time.Second))
	if m, err := a.Write(data[n:]); m != 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Write after a past deadline = %d, %v", m, err)
	} else {
		n += m
	}
	// What Write accepted arrives, exactly, and the rest can follow.
	a.SetWriteDeadline(time.Time{})
	go func() {
		a.Write(data[n:])
		a.Close()
	}()
	b.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("stream after write timeouts: %d bytes, %v; %s", len(got), err, firstDiff(got, data))
	}
}

// TestDeadlineMoves moves a deadline while a call waits on it, as Read
// and Write do (a wait that returns nil is repeated): a later deadline
// holds the waiter longer, an earlier one releases it sooner, a cleared
// one never; a deadline that fired can be set again; stop releases
// whoever waits.
func TestDeadlineMoves(t *testing.T) {
	var d deadline
	ch := make(chan struct{}, 1)
	var signalled atomic.Bool // set before ch is
	// waitLoop waits as Read does and reports the result and when.
	waitLoop := func() <-chan error {
		res := make(chan error, 1)
		go func() {
			for {
				if err := d.wait(ch); err != nil {
					res <- err
					return
				}
				if signalled.Load() {
					res <- nil
					return
				}
				d.mu.Lock()
				dead := d.dead
				d.mu.Unlock()
				if dead {
					res <- net.ErrClosed
					return
				}
			}
		}()
		return res
	}
	expect := func(what string, res <-chan error, want error, min, max time.Duration, start time.Time) {
		t.Helper()
		select {
		case err := <-res:
			took := time.Since(start)
			if !errors.Is(err, want) && err != want {
				t.Errorf("%s: %v after %v, want %v", what, err, took, want)
			} else if took < min || took > max {
				t.Errorf("%s: returned after %v, want %v to %v", what, took, min, max)
			}
		case <-time.After(max + time.Second):
			t.Fatalf("%s: still waiting after %v", what, max+time.Second)
		}
	}

	start := time.Now()
	d.set(start.Add(50 * time.Millisecond))
	res := waitLoop()
	time.Sleep(10 * time.Millisecond)
	d.set(start.Add(300 * time.Millisecond)) // later
	expect("extended", res, os.ErrDeadlineExceeded, 250*time.Millisecond, 2*time.Second, start)

	// Fired, then set again: waits again.
	start = time.Now()
	d.set(start.Add(time.Hour))
	res = waitLoop()
	time.Sleep(10 * time.Millisecond)
	d.set(start.Add(50 * time.Millisecond)) // earlier
	expect("shortened", res, os.ErrDeadlineExceeded, 40*time.Millisecond, time.Second, start)

	start = time.Now()
	d.set(start.Add(50 * time.Millisecond))
	res = waitLoop()
	time.Sleep(10 * time.Millisecond)
	d.set(time.Time{}) // cleared
	time.Sleep(150 * time.Millisecond)
	signalled.Store(true)
	notify(ch)
	expect("cleared", res, nil, 150*time.Millisecond, 2*time.Second, start)
	signalled.Store(false)

	d.set(time.Now().Add(-time.Second)) // in the past: at once
	if err := d.wait(ch); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("wait past the deadline: %v", err)
	}

	start = time.Now()
	d.set(start.Add(time.Hour))
	res = waitLoop()
	time.Sleep(10 * time.Millisecond)
	d.stop()
	expect("stopped", res, net.ErrClosed, 0, time.Second, start)
}

func TestCloseUnblocksRead(t *testing.T) {
	a, b, _, _ := pairOver(t, memlink.Config{}, memlink.Config{}, false, nil, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := b.Read(make([]byte, 100))
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if err == nil || err == io.EOF {
			t.Errorf("Read blocked during own Close returned %v, want an error", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read still blocked 2 s after Close")
	}
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("peer Read after Close: %v, want io.EOF", err)
	}
}

func TestCloseUnblocksWrite(t *testing.T) {
	small := &Config{FlowWindow: 32, SendBuffer: 32, Linger: 500 * time.Millisecond}
	a, _, _, _ := pairOver(t, memlink.Config{}, memlink.Config{}, false, small, small)
	errc := make(chan error, 1)
	go func() {
		_, err := a.Write(testData(4 << 20)) // the peer never reads
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	cerr := a.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Close with unacknowledged data took %v with Linger 500 ms", took)
	}
	if cerr == nil {
		t.Errorf("Close with data the peer never acknowledged returned nil")
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Errorf("Write blocked during Close returned nil")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Write still blocked 2 s after Close returned")
	}
}

// A peer that vanishes mid-transfer must make Read and Write fail with
// ErrPeerTimeout within PeerTimeout (+2 s), and Close must then be quick.
func TestPeerVanishes(t *testing.T) {
	const peerTimeout = 2 * time.Second
	for _, how := range []string{"silent", "closed"} {
		t.Run(how, func(t *testing.T) {
			base := goroutineBaseline()
			cfg := &Config{PeerTimeout: peerTimeout}
			a, b, pa, pb := pairOver(t, memlink.Config{}, memlink.Config{}, false, cfg, cfg)
			var read atomic.Int64
			werrc := make(chan error, 1)
			rerrc := make(chan error, 1)
			go func() { // a writes for ever
				data := testData(1 << 20)
				for {
					if _, err := a.Write(data); err != nil {
						werrc <- err
						return
					}
				}
			}()
			go func() {
				buf := make([]byte, 1<<16)
				for {
					n, err := b.Read(buf)
					read.Add(int64(n))
					if err != nil {
						rerrc <- err
						return
					}
				}
			}()
			for read.Load() < 8<<20 {
				time.Sleep(time.Millisecond)
			}
			cut := time.Now()
			switch how {
			case "silent": // every packet in both directions is lost from now on
				pa.SetConfig(blackHole)
				pb.SetConfig(blackHole)
			case "closed": // b's socket goes away
				pb.Close()
			}
			limit := peerTimeout + 2*time.Second
			select {
			case err := <-werrc:
				if !errors.Is(err, ErrPeerTimeout) {
					t.Errorf("writer: %v, want ErrPeerTimeout", err)
				}
				t.Logf("writer failed %v after the cut: %v", time.Since(cut).Round(time.Millisecond), err)
			case <-time.After(limit):
				t.Errorf("writer still running %v after the peer vanished (PeerTimeout %v); stats %+v", limit, peerTimeout, a.Stats())
			}
			select {
			case err := <-rerrc:
				switch how {
				case "silent":
					if !errors.Is(err, ErrPeerTimeout) {
						t.Errorf("reader: %v, want ErrPeerTimeout", err)
					}
				case "closed":
					if err == nil || err == io.EOF {
						t.Errorf("reader on a closed socket: %v, want an error", err)
					}
				}
				t.Logf("reader failed %v after the cut: %v", time.Since(cut).Round(time.Millisecond), err)
			case <-time.After(limit):
				t.Errorf("reader still running %v after the cut", limit)
			}
			start := time.Now()
			a.Close()
			b.Close()
			if took := time.Since(start); took > time.Second {
				t.Errorf("Close after the peer timed out took %v", took)
			}
			closeLink(pa, pb)
			waitGoroutines(t, base, "after Close")
		})
	}
}

func TestAddressesAndSizes(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			a, b, pa, pb := pairOver(t, memlink.Config{}, memlink.Config{}, m.listen, nil, nil)
			if a.LocalAddr().String() != pa.LocalAddr().String() || a.RemoteAddr().String() != pb.LocalAddr().String() {
				t.Errorf("a: local %v remote %v", a.LocalAddr(), a.RemoteAddr())
			}
			if b.LocalAddr().String() != pb.LocalAddr().String() || b.RemoteAddr().String() != pa.LocalAddr().String() {
				t.Errorf("b: local %v remote %v", b.LocalAddr(), b.RemoteAddr())
			}
			for _, c := range []*Conn{a, b} {
				if c.PayloadSize() != 1456 || c.Stats().MSS != 1500 {
					t.Errorf("payload %d, MSS %d; want 1456, 1500", c.PayloadSize(), c.Stats().MSS)
				}
			}
		})
	}
}

// Both sides use the smaller MSS, whichever side has it, in both modes; a
// jumbo MSS works end to end.
func TestMSS(t *testing.T) {
	cases := []struct {
		name       string
		mssA, mssB int
		want       int
	}{
		{"a-small", 576, 1500, 576},
		{"b-small", 1500, 1000, 1000},
		{"jumbo", 9000, 9000, 9000},
		{"over-9216", 16000, 16000, 9244}, // clamped: the reader takes 9216-byte datagrams
	}
	for _, m := range modes() {
		for _, tc := range cases {
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				a, b, pa, pb := pairOver(t, memlink.Config{}, memlink.Config{}, m.listen, &Config{MSS: tc.mssA}, &Config{MSS: tc.mssB})
				for _, c := range []*Conn{a, b} {
					if got := c.Stats().MSS; got != tc.want {
						t.Errorf("negotiated MSS %d, want %d", got, tc.want)
					}
				}
				oneWay(t, a, b, testData(4<<20), 60*time.Second, func() { closeLink(pa, pb) })
			})
		}
	}
}

// Writes and reads of every size, including ones that top up a packet
// still waiting to be sent, over a lossy link in both directions at once.
func TestSmallWritesAndReads(t *testing.T) {
	lossy := func(seed int64) memlink.Config {
		return memlink.Config{Loss: 0.02, Duplicate: 0.01, Reorder: 0.01, Seed: seed}
	}
	a, b, _, _ := pairOver(t, lossy(1), lossy(2), false, nil, nil)
	data := testData(2 << 20)
	type res struct {
		got []byte
		err error
	}
	pump := func(w, r *Conn, seed uint64, out chan<- res) {
		rng := rand.New(rand.NewPCG(seed, 1))
		go func() {
			for off := 0; off < len(data); {
				n := min(len(data)-off, 1+rng.IntN(3000))
				if rng.IntN(50) == 0 {
					n = min(len(data)-off, 1)
				}
				if _, err := w.Write(data[off : off+n]); err != nil {
					return
				}
				off += n
			}
		}()
		go func() {
			rng := rand.New(rand.NewPCG(seed, 2))
			got := make([]byte, 0, len(data))
			r.SetReadDeadline(time.Now().Add(60 * time.Second))
			for len(got) < len(data) {
				buf := make([]byte, 1+rng.IntN(2000))
				n, err := r.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					out <- res{got, err}
					return
				}
			}
			out <- res{got, nil}
		}()
	}
	ab, ba := make(chan res, 1), make(chan res, 1)
	start := time.Now()
	pump(a, b, 1, ab)
	pump(b, a, 2, ba)
	for _, x := range []struct {
		name string
		ch   chan res
	}{{"a→b", ab}, {"b→a", ba}} {
		r := <-x.ch
		if r.err != nil || !bytes.Equal(r.got, data) {
			t.Errorf("%s: %d bytes, %v; %s", x.name, len(r.got), r.err, firstDiff(r.got, data))
		}
	}
	t.Logf("2 × %d bytes in small pieces in %v", len(data), time.Since(start).Round(time.Millisecond))
}

// Close waits for the peer to acknowledge what was written; if the peer
// vanishes meanwhile, Close must give up after PeerTimeout, not Linger.
func TestPeerVanishesDuringClose(t *testing.T) {
	const peerTimeout = 2 * time.Second
	cfg := &Config{PeerTimeout: peerTimeout} // Linger stays 180 s
	small := &Config{PeerTimeout: peerTimeout, FlowWindow: 64}
	a, b, pa, pb := pairOver(t, memlink.Config{}, memlink.Config{}, false, cfg, small)
	if _, err := a.Write(testData(4 << 20)); err != nil { // b does not read: most stays queued
		t.Fatal(err)
	}
	pa.SetConfig(blackHole)
	pb.SetConfig(blackHole)
	start := time.Now()
	err := a.Close()
	took := time.Since(start)
	if err == nil {
		t.Errorf("Close with unacknowledged data to a vanished peer returned nil")
	}
	if took > peerTimeout+2*time.Second {
		t.Errorf("Close took %v; want about PeerTimeout (%v)", took, peerTimeout)
	}
	t.Logf("Close returned after %v: %v", took.Round(time.Millisecond), err)
	b.Close()
}
