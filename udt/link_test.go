package udt

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/internal/memlink"
	"github.com/p2pcat/p2pcat/udt/internal/seqno"
)

// linkCase is one impaired-link transfer of TestLink.
type linkCase struct {
	name   string
	ab, ba memlink.Config // a→b carries the data, b→a the control packets
	listen bool           // Listen/Accept + Dial instead of Rendezvous
	isn    int32          // Config.ISN for both sides (0 = random)
	bidir  bool           // data in both directions at once
}

// TestLink moves bigSize() bytes (64 MiB by default) of random data over
// an in-memory link with each kind of impairment and checks that the
// stream arrives byte-exact and ends with io.EOF, and that Close leaves no
// goroutine behind. Every case gets 120 s; a case over 60 s is logged as a
// performance problem.
func TestLink(t *testing.T) {
	const wrapISN = seqno.Max - 1000
	cases := []linkCase{
		{name: "clean"},
		{name: "clean-listen", listen: true},
		{
			name: "loss10",
			ab:   memlink.Config{Loss: 0.10, Seed: 1},
			ba:   memlink.Config{Loss: 0.10, Seed: 2},
		},
		{
			name: "reorder",
			ab:   memlink.Config{Reorder: 0.1, Delay: 2 * time.Millisecond, Jitter: 2 * time.Millisecond, Seed: 3},
			ba:   memlink.Config{Reorder: 0.1, Delay: 2 * time.Millisecond, Jitter: 2 * time.Millisecond, Seed: 4},
		},
		{
			name: "dup10",
			ab:   memlink.Config{Duplicate: 0.1, Seed: 5},
			ba:   memlink.Config{Duplicate: 0.1, Seed: 6},
		},
		{
			name: "delay50",
			ab:   memlink.Config{Delay: 50 * time.Millisecond},
			ba:   memlink.Config{Delay: 50 * time.Millisecond},
		},
		{
			name:   "combined-listen",
			listen: true,
			ab:     memlink.Config{Loss: 0.05, Reorder: 0.1, Duplicate: 0.05, Delay: 20 * time.Millisecond, Jitter: 2 * time.Millisecond, Seed: 7},
			ba:     memlink.Config{Loss: 0.05, Reorder: 0.1, Duplicate: 0.05, Delay: 20 * time.Millisecond, Jitter: 2 * time.Millisecond, Seed: 8},
		},
		{name: "wrap", isn: wrapISN},
		{name: "wrap-listen", isn: wrapISN, listen: true},
		{name: "wrap-at-max", isn: seqno.Max},
		{
			// The wrap happens half-way, in steady state, with loss lists
			// and ACKs straddling it (isn set below from the size).
			name: "wrap-lossy",
			isn:  -1,
			ab:   memlink.Config{Loss: 0.01, Reorder: 0.01, Duplicate: 0.01, Delay: time.Millisecond, Seed: 9},
			ba:   memlink.Config{Loss: 0.01, Reorder: 0.01, Duplicate: 0.01, Delay: time.Millisecond, Seed: 10},
		},
		{
			name:  "bidir",
			bidir: true,
			ab:    memlink.Config{Loss: 0.01, Delay: 5 * time.Millisecond, Seed: 11},
			ba:    memlink.Config{Loss: 0.01, Delay: 5 * time.Millisecond, Seed: 12},
		},
	}
	size := bigSize()
	data := testData(size)
	for _, tc := range cases {
		if tc.isn == -1 {
			tc.isn = int32(seqno.Max - size/1456/2)
		}
		t.Run(tc.name, func(t *testing.T) {
			runLinkCase(t, tc, data)
		})
	}
}

func runLinkCase(t *testing.T, tc linkCase, data []byte) {
	const timeout = 120 * time.Second
	base := goroutineBaseline()
	var rec *seqRecorder
	if tc.isn != 0 {
		rec = &seqRecorder{hi: tc.isn, lo: 1 << 20}
		tc.ab.Filter = rec.filter
	}
	pa, pb := memlink.Pair(tc.ab, tc.ba)
	defer closeLink(pa, pb)
	cfg := func() *Config { return &Config{ISN: tc.isn, Linger: timeout} }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	setup := time.Now()
	var (
		a, b *Conn
		l    *Listener
		err  error
	)
	if tc.listen {
		a, b, l, err = connectListen(ctx, pa, pb, cfg(), cfg())
	} else {
		a, b, err = connectRendezvous(ctx, pa, pb, cfg(), cfg())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("connected in %v", time.Since(setup))
	aborted := false
	abort := func() { aborted = true; closeLink(pa, pb) }

	if tc.bidir {
		runBidir(t, a, b, data, timeout, abort)
	} else {
		res := oneWay(t, a, b, data, timeout, abort)
		t.Logf("%d bytes in %v: %.1f MB/s", res.received, res.elapsed.Round(time.Millisecond), mbps(res.received, res.elapsed))
		if res.elapsed > 60*time.Second {
			t.Logf("PERFORMANCE: %s took %v (> 60 s)", tc.name, res.elapsed)
		}
	}
	t.Logf("stats a: %+v", a.Stats())
	t.Logf("stats b: %+v", b.Stats())
	t.Logf("link a→b: %+v", pa.Stats())
	t.Logf("link b→a: %+v", pb.Stats())
	if rec != nil {
		t.Logf("wrap: %d data packets seen a→b, seq ≥ %d: %v, seq < %d: %v", rec.data.Load(), rec.hi, rec.sawHi.Load(), rec.lo, rec.sawLow.Load())
		if !rec.sawHi.Load() || !rec.sawLow.Load() {
			t.Errorf("sequence numbers did not wrap: saw ≥ %d: %v, saw < %d: %v", rec.hi, rec.sawHi.Load(), rec.lo, rec.sawLow.Load())
		}
	}

	// After an abort the PacketConns are gone and Close reports it.
	if err := b.Close(); err != nil && !tc.bidir && !aborted {
		t.Errorf("reader Close: %v", err)
	}
	a.Close() // closed by oneWay or runBidir already; checked there
	if l != nil {
		if err := l.Close(); err != nil {
			t.Errorf("listener Close: %v", err)
		}
	}
	// The link's two delivery goroutines stay until its endpoints close;
	// nothing of the engine may.
	waitGoroutines(t, base+2, "after closing both conns")
	closeLink(pa, pb)
	waitGoroutines(t, base, "after closing the link too")
}

// runBidir sends data both ways at once; each side closes once it has
// written everything and read everything from the other.
func runBidir(t *testing.T, a, b *Conn, data []byte, timeout time.Duration, abort func()) {
	t.Helper()
	type result struct {
		name    string
		elapsed time.Duration
		werr    error
		early   error
		ok      bool
		cerr    error
	}
	run := func(name string, self *Conn, ch chan<- result) {
		start := time.Now()
		buf := make([]byte, len(data))
		werrc := make(chan error, 1)
		go func() {
			_, err := self.Write(data)
			werrc <- err
		}()
		var got atomic.Int64
		early := readFull(self, buf, &got)
		elapsed := time.Since(start)
		werr := <-werrc
		r := result{name: name, elapsed: elapsed, werr: werr, early: early, ok: bytes.Equal(buf, data)}
		r.cerr = self.Close()
		ch <- r
	}
	ch := make(chan result, 2)
	go run("a", a, ch)
	go run("b", b, ch)
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for i := 0; i < 2; i++ {
		select {
		case r := <-ch:
			t.Logf("%s: read %d bytes in %v (%.1f MB/s), close: %v", r.name, len(data), r.elapsed.Round(time.Millisecond), mbps(int64(len(data)), r.elapsed), r.cerr)
			if r.werr != nil {
				t.Errorf("%s: Write: %v", r.name, r.werr)
			}
			if r.early != nil {
				t.Errorf("%s: Read failed early: %v", r.name, r.early)
			}
			if !r.ok {
				t.Errorf("%s: received stream differs", r.name)
			}
		case <-tm.C:
			t.Errorf("bidirectional transfer not finished after %v; stats a %+v b %+v", timeout, a.Stats(), b.Stats())
			abort()
			for ; i < 2; i++ {
				<-ch
			}
			return
		}
	}
}
