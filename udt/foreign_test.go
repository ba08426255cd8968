package udt

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/internal/memlink"
	"github.com/p2pcat/p2pcat/udt/internal/seqno"
	"github.com/p2pcat/p2pcat/udt/internal/wire"
)

// foreignAddr is a third party on the in-memory link: neither endpoint.
var foreignAddr = netip.MustParseAddrPort("127.0.0.1:40099")

// foreignISN is the initial sequence number of both directions in these
// tests, so that injected packets can carry plausible sequence numbers.
const foreignISN = 1000

// idSniffer is a memlink Filter that passes everything and remembers the
// destination socket ID of the packets a direction carries, i.e. the
// receiving conn's ID once it is connected.
type idSniffer struct{ id atomic.Uint32 }

func (s *idSniffer) filter(p []byte) bool {
	if id := wire.DstID(p); id != 0 {
		s.id.Store(id)
	}
	return true
}

// wellFormed returns one of every kind of well-formed UDT packet addressed
// to socket dst, with plausible sequence numbers around isn..isn+span.
func wellFormed(rng *rand.Rand, dst uint32, isn int32, span int, dst0 bool) [][]byte {
	seq := func() int32 { return seqno.Add(isn, rng.IntN(span)) }
	var out [][]byte
	// Data packets, full size and short.
	for _, n := range []int{1456, 1 + rng.IntN(1456)} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		h := wire.DataHeader{Seq: seq(), Position: wire.PosSolo, MsgNo: 1 + rng.Uint32N(1000), DstID: dst}
		out = append(out, wire.AppendData(nil, &h, payload))
	}
	// Full, short and light ACKs.
	for _, f := range []int{6, 4, 1} {
		a := wire.ACK{Ack: seq(), RTT: 1000, RTTVar: 100, Avail: 8000, RecvRate: 10000, Capacity: 100000, Fields: f}
		info := uint32(0)
		if f != 1 {
			info = rng.Uint32N(1 << 20)
		}
		b := wire.AppendControlHeader(nil, &wire.ControlHeader{Type: wire.TypeACK, Info: info, DstID: dst})
		out = append(out, a.Append(b))
	}
	// NAK with a single loss and a range.
	b := wire.AppendControlHeader(nil, &wire.ControlHeader{Type: wire.TypeNAK, DstID: dst})
	first := seq()
	b = wire.AppendLoss(b, first, first)
	first = seq()
	out = append(out, wire.AppendLoss(b, first, seqno.Add(first, 10)))
	// Empty-bodied types.
	for _, typ := range []wire.Type{wire.TypeShutdown, wire.TypeKeepAlive, wire.TypeACK2, wire.TypeCongestion, wire.TypePeerError} {
		out = append(out, wire.AppendEmpty(nil, typ, rng.Uint32N(1<<20), dst))
	}
	// Drop request and a user-defined packet.
	b = wire.AppendControlHeader(nil, &wire.ControlHeader{Type: wire.TypeDropReq, Info: 1, DstID: dst})
	out = append(out, (&wire.DropReq{First: seq(), Last: seq()}).Append(b))
	out = append(out, append(wire.AppendControlHeader(nil, &wire.ControlHeader{Type: wire.TypeUser, SubType: 7, DstID: dst}), 1, 2, 3, 4))
	// Handshakes of every request type, to the socket and (for a
	// rendezvous peer) to ID 0.
	for _, req := range []int32{wire.ReqRendezvous, wire.ReqResponse, wire.ReqAgreement, wire.ReqRegular, wire.ReqRejected} {
		hs := wire.Handshake{Version: 4, SockType: wire.SockStream, ISN: seq(), MSS: 1500, FlightFlag: 8192, ReqType: req, SocketID: int32(rng.Uint32N(1<<30)) + 1}
		to := []uint32{dst}
		if dst0 {
			to = append(to, 0)
		}
		for _, d := range to {
			b := wire.AppendControlHeader(nil, &wire.ControlHeader{Type: wire.TypeHandshake, DstID: d})
			out = append(out, hs.Append(b))
		}
	}
	return out
}

// garbage returns a random datagram of 0..1500 bytes.
func garbage(rng *rand.Rand) []byte {
	p := make([]byte, rng.IntN(1501))
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

// TestForeignDatagrams injects, during a live 64 MiB transfer, random
// garbage and well-formed UDT packets (data with the right destination ID
// and plausible sequence numbers, ACKs, NAKs, shutdowns, keep-alives,
// handshakes...) from a third address into both ends. The engine must drop
// and count every one (Stats.Foreign counts per PacketConn: a rendezvous
// conn's own, the listener's for an accepted conn) and the stream must
// stay byte-exact and end with io.EOF only after the last byte.
func TestForeignDatagrams(t *testing.T) {
	for _, listen := range []bool{false, true} {
		name := "rendezvous"
		if listen {
			name = "listen"
		}
		t.Run(name, func(t *testing.T) { testForeign(t, listen) })
	}
}

func testForeign(t *testing.T, listen bool) {
	base := goroutineBaseline()
	var toB, toA idSniffer
	pa, pb := memlink.Pair(memlink.Config{Filter: toB.filter}, memlink.Config{Filter: toA.filter})
	defer closeLink(pa, pb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := func() *Config { return &Config{ISN: foreignISN, Linger: 30 * time.Second} }
	var (
		a, b *Conn
		l    *Listener
		err  error
	)
	if listen {
		a, b, l, err = connectListen(ctx, pa, pb, cfg(), cfg())
	} else {
		a, b, err = connectRendezvous(ctx, pa, pb, cfg(), cfg())
	}
	if err != nil {
		t.Fatal(err)
	}
	// Both IDs are known once each side has sent its first packet after
	// the handshake.
	for deadline := time.Now().Add(5 * time.Second); toA.id.Load() == 0 || toB.id.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("socket IDs not seen on the link: a %d b %d", toA.id.Load(), toB.id.Load())
		}
		time.Sleep(time.Millisecond)
	}
	idA, idB := toA.id.Load(), toB.id.Load()
	t.Logf("socket IDs: a %d, b %d", idA, idB)

	data := testData(bigSize())
	span := len(data)/1456 + 1

	// Injector: every millisecond one garbage datagram and one of each
	// well-formed kind into each end, until the transfer is over.
	var kinds atomic.Int64
	rng := rand.New(rand.NewPCG(1, 2))
	stopInjecting := startInjector(func() {
		for _, end := range []struct {
			c   *memlink.Conn
			dst uint32
		}{{pa, idA}, {pb, idB}} {
			end.c.Inject(garbage(rng), foreignAddr)
			pk := wellFormed(rng, end.dst, foreignISN, span, !listen || end.c == pa)
			kinds.Store(int64(len(pk)))
			for _, p := range pk {
				end.c.Inject(p, foreignAddr)
			}
		}
	})
	defer stopInjecting()

	// Writer: 1 MiB at a time with pauses (about 320 ms in all, whatever
	// the size), so that injection meets both a busy and an idle sender.
	start := time.Now()
	werr := make(chan error, 1)
	go func() { werr <- writePaced(a, data) }()
	buf := make([]byte, len(data))
	var got atomic.Int64
	rdone := make(chan error, 1)
	go func() { rdone <- readFull(b, buf, &got) }()
	var readErr error
	select {
	case readErr = <-rdone:
	case <-time.After(120 * time.Second):
		t.Errorf("transfer not finished after 120 s: %d of %d bytes; stats a %+v b %+v", got.Load(), len(data), a.Stats(), b.Stats())
		stopInjecting()
		closeLink(pa, pb)
		<-rdone
		<-werr
		a.Close()
		b.Close()
		if l != nil {
			l.Close()
		}
		return
	}
	elapsed := time.Since(start)
	stopInjecting()
	if err := <-werr; err != nil {
		t.Errorf("Write: %v", err)
	}
	if readErr != nil {
		t.Errorf("Read failed after %d of %d bytes: %v", got.Load(), len(data), readErr)
	}
	if !bytes.Equal(buf, data) {
		t.Errorf("stream differs: %s", firstDiff(buf, data))
	}
	t.Logf("%d bytes in %v (%.1f MB/s) with %d kinds of well-formed packets + garbage injected every ms", len(data), elapsed.Round(time.Millisecond), mbps(int64(len(data)), elapsed), kinds.Load())

	// Every injected datagram that reached an endpoint's queue must be
	// counted once the reader has worked through the queue.
	for _, e := range []struct {
		name string
		c    *Conn
		link *memlink.Conn
	}{{"a", a, pa}, {"b", b, pb}} {
		injected := e.link.Stats().Injected
		deadline := time.Now().Add(3 * time.Second)
		for e.c.Stats().Foreign < injected && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		st := e.c.Stats()
		t.Logf("%s: injected %d (link overflow %d), Stats %+v", e.name, injected, e.link.Stats().Overflow, st)
		if st.Foreign < injected {
			t.Errorf("%s: Stats().Foreign = %d, want ≥ %d injected foreign datagrams", e.name, st.Foreign, injected)
		}
		if injected < 1000 {
			t.Errorf("%s: only %d datagrams injected during the transfer; the test proves little", e.name, injected)
		}
	}
	if err := a.Close(); err != nil {
		t.Errorf("writer Close: %v", err)
	}
	var one [1]byte
	if n, err := b.Read(one[:]); n != 0 || err != io.EOF {
		t.Errorf("Read after the writer closed = %d, %v; want 0, io.EOF", n, err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("reader Close: %v", err)
	}
	if l != nil {
		l.Close()
	}
	waitGoroutines(t, base+2, "after Close")
}

// TestPeerAddressGarbage injects, during a transfer, junk that comes from
// the peer's own address: datagrams too short for a header, control
// packets of unknown types, and packets with the right source but no use:
// data for the wrong socket or far outside the window, malformed ACKs and
// NAKs, ACK2s for ACKs never sent, truncated handshakes. The stream must
// stay byte-exact and not end early; the datagrams no socket owns are
// counted as foreign.
func TestPeerAddressGarbage(t *testing.T) {
	base := goroutineBaseline()
	var toB, toA idSniffer
	pa, pb := memlink.Pair(memlink.Config{Filter: toB.filter}, memlink.Config{Filter: toA.filter})
	defer closeLink(pa, pb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := func() *Config { return &Config{ISN: foreignISN, Linger: 30 * time.Second} }
	a, b, err := connectRendezvous(ctx, pa, pb, cfg(), cfg())
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); toA.id.Load() == 0 || toB.id.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("socket IDs not seen on the link")
		}
		time.Sleep(time.Millisecond)
	}
	idA, idB := toA.id.Load(), toB.id.Load()

	data := testData(bigSize())
	var unowned [2]atomic.Uint64 // datagrams no socket owns, per end (a, b)
	rng := rand.New(rand.NewPCG(3, 4))
	stopInjecting := startInjector(func() {
		for i, end := range []struct {
			c    *memlink.Conn
			from netip.AddrPort
			dst  uint32
		}{{pa, memlink.AddrB, idA}, {pb, memlink.AddrA, idB}} {
			pk, n := peerJunk(rng, end.dst)
			for _, p := range pk {
				end.c.Inject(p, end.from)
			}
			unowned[i].Add(uint64(n))
		}
	})
	defer stopInjecting()
	res := oneWayKeepOpen(t, a, b, data, 120*time.Second)
	stopInjecting()
	t.Logf("%d bytes in %v (%.1f MB/s)", res.received, res.elapsed.Round(time.Millisecond), mbps(res.received, res.elapsed))
	for i, e := range []struct {
		name string
		c    *Conn
		link *memlink.Conn
	}{{"a", a, pa}, {"b", b, pb}} {
		want := unowned[i].Load()
		deadline := time.Now().Add(3 * time.Second)
		for e.c.Stats().Foreign < want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		st := e.c.Stats()
		t.Logf("%s: injected %d (%d unowned, link overflow %d), Stats %+v", e.name, e.link.Stats().Injected, want, e.link.Stats().Overflow, st)
		if e.link.Stats().Overflow == 0 && st.Foreign < want {
			t.Errorf("%s: Stats().Foreign = %d, want ≥ %d (short datagrams and wrong socket IDs)", e.name, st.Foreign, want)
		}
		if n := e.link.Stats().Injected; n < 1000 {
			t.Errorf("%s: only %d datagrams injected during the transfer; the test proves little", e.name, n)
		}
	}
	if err := a.Close(); err != nil {
		t.Errorf("writer Close: %v", err)
	}
	var one [1]byte
	if n, err := b.Read(one[:]); n != 0 || err != io.EOF {
		t.Errorf("Read after the writer closed = %d, %v; want 0, io.EOF", n, err)
	}
	b.Close()
	waitGoroutines(t, base+2, "after Close")
}

// peerJunk returns junk for socket dst as if from its peer, and how many of
// the datagrams belong to no socket (too short, or another socket's ID).
func peerJunk(rng *rand.Rand, dst uint32) (out [][]byte, unowned int) {
	// Shorter than a header.
	p := make([]byte, rng.IntN(wire.HeaderLen))
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	out = append(out, p)
	unowned++
	// Data for another socket.
	h := wire.DataHeader{Seq: foreignISN, Position: wire.PosSolo, MsgNo: 1, DstID: dst ^ 0x5a5a}
	out = append(out, wire.AppendData(nil, &h, []byte("not yours")))
	unowned++
	// Control packets of unknown types, with and without bodies.
	for _, typ := range []wire.Type{9, 0x10, 0x1234, 0x7FFE} {
		b := wire.AppendControlHeader(nil, &wire.ControlHeader{Type: typ, Info: rng.Uint32(), DstID: dst})
		for range rng.IntN(3) {
			b = binary.BigEndian.AppendUint32(b, rng.Uint32())
		}
		out = append(out, b)
	}
	// Data far outside the receive window (2^29 ahead and behind).
	for _, off := range []int{1 << 29, -(1 << 29)} {
		h := wire.DataHeader{Seq: seqno.Add(foreignISN, off+rng.IntN(1000)), Position: wire.PosSolo, MsgNo: 1, DstID: dst}
		out = append(out, wire.AppendData(nil, &h, bytes.Repeat([]byte{0xEE}, 1456)))
	}
	// ACKs with bodies too short for any ACK, and ACKs of data far in the
	// future (never sent).
	out = append(out, append(wire.AppendControlHeader(nil, &wire.ControlHeader{Type: wire.TypeACK, Info: 5, DstID: dst}), 1, 2))
	a := wire.ACK{Ack: seqno.Add(foreignISN, 1<<29), RTT: 1, RTTVar: 1, Avail: 2, Fields: 6}
	out = append(out, a.Append(wire.AppendControlHeader(nil, &wire.ControlHeader{Type: wire.TypeACK, Info: 6, DstID: dst})))
	// Malformed NAKs: range start without an end, an end word with the
	// range bit, a reversed range, a loss never sent, a trailing partial
	// word.
	nak := func(words ...uint32) []byte {
		b := wire.AppendControlHeader(nil, &wire.ControlHeader{Type: wire.TypeNAK, DstID: dst})
		for _, w := range words {
			b = binary.BigEndian.AppendUint32(b, w)
		}
		return b
	}
	far := uint32(seqno.Add(foreignISN, 1<<29))
	out = append(out,
		nak(0x80000000|foreignISN),
		nak(0x80000000|foreignISN, 0x80000000|(foreignISN+5)),
		nak(0x80000000|(foreignISN+5), foreignISN),
		nak(far),
		append(nak(far), 0xFF),
	)
	// ACK2s for ACKs never sent.
	out = append(out, wire.AppendEmpty(nil, wire.TypeACK2, rng.Uint32(), dst))
	// Handshakes with truncated bodies.
	b := wire.AppendControlHeader(nil, &wire.ControlHeader{Type: wire.TypeHandshake, DstID: dst})
	out = append(out, append(b, make([]byte, rng.IntN(wire.HandshakeLen))...))
	// Keep-alives.
	out = append(out, wire.AppendEmpty(nil, wire.TypeKeepAlive, 0, dst))
	return out, unowned
}

// writePaced writes data to w 1 MiB at a time, pausing between the
// pieces so that the whole takes at least about 320 ms.
func writePaced(w *Conn, data []byte) error {
	const chunk = 1 << 20
	pause := 320 * time.Millisecond / time.Duration((len(data)+chunk-1)/chunk)
	for off := 0; off < len(data); off += chunk {
		if _, err := w.Write(data[off:min(len(data), off+chunk)]); err != nil {
			return err
		}
		time.Sleep(pause)
	}
	return nil
}

// oneWayKeepOpen transfers data from w to r (paced, see writePaced)
// without closing either, and checks the bytes.
func oneWayKeepOpen(t *testing.T, w, r *Conn, data []byte, timeout time.Duration) transferResult {
	t.Helper()
	start := time.Now()
	werr := make(chan error, 1)
	go func() { werr <- writePaced(w, data) }()
	buf := make([]byte, len(data))
	var got atomic.Int64
	rdone := make(chan error, 1)
	go func() { rdone <- readFull(r, buf, &got) }()
	select {
	case err := <-rdone:
		if err != nil {
			t.Errorf("Read failed after %d of %d bytes: %v", got.Load(), len(data), err)
		}
	case <-time.After(timeout):
		r.SetReadDeadline(time.Now())
		<-rdone
		t.Fatalf("transfer not finished after %v: %d of %d bytes; stats w %+v r %+v", timeout, got.Load(), len(data), w.Stats(), r.Stats())
	}
	elapsed := time.Since(start)
	if err := <-werr; err != nil {
		t.Errorf("Write: %v", err)
	}
	if !bytes.Equal(buf, data) {
		t.Errorf("stream differs: %s", firstDiff(buf, data))
	}
	return transferResult{elapsed: elapsed, received: got.Load()}
}

// startInjector calls inject every millisecond from a goroutine until the
// returned function (idempotent) is called; that function returns once the
// goroutine has stopped.
func startInjector(inject func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
			}
			inject()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}
