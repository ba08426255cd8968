package udt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/internal/memlink"
)

// Shared helpers of the link, foreign-datagram, leak and API tests.

// maxTestData is the size of the shared random test data: the largest
// transfer any test makes in one direction.
const maxTestData = 64 << 20

var (
	testDataOnce sync.Once
	testDataBuf  []byte
)

// testData returns the first n bytes of one fixed pseudo-random buffer,
// generated once per test binary (ChaCha8, fixed seed) and shared. Callers
// must not modify it.
func testData(n int) []byte {
	if n > maxTestData {
		panic("testData: too large")
	}
	testDataOnce.Do(func() {
		testDataBuf = make([]byte, maxTestData)
		rng := rand.NewChaCha8([32]byte{'p', '2', 'p', 'c', 'a', 't', ' ', 'u', 'd', 't'})
		_, _ = rng.Read(testDataBuf)
	})
	return testDataBuf[:n]
}

// bigSize is the transfer size of the long tests: 64 MiB, or 8 MiB in
// -short mode and under the race detector (about 10x slower).
func bigSize() int {
	if testing.Short() || raceEnabled {
		return 8 << 20
	}
	return 64 << 20
}

// goroutineBaseline returns the number of goroutines now, after letting
// goroutines of earlier tests finish.
func goroutineBaseline() int {
	runtime.Gosched()
	return runtime.NumGoroutine()
}

// waitGoroutines waits up to 3 s for the number of goroutines to drop to
// want, and fails the test with a dump of every goroutine if it does not.
func waitGoroutines(t *testing.T, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("%s: %d goroutines still running, want at most %d; engine goroutines:\n%s",
				what, n, want, engineStacks(buf))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// engineStacks keeps the goroutine stacks of a full dump that mention the
// udt or memlink packages (or all of them if none does).
func engineStacks(dump []byte) string {
	var keep []string
	for _, g := range strings.Split(string(dump), "\n\n") {
		if strings.Contains(g, "p2pcat/udt.") || strings.Contains(g, "memlink.") {
			keep = append(keep, g)
		}
	}
	if len(keep) == 0 {
		return string(dump)
	}
	return strings.Join(keep, "\n\n")
}

// connectRendezvous connects two rendezvous sockets over pa and pb, both
// sides connecting concurrently.
func connectRendezvous(ctx context.Context, pa, pb net.PacketConn, cfgA, cfgB *Config) (a, b *Conn, err error) {
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := Rendezvous(ctx, pb, pa.LocalAddr(), cfgB)
		ch <- res{c, err}
	}()
	a, errA := Rendezvous(ctx, pa, pb.LocalAddr(), cfgA)
	r := <-ch
	if errA != nil || r.err != nil {
		if a != nil {
			a.Close()
		}
		if r.c != nil {
			r.c.Close()
		}
		return nil, nil, fmt.Errorf("rendezvous: a: %v, b: %v", errA, r.err)
	}
	return a, r.c, nil
}

// connectListen makes pb a listener and dials it from pa. It returns the
// dialling conn (a), the accepted one (b) and the listener, which the
// caller closes.
func connectListen(ctx context.Context, pa, pb net.PacketConn, cfgA, cfgB *Config) (a, b *Conn, l *Listener, err error) {
	l, err = Listen(pb, cfgB)
	if err != nil {
		return nil, nil, nil, err
	}
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept(ctx)
		ch <- res{c, err}
	}()
	a, errA := Dial(ctx, pa, pb.LocalAddr(), cfgA)
	r := <-ch
	if errA != nil || r.err != nil {
		if a != nil {
			a.Close()
		}
		if r.c != nil {
			r.c.Close()
		}
		l.Close()
		return nil, nil, nil, fmt.Errorf("dial: %v, accept: %v", errA, r.err)
	}
	return a, r.c, l, nil
}

// connectPair connects a over pa to b over pb, within 10 s: a dials b's
// listener if listen (the listener is returned for the caller to close),
// else both meet in rendezvous. On failure it closes pa and pb and fails
// the test.
func connectPair(tb testing.TB, pa, pb net.PacketConn, listen bool, cfgA, cfgB *Config) (a, b *Conn, l *Listener) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if listen {
		a, b, l, err = connectListen(ctx, pa, pb, cfgA, cfgB)
	} else {
		a, b, err = connectRendezvous(ctx, pa, pb, cfgA, cfgB)
	}
	if err != nil {
		pa.Close()
		pb.Close()
		tb.Fatal(err)
	}
	return a, b, l
}

// readAllInto reads from c into buf until buf is full, counting progress in
// *got, then reads once more and returns that read's error (io.EOF after a
// clean shutdown). A read error before buf is full is returned as early.
func readAllInto(c *Conn, buf []byte, got *atomic.Int64) (early, final error) {
	if err := readFull(c, buf, got); err != nil {
		return err, nil
	}
	var one [1]byte
	m, err := c.Read(one[:])
	if m != 0 {
		return nil, fmt.Errorf("read %d bytes beyond the end of the stream", m)
	}
	return nil, err
}

// readFull reads from c until buf is full, counting progress in *got.
func readFull(c *Conn, buf []byte, got *atomic.Int64) error {
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:min(len(buf), n+1<<20)])
		n += m
		got.Store(int64(n))
		if err != nil {
			return err
		}
	}
	return nil
}

// firstDiff describes where two byte slices first differ.
func firstDiff(got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("length %d, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at byte %d (packet %d of payload 1456)", i, i/1456)
		}
	}
	return "equal"
}

// transferResult is what oneWay measured.
type transferResult struct {
	elapsed  time.Duration // first Write until the last byte was read
	received int64
}

// oneWay writes data to w and closes it while r reads everything and the
// end of the stream. It fails the test if the stream is not byte-exact,
// ends early, or does not finish within timeout; on a timeout it calls
// abort (which must make every blocked call return, e.g. by closing the
// PacketConns) before returning.
func oneWay(t *testing.T, w, r *Conn, data []byte, timeout time.Duration, abort func()) transferResult {
	t.Helper()
	var got atomic.Int64
	buf := make([]byte, len(data))
	type wres struct {
		n          int
		werr, cerr error
	}
	wch := make(chan wres, 1)
	rch := make(chan [2]error, 1)
	start := time.Now()
	var readDone atomic.Int64
	go func() {
		n, err := w.Write(data)
		cerr := w.Close()
		wch <- wres{n, err, cerr}
	}()
	go func() {
		early, final := readAllInto(r, buf, &got)
		readDone.Store(int64(time.Since(start)))
		rch <- [2]error{early, final}
	}()
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	var wr *wres
	var rr *[2]error
	for wr == nil || rr == nil {
		select {
		case x := <-wch:
			wr = &x
		case x := <-rch:
			rr = &x
		case <-tm.C:
			t.Errorf("transfer not finished after %v: %d of %d bytes read, writer done %v, reader done %v; stats writer %+v reader %+v",
				timeout, got.Load(), len(data), wr != nil, rr != nil, w.Stats(), r.Stats())
			abort()
			// Everything must unblock now.
			tm.Reset(10 * time.Second)
			for wr == nil || rr == nil {
				select {
				case x := <-wch:
					wr = &x
				case x := <-rch:
					rr = &x
				case <-tm.C:
					t.Fatalf("writer/reader still blocked 10 s after closing the PacketConns")
				}
			}
			return transferResult{elapsed: time.Since(start), received: got.Load()}
		}
	}
	res := transferResult{elapsed: time.Duration(readDone.Load()), received: got.Load()}
	if wr.werr != nil || wr.n != len(data) {
		t.Errorf("Write = %d, %v; want %d, nil", wr.n, wr.werr, len(data))
	}
	if wr.cerr != nil {
		t.Errorf("writer Close: %v", wr.cerr)
	}
	if rr[0] != nil {
		t.Errorf("stream ended early after %d of %d bytes: %v", got.Load(), len(data), rr[0])
	} else if rr[1] != io.EOF {
		if errors.Is(rr[1], ErrPeerTimeout) {
			// Both copies of the Shutdown lost: UDT4 has no retransmission
			// for it (libudt times out the same way).
			t.Logf("all data read but end of stream came as %v instead of io.EOF (Shutdown lost?)", rr[1])
		} else {
			t.Errorf("after all data, Read returned %v, want io.EOF", rr[1])
		}
	}
	if !bytes.Equal(buf, data) {
		t.Errorf("received stream differs from sent: %s", firstDiff(buf, data))
	}
	return res
}

// mbps returns n bytes over d in MB/s (10^6 bytes).
func mbps(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds() / 1e6
}

// seqRecorder is a memlink Filter that passes everything and records
// facts about the data packets' sequence numbers: whether any was at or
// above hi and whether any was below lo.
type seqRecorder struct {
	hi, lo        int32
	sawHi, sawLow atomic.Bool
	data          atomic.Int64
}

func (s *seqRecorder) filter(p []byte) bool {
	if len(p) >= 16 && p[0]&0x80 == 0 {
		seq := int32(uint32(p[0])<<24|uint32(p[1])<<16|uint32(p[2])<<8|uint32(p[3])) & 0x7FFFFFFF
		if seq >= s.hi {
			s.sawHi.Store(true)
		}
		if seq < s.lo {
			s.sawLow.Store(true)
		}
		s.data.Add(1)
	}
	return true
}

// closeLink closes both memlink endpoints.
func closeLink(a, b *memlink.Conn) {
	a.Close()
	b.Close()
}
