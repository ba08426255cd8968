package udt

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/internal/memlink"
)

// Allocations of a running transfer: the whole connection path (Write,
// sendLoop, the socket, the mux's reader, Read, ACKs, ACK2s and the timers)
// should allocate nothing per packet once a connection is going.

// transferChunk is the unit of a transfer: what the writer writes per
// call, and what the benchmark counts as one operation.
const transferChunk = 64 << 10

// transfer is a connected pair with data streaming from w to r without a
// pause: a goroutine writes transferChunk after transferChunk as fast as
// the connection takes them, another reads everything, and a measurement
// is a span of the reader's byte count. (A transfer that stopped at the
// end of each measurement would leave the sender idle behind its last
// packets: if the receiver's socket buffer overflows on that burst,
// nothing later shows the receiver the gap, and only the sender's EXP
// recovers it, packet by packet; see TestTailLoss.)
type transfer struct {
	w, r    *Conn
	data    []byte
	read    atomic.Int64  // bytes read so far
	target  atomic.Int64  // wake move once read reaches it (0: nobody waits)
	reached chan struct{} // capacity 1
	goal    int64         // move's: read reaches it at the end of the current move
	readErr atomic.Value  // why the reader stopped
	wg      sync.WaitGroup
	dog     *time.Timer // aborts a stalled move
	dump    atomic.Value
}

// newUDPTransfer connects a pair over real loopback UDP sockets (the
// recvmmsg/sendmmsg path, with GSO and GRO where the kernel has them).
func newUDPTransfer(tb testing.TB) *transfer {
	return newUDPTransferWith(tb, false, false)
}

// newUDPTransferWith connects a pair over real loopback UDP sockets,
// through Listen and Dial if listen, and on the one-datagram-per-call path
// that other systems and other PacketConns get if plain.
func newUDPTransferWith(tb testing.TB, listen, plain bool) *transfer {
	tb.Helper()
	open := func() net.PacketConn {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			tb.Skip(err)
		}
		if plain {
			return opaqueConn{pc.(*net.UDPConn)}
		}
		return pc
	}
	return newTransfer(tb, open(), open(), listen)
}

// newLinkTransfer connects a pair over an impaired memlink (the
// one-datagram-per-call path, with losses, NAKs and retransmissions).
func newLinkTransfer(tb testing.TB, ab, ba memlink.Config) *transfer {
	tb.Helper()
	pa, pb := memlink.Pair(ab, ba)
	primeLink(tb, pa, pb, ab.RecvQueue+ba.RecvQueue)
	return newTransfer(tb, pa, pb, false)
}

// primeLink fills both receive queues of a memlink pair (of n datagrams
// together) and drains them, so that memlink's free list holds as many
// datagrams as the link can ever hold queued: without delay, rate or
// reordering nothing else is held in flight, and memlink allocates
// nothing more.
func primeLink(tb testing.TB, pa, pb *memlink.Conn, n int) {
	tb.Helper()
	var pkt [testPkt]byte
	for _, p := range [][2]*memlink.Conn{{pa, pb}, {pb, pa}} {
		from, to := p[0], p[1]
		for to.Stats().Overflow == 0 && from.Stats().Sent < uint64(4*n) {
			if _, err := from.WriteToUDPAddrPort(pkt[:], from.PeerAddrPort()); err != nil {
				tb.Fatal(err)
			}
		}
	}
	for _, c := range []*memlink.Conn{pa, pb} {
		for c.Stats().Received < c.Stats().Delivered {
			if _, _, err := c.ReadFromUDPAddrPort(pkt[:]); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if got := pa.Stats().Received + pb.Stats().Received; got < uint64(n) {
		tb.Fatalf("primed memlink's free list with %d datagrams, want %d", got, n)
	}
}

// newTransfer connects a pair over pa and pb (a dials b's listener if
// listen, else rendezvous) and closes everything when the test ends.
func newTransfer(tb testing.TB, pa, pb net.PacketConn, listen bool) *transfer {
	tb.Helper()
	a, b, l := connectPair(tb, pa, pb, listen, nil, nil)
	t := &transfer{w: a, r: b, data: testData(transferChunk), reached: make(chan struct{}, 1)}
	t.dog = time.AfterFunc(time.Hour, func() {
		s, r := &a.snd, &b.rcv
		s.mu.Lock()
		snd := fmt.Sprintf("ack %d next %d end %d, %d lost, EXP count %d", s.ackSeq, s.nextSeq, s.endSeq, s.losses, s.expCount)
		s.mu.Unlock()
		r.mu.Lock()
		rcv := fmt.Sprintf("ack %d max %d, %d missing", r.ackSeq, r.maxSeq, r.losses)
		r.mu.Unlock()
		t.dump.Store(fmt.Sprintf("stalled: writer %+v (%s); reader %+v (%s)", a.Stats(), snd, b.Stats(), rcv))
		a.Abort()
		b.Abort()
	})
	t.dog.Stop()
	t.wg.Add(2)
	go t.write()
	go t.drain()
	tb.Cleanup(func() {
		t.dog.Stop()
		a.Abort()
		b.Abort()
		t.wg.Wait()
		if l != nil {
			l.Close()
		}
		pa.Close()
		pb.Close()
	})
	return t
}

// write writes until the connection fails or is closed.
func (t *transfer) write() {
	defer t.wg.Done()
	for {
		if _, err := t.w.Write(t.data); err != nil {
			return
		}
	}
}

// drain reads until the connection fails or is closed, and wakes move
// when the count reaches its target.
func (t *transfer) drain() {
	defer t.wg.Done()
	buf := make([]byte, 1<<20)
	for {
		n, err := t.r.Read(buf)
		if err != nil {
			t.readErr.Store(err)
			notify(t.reached)
			return
		}
		read := t.read.Add(int64(n))
		if target := t.target.Load(); target > 0 && read >= target && t.target.CompareAndSwap(target, 0) {
			notify(t.reached)
		}
	}
}

// move waits until chunks more chunks of transferChunk bytes have been
// read. One that stalls for a minute fails with both sides' counters.
func (t *transfer) move(tb testing.TB, chunks int) {
	t.goal += int64(chunks) * transferChunk
	t.dog.Reset(time.Minute)
	defer t.dog.Stop()
	select {
	case <-t.reached: // stale
	default:
	}
	t.target.Store(t.goal)
	for t.read.Load() < t.goal {
		if err := t.readErr.Load(); err != nil {
			tb.Fatalf("Read: %v (%v)", err, t.dump.Load())
		}
		<-t.reached
	}
}

// allocCount is the process's allocation count and the writer's data
// packets at one point.
type allocCount struct{ mallocs, packets uint64 }

func (t *transfer) count() allocCount {
	packets := t.w.Stats().PacketsSent // Stats allocates: before ReadMemStats
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return allocCount{ms.Mallocs, packets}
}

// perPacket returns the allocations per data packet between from and the
// end of the measured part (which ReadMemStats first, Stats after, so that
// neither call's own allocations count), and the packets sent.
func (t *transfer) perPacket(from allocCount) (float64, uint64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	packets := t.w.Stats().PacketsSent - from.packets
	if packets == 0 {
		return 0, 0
	}
	return float64(ms.Mallocs-from.mallocs) / float64(packets), packets
}

// transferCases are the connection paths the allocation benchmark and
// test measure.
var transferCases = []struct {
	name string
	new  func(testing.TB) *transfer
}{
	// The fast path of a real UDP socket.
	{"udp", newUDPTransfer},
	// The same through a listener (the accepted side reads).
	{"udp-listen", func(tb testing.TB) *transfer { return newUDPTransferWith(tb, true, false) }},
	// The one-datagram-per-call path of other systems and PacketConns.
	{"udp-plain", func(tb testing.TB) *transfer { return newUDPTransferWith(tb, false, true) }},
	// The same with deadlines set (far off): every Read and Write that
	// blocks waits for its deadline too.
	{"udp-deadline", func(tb testing.TB) *transfer {
		t := newUDPTransfer(tb)
		t.w.SetDeadline(time.Now().Add(time.Hour))
		t.r.SetDeadline(time.Now().Add(time.Hour))
		return t
	}},
	// The one-datagram-per-call path, with 1 % loss each way: NAKs,
	// retransmissions, ACKs that wait on holes. The receive queues are
	// short enough that memlink's free list (4096 packets) never runs
	// dry: memlink then allocates nothing itself.
	{"memlink-loss", func(tb testing.TB) *transfer {
		cfg := memlink.Config{Loss: 0.01, RecvQueue: 1024, Seed: 1}
		ba := cfg
		ba.Seed = 2
		return newLinkTransfer(tb, cfg, ba)
	}},
}

// warmUp is what a transfer moves before measuring, in chunks: 16 MiB,
// past the controller's startup, with every buffer grown.
const warmUp = 256

// BenchmarkTransfer moves 64 KiB per operation from one Conn to another
// and reports allocs/packet, the process-wide allocations over the timed
// part per data packet sent (retransmissions included).
func BenchmarkTransfer(b *testing.B) {
	for _, tc := range transferCases {
		b.Run(tc.name, func(b *testing.B) {
			t := tc.new(b)
			t.move(b, warmUp)
			b.SetBytes(transferChunk)
			b.ReportAllocs()
			from := t.count()
			b.ResetTimer()
			t.move(b, b.N)
			b.StopTimer()
			perPkt, packets := t.perPacket(from)
			b.ReportMetric(perPkt, "allocs/packet")
			b.ReportMetric(float64(packets)/float64(b.N), "packets/op")
		})
	}
}

// TestTransferAllocs moves 64 MiB (16 MiB with -short) after a 16 MiB
// warm-up over each path and checks that the whole process allocates
// (almost) nothing per data packet. The bound, 0.005, is a third of one
// allocation per batch of 64 datagrams (or per 64 KiB Write, 45 packets),
// and at 100,000 packets/s still five allocations per SYN tick: what
// remains (the runtime, the test's own machinery) stays near 0.0005.
func TestTransferAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	size := 64 << 20
	if testing.Short() {
		size = 16 << 20
	}
	for _, tc := range transferCases {
		t.Run(tc.name, func(t *testing.T) {
			tr := tc.new(t)
			tr.move(t, warmUp)
			from := tr.count()
			start := time.Now()
			tr.move(t, size/transferChunk)
			elapsed := time.Since(start)
			perPkt, packets := tr.perPacket(from)
			st := tr.w.Stats()
			t.Logf("%d MiB in %v (%.0f MB/s): %d data packets (%d retransmitted in all), %.4f allocations per packet",
				size>>20, elapsed.Round(time.Millisecond), mbps(int64(size), elapsed), packets, st.PacketsRetransmitted, perPkt)
			if packets == 0 {
				t.Fatal("no data packets sent")
			}
			const bound = 0.005
			if perPkt >= bound {
				t.Errorf("%.4f allocations per data packet, want < %v", perPkt, bound)
			}
		})
	}
}

// TestDeadlineAllocs checks that waiting with a deadline, and moving a
// deadline nobody waits on (SetReadDeadline before each Read), allocate
// nothing.
func TestDeadlineAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	var d deadline
	defer d.stop()
	ch := make(chan struct{}, 1)
	at := time.Now().Add(time.Hour)
	round := func() {
		at = at.Add(time.Millisecond)
		d.set(at)
		notify(ch)
		if err := d.wait(ch); err != nil {
			panic(err)
		}
	}
	round()
	if a := testing.AllocsPerRun(100, round); a != 0 {
		t.Errorf("%.1f allocations per SetDeadline and wait, want 0", a)
	}
}

// TestIdleAllocs checks that an idle connection (SYN ticks, keep-alives
// each way every 500 ms) allocates nothing.
func TestIdleAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	open := func() net.PacketConn {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Skip(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	pa, pb := open(), open()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b, err := connectRendezvous(ctx, pa, pb, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	defer a.Abort()
	time.Sleep(100 * time.Millisecond) // past the handshake's last packets
	// The count is the whole process's: a test before this one may still
	// be winding down (seen once in a full `go test ./...` on a loaded
	// machine: 2). An idle connection that allocates does so in every
	// window, so the least of up to three counts is the connection's.
	var n uint64
	for try := 0; try < 3; try++ {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		time.Sleep(1200 * time.Millisecond)
		runtime.ReadMemStats(&after)
		if m := after.Mallocs - before.Mallocs; try == 0 || m < n {
			n = m
		}
		if n <= 1 {
			break
		}
	}
	sa, sb := a.Stats(), b.Stats()
	if n > 1 {
		t.Errorf("%d allocations in each of three 1.2 s windows of an idle connection (the least), want at most 1", n)
	}
	if sa.PacketsSent != 0 || sb.PacketsSent != 0 {
		t.Errorf("data packets sent on an idle connection: %d, %d", sa.PacketsSent, sb.PacketsSent)
	}
}
