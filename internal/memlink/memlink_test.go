package memlink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// pairT returns a pair that is closed when the test ends.
func pairT(t *testing.T, ab, ba Config) (a, b *Conn) {
	t.Helper()
	a, b = Pair(ab, ba)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func seqPacket(buf []byte, seq uint32) []byte {
	binary.BigEndian.PutUint32(buf, seq)
	return buf
}

// readN reads until n datagrams arrived or a read times out after idle.
func readN(t *testing.T, c *Conn, n int, idle time.Duration) (seqs []uint32) {
	t.Helper()
	buf := make([]byte, 2048)
	for len(seqs) < n {
		c.SetReadDeadline(time.Now().Add(idle))
		k, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			t.Fatalf("read: %v", err)
		}
		if k < 4 {
			t.Fatalf("short datagram %d", k)
		}
		seqs = append(seqs, binary.BigEndian.Uint32(buf))
	}
	c.SetReadDeadline(time.Time{})
	return seqs
}

// inFlightTotal is the number of datagrams written by a that will arrive at
// b's receive queue (delivered or overflowing) once nothing is in flight.
func inFlightTotal(a *Conn) uint64 {
	s := a.Stats()
	return s.Sent - s.Dropped - s.Filtered - s.QueueDrops + s.Duplicated
}

// settle waits until everything a wrote has reached b's receive queue.
func settle(t *testing.T, a, b *Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sb := b.Stats()
		if sb.Delivered-sb.Injected+sb.Overflow == inFlightTotal(a) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("datagrams still in flight: %+v %+v", a.Stats(), sb)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPerfectLinkOrderAndAddresses(t *testing.T) {
	a, b := pairT(t, Config{}, Config{})
	if got := a.LocalAddr().(*net.UDPAddr).AddrPort(); got != AddrA {
		t.Fatalf("a.LocalAddr = %v", got)
	}
	if a.PeerAddrPort() != AddrB || b.PeerAddrPort() != AddrA {
		t.Fatalf("peer addrs %v %v", a.PeerAddrPort(), b.PeerAddrPort())
	}
	const n = 3000
	var wg sync.WaitGroup
	for _, dir := range [][2]*Conn{{a, b}, {b, a}} {
		src, dst := dir[0], dir[1]
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1000)
			for i := range n {
				if _, err := src.WriteTo(seqPacket(buf, uint32(i)), dst.LocalAddr()); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}()
	}
	for _, dir := range [][2]*Conn{{a, b}, {b, a}} {
		src, dst := dir[0], dir[1]
		buf := make([]byte, 2048)
		for i := range n {
			dst.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, from, err := dst.ReadFrom(buf)
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			ua, ok := from.(*net.UDPAddr)
			if !ok || ua.AddrPort() != src.LocalAddrPort() {
				t.Fatalf("from = %#v, want %v", from, src.LocalAddrPort())
			}
			if k != 1000 || binary.BigEndian.Uint32(buf) != uint32(i) {
				t.Fatalf("datagram %d: len %d seq %d", i, k, binary.BigEndian.Uint32(buf))
			}
		}
	}
	wg.Wait()
	s := a.Stats()
	if s.Sent != n || s.Dropped != 0 || s.Received != n || s.Delivered != n {
		t.Fatalf("stats a: %+v", s)
	}
}

func TestTruncationAndCopy(t *testing.T) {
	a, b := pairT(t, Config{}, Config{})
	p := []byte("hello, world")
	a.WriteToUDPAddrPort(p, AddrB)
	p[0] = 'X' // WriteTo must have copied
	buf := make([]byte, 5)
	n, _, err := b.ReadFrom(buf)
	if err != nil || n != 5 || string(buf) != "hello" {
		t.Fatalf("got %d %q %v", n, buf[:n], err)
	}
}

func TestMappedAddressAccepted(t *testing.T) {
	a, b := pairT(t, Config{}, Config{})
	mapped := netip.AddrPortFrom(netip.AddrFrom16(AddrB.Addr().As16()), AddrB.Port())
	if _, err := a.WriteToUDPAddrPort([]byte("x"), mapped); err != nil {
		t.Fatal(err)
	}
	if a.Stats().Misaddressed != 0 || a.Stats().Sent != 1 || b.Stats().Delivered != 1 {
		t.Fatalf("stats %+v %+v", a.Stats(), b.Stats())
	}
}

// lossRun sends n sequence-numbered datagrams and returns which arrived.
func lossRun(t *testing.T, cfg Config, n int) (got []bool, s Stats) {
	cfg.RecvQueue = 2 * n
	a, b := pairT(t, cfg, Config{})
	buf := make([]byte, 100)
	for i := range n {
		a.WriteToUDPAddrPort(seqPacket(buf, uint32(i)), AddrB)
	}
	got = make([]bool, n)
	want := int(inFlightTotal(a))
	seqs := readN(t, b, want, 5*time.Second)
	if len(seqs) != want || b.Stats().Overflow != 0 {
		t.Fatalf("read %d of %d: %+v", len(seqs), want, b.Stats())
	}
	for _, q := range seqs {
		got[q] = true
	}
	return got, a.Stats()
}

func TestLossRateAndDeterminism(t *testing.T) {
	const n = 20000
	got1, s := lossRun(t, Config{Loss: 0.1, Seed: 42}, n)
	if s.Dropped < 1700 || s.Dropped > 2300 {
		t.Fatalf("dropped %d of %d, want ≈ 2000", s.Dropped, n)
	}
	arrived := 0
	for _, ok := range got1 {
		if ok {
			arrived++
		}
	}
	if uint64(arrived) != n-s.Dropped {
		t.Fatalf("arrived %d, want %d", arrived, n-s.Dropped)
	}
	// The fate of the i-th datagram depends only on Seed and i, so shorter
	// runs must agree with the prefix of the first.
	const m = 5000
	got2, _ := lossRun(t, Config{Loss: 0.1, Seed: 42}, m)
	for i := range got2 {
		if got1[i] != got2[i] {
			t.Fatalf("same seed, different fate for datagram %d", i)
		}
	}
	// Other impairments must not change which datagrams are lost.
	got3, _ := lossRun(t, Config{Loss: 0.1, Seed: 42, Duplicate: 0.5, Jitter: time.Millisecond}, m)
	for i := range got3 {
		if got1[i] != got3[i] {
			t.Fatalf("duplication/jitter changed the fate of datagram %d", i)
		}
	}
	got4, _ := lossRun(t, Config{Loss: 0.1, Seed: 43}, m)
	same := 0
	for i := range got4 {
		if got1[i] == got4[i] {
			same++
		}
	}
	if same == m {
		t.Fatal("different seeds gave identical loss patterns")
	}
}

func TestDuplicate(t *testing.T) {
	const n = 5000
	a, b := pairT(t, Config{Duplicate: 0.2, Seed: 1, RecvQueue: 2 * n}, Config{})
	buf := make([]byte, 64)
	for i := range n {
		a.WriteToUDPAddrPort(seqPacket(buf, uint32(i)), AddrB)
	}
	s := a.Stats()
	if s.Duplicated < 800 || s.Duplicated > 1200 {
		t.Fatalf("duplicated %d, want ≈ 1000", s.Duplicated)
	}
	count := make([]int, n)
	seqs := readN(t, b, int(inFlightTotal(a)), 5*time.Second)
	for _, q := range seqs {
		count[q]++
	}
	dups := 0
	for i, c := range count {
		if c < 1 || c > 2 {
			t.Fatalf("datagram %d arrived %d times", i, c)
		}
		dups += c - 1
	}
	if uint64(dups) != s.Duplicated || uint64(len(seqs)) != b.Stats().Delivered {
		t.Fatalf("dups seen %d, counted %d; read %d, delivered %d", dups, s.Duplicated, len(seqs), b.Stats().Delivered)
	}
}

// latencies sends n timestamped datagrams with gap between them and returns
// the one-way latencies in arrival order plus their sequence numbers.
func latencies(t *testing.T, a, b *Conn, n int, gap time.Duration) ([]time.Duration, []uint32) {
	t.Helper()
	start := time.Now()
	go func() {
		buf := make([]byte, 12)
		for i := range n {
			binary.BigEndian.PutUint32(buf, uint32(i))
			binary.BigEndian.PutUint64(buf[4:], uint64(time.Since(start)))
			a.WriteToUDPAddrPort(buf, b.LocalAddrPort())
			if gap > 0 {
				time.Sleep(gap)
			}
		}
	}()
	var lat []time.Duration
	var seqs []uint32
	buf := make([]byte, 64)
	for range n {
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := b.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("read: %v", err)
		}
		lat = append(lat, time.Since(start)-time.Duration(binary.BigEndian.Uint64(buf[4:])))
		seqs = append(seqs, binary.BigEndian.Uint32(buf))
	}
	return lat, seqs
}

func TestDelay(t *testing.T) {
	const delay = 50 * time.Millisecond
	a, b := pairT(t, Config{Delay: delay}, Config{})
	lat, seqs := latencies(t, a, b, 20, time.Millisecond)
	for i, l := range lat {
		if l < delay {
			t.Fatalf("datagram %d latency %v < %v", i, l, delay)
		}
		if l > delay+2*time.Second { // generous: the test machine may be loaded
			t.Fatalf("datagram %d latency %v, far above %v", i, l, delay)
		}
		if seqs[i] != uint32(i) {
			t.Fatalf("delay without jitter reordered: %v", seqs)
		}
	}
}

func TestJitter(t *testing.T) {
	const delay, jitter = 20 * time.Millisecond, 10 * time.Millisecond
	a, b := pairT(t, Config{Delay: delay, Jitter: jitter, Seed: 7}, Config{})
	lat, seqs := latencies(t, a, b, 300, 0)
	lo, hi := lat[0], lat[0]
	for _, l := range lat {
		if l < delay-jitter {
			t.Fatalf("latency %v < %v", l, delay-jitter)
		}
		lo, hi = min(lo, l), max(hi, l)
	}
	// The spread of observed latencies is not checked: on a loaded machine
	// the delivery goroutine may wake late and deliver a burst at once.
	// Inversions are robust because the heap keeps scheduled order.
	inversions := 0
	for i := 1; i < len(seqs); i++ {
		if seqs[i] < seqs[i-1] {
			inversions++
		}
	}
	if inversions == 0 {
		t.Fatal("jitter of ±10ms over a burst caused no reordering")
	}
	t.Logf("latency %v..%v, %d inversions", lo, hi, inversions)
}

// FIFO jitter (the NAT lab's linkemu) delays but never reorders: a
// datagram held back holds back those behind it.
func TestJitterFIFO(t *testing.T) {
	const delay, jitter = 20 * time.Millisecond, 10 * time.Millisecond
	a, b := pairT(t, Config{Delay: delay, Jitter: jitter, FIFO: true, Seed: 7}, Config{})
	lat, seqs := latencies(t, a, b, 300, 0)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] < seqs[i-1] {
			t.Fatalf("datagram %d arrived after %d: FIFO jitter reordered", seqs[i], seqs[i-1])
		}
	}
	for _, l := range lat {
		if l < delay-jitter {
			t.Fatalf("latency %v < %v", l, delay-jitter)
		}
	}
	if len(seqs) != 300 {
		t.Fatalf("%d of 300 datagrams arrived", len(seqs))
	}
}

func TestReorder(t *testing.T) {
	const n = 2000
	// A long hold makes it unlikely that a stalled writer lets a held
	// datagram go before its successor is written.
	a, b := pairT(t, Config{Reorder: 0.3, Seed: 3, ReorderHold: 300 * time.Millisecond}, Config{})
	go func() {
		buf := make([]byte, 32)
		for i := range n {
			a.WriteToUDPAddrPort(seqPacket(buf, uint32(i)), AddrB)
		}
	}()
	seqs := readN(t, b, n, 5*time.Second)
	if len(seqs) != n {
		t.Fatalf("got %d of %d", len(seqs), n)
	}
	seen := make([]bool, n)
	overtaken := 0
	maxSeen := -1
	for _, q := range seqs {
		if seen[q] {
			t.Fatalf("datagram %d twice", q)
		}
		seen[q] = true
		if int(q) < maxSeen {
			overtaken++
		}
		maxSeen = max(maxSeen, int(q))
	}
	r := a.Stats().Reordered
	if r < 500 || r > 700 {
		t.Fatalf("reordered %d, want ≈ 600", r)
	}
	// Every held datagram is overtaken by the next one not held, except
	// possibly a held tail released by ReorderHold.
	if uint64(overtaken) > r || uint64(overtaken) < r-10 {
		t.Fatalf("%d datagrams overtaken, %d held back", overtaken, r)
	}
	t.Logf("reordered %d, overtaken %d", r, overtaken)
}

func TestReorderHoldTimeout(t *testing.T) {
	// A single held datagram with no successor is delivered after ReorderHold.
	a, b := pairT(t, Config{Reorder: 1, ReorderHold: 30 * time.Millisecond}, Config{})
	start := time.Now()
	a.WriteToUDPAddrPort([]byte("late"), AddrB)
	b.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	n, _, err := b.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "late" {
		t.Fatalf("got %q %v", buf[:n], err)
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Fatalf("held datagram arrived after %v", el)
	}
}

func TestRateLimit(t *testing.T) {
	const rate = 10_000_000   // 10 Mbit/s
	const n, size = 500, 1250 // 5 Mbit → 0.5 s
	want := time.Duration(n * size * 8 * int64(time.Second) / rate)
	// Arriving too early is a bug; arriving late may be the machine being
	// busy, so that is retried.
	for attempt := 1; ; attempt++ {
		a, b := pairT(t, Config{Rate: rate, Queue: n}, Config{})
		buf := make([]byte, size)
		start := time.Now()
		for i := range n {
			a.WriteToUDPAddrPort(seqPacket(buf, uint32(i)), AddrB)
		}
		seqs := readN(t, b, n, 5*time.Second)
		el := time.Since(start)
		if len(seqs) != n {
			t.Fatalf("got %d of %d (stats %+v)", len(seqs), n, a.Stats())
		}
		t.Logf("attempt %d: %.2f Mbit/s", attempt, float64(n*size*8)/el.Seconds()/1e6)
		if el < want*8/10 {
			t.Fatalf("%d bits took %v, want %v ± 20%%", n*size*8, el, want)
		}
		if el <= want*12/10 {
			return
		}
		if attempt == 3 {
			t.Fatalf("%d bits took %v, want %v ± 20%%", n*size*8, el, want)
		}
	}
}

func TestRateQueueDropTail(t *testing.T) {
	const n = 100
	// 1250-byte datagrams at 1 Mbit/s take 10 ms each; a burst fills the
	// queue of 10 and (unless the writer stalls for long) the rest is
	// dropped.
	a, b := pairT(t, Config{Rate: 1_000_000, Queue: 10}, Config{})
	buf := make([]byte, 1250)
	for i := range n {
		a.WriteToUDPAddrPort(seqPacket(buf, uint32(i)), AddrB)
	}
	settle(t, a, b)
	seqs := readN(t, b, int(b.Stats().Delivered), time.Second)
	s := a.Stats()
	if uint64(len(seqs))+s.QueueDrops != n {
		t.Fatalf("received %d + queue drops %d != %d", len(seqs), s.QueueDrops, n)
	}
	if len(seqs) < 10 || len(seqs) > 50 {
		t.Fatalf("received %d, want ≈ 10", len(seqs))
	}
	for i, q := range seqs[:10] {
		if q != uint32(i) {
			t.Fatalf("drop-tail should keep the head of the burst, got %v", seqs)
		}
	}
}

func TestRecvQueueOverflow(t *testing.T) {
	a, b := pairT(t, Config{RecvQueue: 16}, Config{})
	for i := range 100 {
		a.WriteToUDPAddrPort(seqPacket(make([]byte, 4), uint32(i)), AddrB)
	}
	s := b.Stats()
	if s.Delivered != 16 || s.Overflow != 84 {
		t.Fatalf("stats %+v", s)
	}
	if got := readN(t, b, 100, 50*time.Millisecond); len(got) != 16 {
		t.Fatalf("read %d", len(got))
	}
}

func TestFilterAndTamper(t *testing.T) {
	var filtered, tampered int // serialised by the link
	a, b := pairT(t, Config{
		Filter: func(p []byte) bool {
			filtered++
			return p[0] != 0xFF
		},
		Tamper: func(p []byte) {
			tampered++
			p[1] ^= 0x01
		},
	}, Config{})
	a.WriteToUDPAddrPort([]byte{0xFF, 0x10}, AddrB)
	a.WriteToUDPAddrPort([]byte{0x01, 0x10}, AddrB)
	buf := make([]byte, 8)
	b.SetReadDeadline(time.Now().Add(time.Second))
	n, _, err := b.ReadFromUDPAddrPort(buf)
	if err != nil || !bytes.Equal(buf[:n], []byte{0x01, 0x11}) {
		t.Fatalf("got %x %v", buf[:n], err)
	}
	if s := a.Stats(); s.Filtered != 1 || filtered != 2 || tampered != 1 {
		t.Fatalf("filtered %d/%d tampered %d", s.Filtered, filtered, tampered)
	}
}

func TestDeadlines(t *testing.T) {
	a, b := pairT(t, Config{}, Config{})
	buf := make([]byte, 16)

	checkTimeout := func(err error) {
		t.Helper()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("err %v is not os.ErrDeadlineExceeded", err)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("err %v is not a timeout net.Error", err)
		}
	}

	// Past deadline: immediate timeout, even with data queued.
	a.WriteToUDPAddrPort([]byte("q"), AddrB)
	b.SetReadDeadline(time.Now().Add(-time.Second))
	_, _, err := b.ReadFrom(buf)
	checkTimeout(err)

	// Future deadline expires.
	b.SetReadDeadline(time.Time{})
	if n, _, err := b.ReadFrom(buf); err != nil || string(buf[:n]) != "q" {
		t.Fatalf("after clearing deadline: %q %v", buf[:n], err)
	}
	start := time.Now()
	b.SetReadDeadline(start.Add(50 * time.Millisecond))
	_, _, err = b.ReadFromUDPAddrPort(buf)
	checkTimeout(err)
	if el := time.Since(start); el < 50*time.Millisecond || el > 5*time.Second {
		t.Fatalf("timed out after %v", el)
	}

	// Extending a pending deadline: the old timer must not fire the read.
	start = time.Now()
	b.SetReadDeadline(start.Add(20 * time.Millisecond))
	b.SetReadDeadline(start.Add(150 * time.Millisecond))
	_, _, err = b.ReadFrom(buf)
	checkTimeout(err)
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("extended deadline fired after %v", el)
	}

	// A past deadline set from another goroutine wakes a blocked reader.
	b.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, _, err := b.ReadFrom(buf)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	b.SetReadDeadline(time.Now().Add(-time.Millisecond))
	select {
	case err := <-errc:
		checkTimeout(err)
	case <-time.After(2 * time.Second):
		t.Fatal("blocked reader not woken by past deadline")
	}

	// Write deadline.
	a.SetWriteDeadline(time.Now().Add(-time.Second))
	_, err = a.WriteTo([]byte("w"), b.LocalAddr())
	checkTimeout(err)
	a.SetDeadline(time.Time{})
	if _, err := a.WriteTo([]byte("w"), b.LocalAddr()); err != nil {
		t.Fatalf("write after clearing deadline: %v", err)
	}
	b.SetDeadline(time.Time{})
	if n, _, err := b.ReadFrom(buf); err != nil || string(buf[:n]) != "w" {
		t.Fatalf("read: %q %v", buf[:n], err)
	}
}

func TestCloseWakesReaders(t *testing.T) {
	a, b := Pair(Config{Delay: 10 * time.Millisecond}, Config{})
	defer b.Close()
	const readers = 4
	errc := make(chan error, readers)
	for range readers {
		go func() {
			_, _, err := a.ReadFrom(make([]byte, 10))
			errc <- err
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for range readers {
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("reader got %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("reader not woken by Close")
		}
	}
	if _, _, err := a.ReadFrom(nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if _, err := a.WriteTo([]byte("x"), b.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if err := a.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
	if err := a.SetReadDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("deadline after close: %v", err)
	}
	// Writing to a closed peer is silently discarded.
	if _, err := b.WriteTo([]byte("x"), a.LocalAddr()); err != nil {
		t.Fatalf("write to closed peer: %v", err)
	}
}

func TestInject(t *testing.T) {
	a, b := pairT(t, Config{Loss: 1}, Config{}) // impairment must not apply
	foreign := netip.MustParseAddrPort("192.0.2.7:9999")
	b.Inject([]byte("spoof"), foreign)
	buf := make([]byte, 16)
	b.SetReadDeadline(time.Now().Add(time.Second))
	n, from, err := b.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "spoof" {
		t.Fatalf("got %q %v", buf[:n], err)
	}
	if ua := from.(*net.UDPAddr); ua.AddrPort() != foreign {
		t.Fatalf("from %v, want %v", ua, foreign)
	}
	if s := b.Stats(); s.Injected != 1 || s.Delivered != 1 {
		t.Fatalf("stats %+v", s)
	}
	_ = a
}

func TestMisaddressed(t *testing.T) {
	a, b := pairT(t, Config{}, Config{})
	other := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40003}
	n, err := a.WriteTo([]byte("lost"), other)
	if n != 4 || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	if got := readN(t, b, 1, 50*time.Millisecond); len(got) != 0 {
		t.Fatal("misaddressed datagram delivered")
	}
	if s := a.Stats(); s.Misaddressed != 1 || s.Sent != 0 {
		t.Fatalf("stats %+v", s)
	}
	if _, err := a.WriteTo([]byte("x"), &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)}); err == nil {
		t.Fatal("non-UDP address accepted")
	}
}

func TestSetConfig(t *testing.T) {
	a, b := pairT(t, Config{}, Config{})
	a.SetConfig(Config{Loss: 1})
	for range 10 {
		a.WriteToUDPAddrPort([]byte("x"), AddrB)
	}
	if s := a.Stats(); s.Dropped != 10 {
		t.Fatalf("stats %+v", s)
	}
	a.SetConfig(Config{})
	a.WriteToUDPAddrPort([]byte("abcd"), AddrB)
	if got := readN(t, b, 10, 50*time.Millisecond); len(got) != 1 || got[0] != binary.BigEndian.Uint32([]byte("abcd")) {
		t.Fatalf("got %d", len(got))
	}
}

func TestConcurrentImpaired(t *testing.T) {
	cfg := Config{Loss: 0.05, Duplicate: 0.05, Reorder: 0.1, Delay: 2 * time.Millisecond,
		Jitter: time.Millisecond, Rate: 200_000_000, Queue: 1000, Seed: 9}
	a, b := pairT(t, cfg, cfg)
	var writers, readers sync.WaitGroup
	for _, c := range []*Conn{a, b} {
		for range 3 {
			writers.Add(1)
			go func() {
				defer writers.Done()
				buf := make([]byte, 500)
				for i := range 2000 {
					c.WriteToUDPAddrPort(seqPacket(buf, uint32(i)), c.PeerAddrPort())
					if i%100 == 0 {
						c.Stats()
					}
				}
			}()
			readers.Add(1)
			go func() {
				defer readers.Done()
				buf := make([]byte, 2048)
				for {
					if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
						if !errors.Is(err, os.ErrDeadlineExceeded) {
							t.Errorf("read: %v", err)
						}
						return
					}
				}
			}()
		}
	}
	writers.Wait()
	settle(t, a, b)
	settle(t, b, a)
	for _, c := range []*Conn{a, b} {
		for deadline := time.Now().Add(10 * time.Second); c.Stats().Received != c.Stats().Delivered; {
			if time.Now().After(deadline) {
				t.Fatalf("readers stuck: %+v", c.Stats())
			}
			time.Sleep(time.Millisecond)
		}
		c.SetReadDeadline(time.Now()) // stop the readers
	}
	readers.Wait()
	for _, c := range []*Conn{a, b} {
		in := c.Stats()
		if in.Delivered+in.Overflow != inFlightTotal(c.peer) {
			t.Fatalf("delivered %d + overflow %d != %d (%+v)", in.Delivered, in.Overflow, inFlightTotal(c.peer), c.peer.Stats())
		}
	}
}

// TestThroughput64MiB pushes 64 MiB in 1472-byte datagrams through a link
// with 10% loss and 50 ms delay, with a concurrent reader.
func TestThroughput64MiB(t *testing.T) {
	const size = 1472
	const n = 64 << 20 / size
	a, b := pairT(t, Config{Loss: 0.1, Delay: 50 * time.Millisecond, Seed: 5}, Config{})
	start := time.Now()
	done := make(chan int)
	go func() {
		buf := make([]byte, 2048)
		got := 0
		for {
			if _, _, err := b.ReadFromUDPAddrPort(buf); err != nil {
				done <- got
				return
			}
			got++
		}
	}()
	buf := make([]byte, size)
	for i := range n {
		a.WriteToUDPAddrPort(seqPacket(buf, uint32(i)), AddrB)
	}
	wrote := time.Since(start)
	settle(t, a, b)
	for b.Stats().Received != b.Stats().Delivered {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.SetReadDeadline(time.Now()) // stop the reader
	got := <-done
	sa, sb := a.Stats(), b.Stats()
	if sa.Sent != n || uint64(got) != sb.Delivered || sb.Delivered+sb.Overflow != n-sa.Dropped {
		t.Fatalf("sent %d got %d: %+v %+v", n, got, sa, sb)
	}
	if el > 15*time.Second {
		t.Fatalf("took %v", el)
	}
	t.Logf("%d datagrams written in %v, all arrived after %v (%.0f MB/s); dropped %d, overflow %d",
		n, wrote, el, float64(got*size)/el.Seconds()/1e6, sa.Dropped, sb.Overflow)
}

func TestZeroAllocSteadyState(t *testing.T) {
	a, b := pairT(t, Config{}, Config{})
	out := make([]byte, 1472)
	in := make([]byte, 2048)
	allocs := testing.AllocsPerRun(1000, func() {
		a.WriteToUDPAddrPort(out, AddrB)
		if _, _, err := b.ReadFromUDPAddrPort(in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per write+read", allocs)
	}
	// With a delay the heap and the delivery goroutine are involved.
	c, d := pairT(t, Config{Delay: time.Millisecond, Jitter: 500 * time.Microsecond}, Config{})
	for range 100 {
		c.WriteToUDPAddrPort(out, AddrB)
	}
	readN(t, d, 100, 50*time.Millisecond)
	allocs = testing.AllocsPerRun(200, func() {
		for range 10 {
			c.WriteToUDPAddrPort(out, AddrB)
		}
		for range 10 {
			if _, _, err := d.ReadFromUDPAddrPort(in); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs > 0.5 {
		t.Fatalf("%v allocations per delayed batch of 10", allocs)
	}
	t.Logf("%.2f allocations per delayed batch of 10", allocs)
}

func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	cfgs := []Config{
		{},
		{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond},
		{Rate: 1_000_000, Queue: 5},
		{Reorder: 1, ReorderHold: time.Hour},
		{Delay: time.Hour},
	}
	for i, cfg := range cfgs {
		a, b := Pair(cfg, cfg)
		for range 20 {
			a.WriteToUDPAddrPort(make([]byte, 500), AddrB)
			b.WriteToUDPAddrPort(make([]byte, 500), AddrA)
		}
		a.SetReadDeadline(time.Now().Add(time.Hour))
		go a.ReadFrom(make([]byte, 10)) // blocked reader, woken by Close
		time.Sleep(5 * time.Millisecond)
		if i%2 == 0 {
			a.Close()
			b.Close()
		} else {
			b.Close()
			a.Close()
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, baseline %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestInFlightSurvivesSenderClose(t *testing.T) {
	a, b := pairT(t, Config{Delay: 30 * time.Millisecond, Reorder: 0.5, Seed: 2}, Config{})
	for i := range 10 {
		a.WriteToUDPAddrPort(seqPacket(make([]byte, 4), uint32(i)), AddrB)
	}
	a.Close()
	if got := readN(t, b, 10, 2*time.Second); len(got) != 10 {
		t.Fatalf("got %d of 10 datagrams in flight when the sender closed", len(got))
	}
}
