//go:build linux

package udt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tests of the Linux fast path (recvmmsg/sendmmsg with UDP GSO and GRO)
// over real loopback sockets.

// udpCase is one kind of loopback socket pair.
type udpCase struct {
	name     string
	network  string // of both sockets
	bind     string // address both sockets bind to
	dst      string // IP the sender sends to (the receiver's port)
	wantFrom string // IP the receiver should see as the source
}

var udpCases = []udpCase{
	{"udp4", "udp4", "127.0.0.1:0", "127.0.0.1", "127.0.0.1"},
	{"udp6", "udp6", "[::1]:0", "::1", "::1"},
	{"dualstack", "udp", "[::]:0", "127.0.0.1", "127.0.0.1"}, // AF_INET6 sockets, v4-mapped peers
}

// batchPair is a sender and a receiver, each with its own fast path.
type batchPair struct {
	rxConn, txConn *net.UDPConn
	rx, tx         *mmsgIO
	to             netip.AddrPort // the receiver, as the sender addresses it
	from           netip.AddrPort // the sender, as the receiver should see it
}

func newBatchPair(t testing.TB, c udpCase, gso, gro bool) *batchPair {
	t.Helper()
	listen := func() *net.UDPConn {
		pc, err := net.ListenPacket(c.network, c.bind)
		if err != nil {
			t.Skipf("%s: %v", c.name, err)
		}
		t.Cleanup(func() { pc.Close() })
		uc := pc.(*net.UDPConn)
		_ = uc.SetReadBuffer(4 << 20)
		_ = uc.SetWriteBuffer(4 << 20)
		return uc
	}
	p := &batchPair{rxConn: listen(), txConn: listen()}
	p.rx = newMmsgIO(p.rxConn, false, gro)
	p.tx = newMmsgIO(p.txConn, gso, false)
	if p.rx == nil || p.tx == nil {
		t.Fatal("no fast path on a UDPConn")
	}
	if p.tx.gso != gso || p.rx.gro != gro {
		t.Skipf("kernel without UDP GSO/GRO (gso %v gro %v)", p.tx.gso, p.rx.gro)
	}
	port := func(uc *net.UDPConn) uint16 { return uc.LocalAddr().(*net.UDPAddr).AddrPort().Port() }
	p.to = netip.AddrPortFrom(netip.MustParseAddr(c.dst), port(p.rxConn))
	p.from = netip.AddrPortFrom(netip.MustParseAddr(c.wantFrom), port(p.txConn))
	if err := p.rxConn.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	return p
}

// mixedBatch builds batchSize datagrams the way sendLoop does (views of
// one contiguous store, full-size ones back to back) with a mix of sizes
// and some separately allocated buffers, so that GSO must split runs:
// short datagrams inside runs, at their ends, singletons, and runs broken
// by non-adjacent memory.
func mixedBatch() (bufs [][]byte, sizes []int) {
	store := make([]byte, batchSize*testPkt)
	bufs = make([][]byte, batchSize)
	sizes = make([]int, batchSize)
	for i := range bufs {
		n := testPkt
		switch i {
		case 5:
			n = 600 // ends a run
		case 6, 7:
			n = 100 // short ones, each alone
		case 20:
			n = 16 // a bare header, ending a run
		case 21:
			n = 1 // tiny, alone
		case 63:
			n = 1000
		}
		sizes[i] = n
		bufs[i] = store[i*testPkt:][:n]
		if i == 30 || i == 31 || i == 45 {
			bufs[i] = make([]byte, n) // not adjacent to its neighbours
		}
	}
	return bufs, sizes
}

// readAll reads want datagrams through readBatch, chunk views at a time,
// and checks them against round r of sizes, in order, from p.from.
func (p *batchPair) readAll(t testing.TB, r int, sizes []int, chunk int, dgrams [][]byte, addrs []netip.AddrPort) {
	got := 0
	for got < len(sizes) {
		n, err := p.rx.readBatch(dgrams[:chunk], addrs[:chunk])
		if err != nil {
			t.Fatalf("round %d: readBatch after %d of %d datagrams: %v", r, got, len(sizes), err)
		}
		if n < 1 || n > chunk {
			t.Fatalf("readBatch returned %d views for %d slots", n, chunk)
		}
		for k := 0; k < n; k++ {
			i := got + k
			if i >= len(sizes) {
				t.Fatalf("round %d: more than %d datagrams", r, len(sizes))
			}
			b := dgrams[k]
			if len(b) != sizes[i] {
				t.Fatalf("round %d: datagram %d has %d bytes, want %d", r, i, len(b), sizes[i])
			}
			for j := range b {
				if b[j] != byte(r*31+i*7+j) && !(len(b) >= 8 && j < 8) {
					t.Fatalf("round %d: datagram %d differs at byte %d", r, i, j)
				}
			}
			if len(b) >= 8 && (binary.BigEndian.Uint32(b) != uint32(r) || binary.BigEndian.Uint32(b[4:]) != uint32(i)) {
				t.Fatalf("round %d: datagram %d is round %d datagram %d (reordered?)",
					r, i, binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:]))
			}
			if addrs[k] != p.from {
				t.Fatalf("round %d: datagram %d from %v, want %v", r, i, addrs[k], p.from)
			}
		}
		got += n
	}
}

// TestBatchLoopback sends rounds of mixed-size batches through writeBatch
// and reads them back through readBatch, with GSO and GRO each on and
// off, on IPv4, IPv6 and dual-stack sockets: every datagram arrives once,
// whole, in order, from the sender's address; GSO cuts the number of
// messages, and with both on the receiver gets coalesced messages.
func TestBatchLoopback(t *testing.T) {
	for _, c := range udpCases {
		for _, mode := range []struct{ gso, gro bool }{{true, true}, {true, false}, {false, true}, {false, false}} {
			t.Run(fmt.Sprintf("%s/gso=%v/gro=%v", c.name, mode.gso, mode.gro), func(t *testing.T) {
				p := newBatchPair(t, c, mode.gso, mode.gro)
				bufs, sizes := mixedBatch()
				dgrams := make([][]byte, batchSize)
				addrs := make([]netip.AddrPort, batchSize)
				const rounds = 8
				for r := 0; r < rounds; r++ {
					for i, b := range bufs {
						fill(b, r, i)
					}
					calls := p.tx.wcalls
					n, err := p.tx.writeBatch(bufs, p.to)
					if n != len(bufs) || err != nil {
						t.Fatalf("round %d: writeBatch = %d, %v; want %d, nil", r, n, err, len(bufs))
					}
					if calls := p.tx.wcalls - calls; calls != 1 {
						t.Errorf("round %d: %d sendmmsg calls for one batch, want 1", r, calls)
					}
					// Odd chunk sizes make readBatch stop inside coalesced messages.
					p.readAll(t, r, sizes, []int{batchSize, 7, 1, 13}[r%4], dgrams, addrs)
				}
				if !p.tx.gso && mode.gso {
					t.Errorf("GSO was switched off")
				}
				if mode.gso {
					// Per batch: runs 0-5, 8-20, 22-29, 32-44 and 46-63
					// leave as 5 GSO messages, 6, 7, 21, 30, 31 and 45 alone.
					if want := 5 * rounds; p.tx.wgso != want {
						t.Errorf("%d GSO messages, want %d", p.tx.wgso, want)
					}
				} else if p.tx.wgso != 0 {
					t.Errorf("%d GSO messages without GSO", p.tx.wgso)
				}
				if mode.gso && mode.gro {
					if p.rx.rcoalesced == 0 {
						t.Errorf("no coalesced message received")
					}
					if p.rx.rcalls >= rounds*2 {
						t.Errorf("%d recvmmsg calls for %d rounds", p.rx.rcalls, rounds)
					}
				} else if p.rx.rcoalesced != 0 {
					t.Errorf("%d coalesced messages without GSO and GRO", p.rx.rcoalesced)
				}
				t.Logf("sendmmsg calls %d (GSO messages %d), recvmmsg calls %d (coalesced messages %d) for %d datagrams",
					p.tx.wcalls, p.tx.wgso, p.rx.rcalls, p.rx.rcoalesced, rounds*len(bufs))
			})
		}
	}
}

// TestGSORun checks how writeBatch cuts a batch into GSO messages.
func TestGSORun(t *testing.T) {
	store := make([]byte, batchSize*testPkt)
	view := func(i, n int) []byte { return store[i*testPkt:][:n] }
	full := func(n int) [][]byte {
		b := make([][]byte, n)
		for i := range b {
			b[i] = view(i, testPkt)
		}
		return b
	}
	type run struct{ segs, total int }
	check := func(name string, bufs [][]byte, want ...run) {
		t.Helper()
		var got []run
		for i := 0; i < len(bufs); {
			s, tot := gsoRun(bufs[i:])
			got = append(got, run{s, tot})
			i += s
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: runs %v, want %v", name, got, want)
		}
	}
	// 44 x 1472 = 64768 bytes is the most under gsoMaxBytes.
	check("64 full", full(64), run{44, 44 * testPkt}, run{20, 20 * testPkt})
	check("one", full(1), run{1, testPkt})
	b := full(4)
	b[2] = view(2, 500)
	check("short inside", b, run{3, 2*testPkt + 500}, run{1, testPkt})
	b = full(4)
	b[0] = view(0, 500)
	check("short first", b, run{1, 500}, run{3, 3 * testPkt})
	b = full(3)
	b[1] = make([]byte, testPkt)
	check("not adjacent", b, run{1, testPkt}, run{1, testPkt}, run{1, testPkt})
	b = full(3)
	b[0], b[1] = b[1], b[0]
	check("out of order", b, run{1, testPkt}, run{1, testPkt}, run{1, testPkt})
	// Small datagrams: at most gsoMaxSegments per message.
	small := make([][]byte, 70)
	for i := range small {
		small[i] = store[i*16 : (i+1)*16]
	}
	check("small", small, run{64, 64 * 16}, run{6, 6 * 16})
	// Jumbo datagrams: 7 x 9216 fit, 8 do not.
	big := make([]byte, 10*9216)
	jumbo := make([][]byte, 10)
	for i := range jumbo {
		jumbo[i] = big[i*9216 : (i+1)*9216]
	}
	check("jumbo", jumbo, run{7, 7 * 9216}, run{3, 3 * 9216})
	check("empty", [][]byte{{}, view(0, 10)}, run{1, 0}, run{1, 10})
}

// TestGSOFallback makes the kernel refuse GSO (SO_NO_CHECK: a GSO send
// needs UDP checksums) and checks that writeBatch switches GSO off for
// the socket and sends the same datagrams the plain way, none lost, none
// twice; with the refused message first in its sendmmsg and after others.
func TestGSOFallback(t *testing.T) {
	for _, first := range []bool{true, false} {
		t.Run(fmt.Sprintf("refused-first=%v", first), func(t *testing.T) {
			p := newBatchPair(t, udpCases[0], true, true)
			rc, err := p.txConn.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1)
			}); err != nil || serr != nil {
				t.Skipf("SO_NO_CHECK: %v %v", err, serr)
			}
			bufs, sizes := mixedBatch()
			if !first {
				bufs, sizes = bufs[20:], sizes[20:] // 20 and 21 go alone before the first run
			}
			dgrams := make([][]byte, batchSize)
			addrs := make([]netip.AddrPort, batchSize)
			for r := 0; r < 3; r++ {
				for i, b := range bufs {
					fill(b, r, i)
				}
				n, err := p.tx.writeBatch(bufs, p.to)
				if n != len(bufs) || err != nil {
					t.Fatalf("round %d: writeBatch = %d, %v; want %d, nil", r, n, err, len(bufs))
				}
				if p.tx.gso {
					t.Fatalf("round %d: GSO still on after the kernel refused it", r)
				}
				p.readAll(t, r, sizes, batchSize, dgrams, addrs)
			}
			if p.tx.wgso != 0 {
				t.Errorf("%d GSO messages went out with SO_NO_CHECK", p.tx.wgso)
			}
			// Nothing more (no duplicate) is waiting.
			_ = p.rxConn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if n, err := p.rx.readBatch(dgrams, addrs); !errors.Is(err, unix.EAGAIN) && !isTimeout(err) {
				t.Errorf("after all datagrams: readBatch = %d, %v; want a timeout", n, err)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestReadBatchOversize checks that datagrams the mux must drop come back
// as views it drops (longer than maxDatagram, or empty when cut short),
// and that a coalesced message cut short still yields its whole datagrams.
func TestReadBatchOversize(t *testing.T) {
	for _, gro := range []bool{false, true} {
		t.Run(fmt.Sprintf("gro=%v", gro), func(t *testing.T) {
			p := newBatchPair(t, udpCases[0], false, gro)
			dgrams := make([][]byte, batchSize)
			addrs := make([]netip.AddrPort, batchSize)
			big := make([]byte, 20000)
			for _, b := range [][]byte{big, make([]byte, 100), {}} {
				if _, err := p.txConn.WriteToUDPAddrPort(b, p.to); err != nil {
					t.Fatal(err)
				}
			}
			var lens []int
			for len(lens) < 3 {
				n, err := p.rx.readBatch(dgrams, addrs)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range dgrams[:n] {
					lens = append(lens, len(d))
				}
			}
			if lens[0] != 0 && lens[0] <= maxDatagram {
				t.Errorf("20000-byte datagram read as %d bytes: the mux would take it", lens[0])
			}
			if lens[1] != 100 || lens[2] != 0 || len(lens) != 3 {
				t.Errorf("then %v, want [100 0]", lens[1:])
			}
		})
	}
	t.Run("coalesced-cut", func(t *testing.T) {
		p := newBatchPair(t, udpCases[0], true, true)
		for i := 0; i < p.rx.rvlen; i++ {
			p.rx.riovs[i].SetLen(3000) // room for two whole datagrams of 1472
		}
		bufs, _ := mixedBatch()
		for i, b := range bufs {
			fill(b, 0, i)
		}
		if n, err := p.tx.writeBatch(bufs[:5], p.to); n != 5 || err != nil || p.tx.wgso != 1 {
			t.Fatalf("writeBatch = %d, %v (%d GSO messages); want 5, nil, 1", n, err, p.tx.wgso)
		}
		dgrams := make([][]byte, batchSize)
		addrs := make([]netip.AddrPort, batchSize)
		n, err := p.rx.readBatch(dgrams, addrs)
		if err != nil {
			t.Fatal(err)
		}
		if p.rx.rcoalesced != 1 || n != 3 || len(dgrams[0]) != testPkt || len(dgrams[1]) != testPkt || len(dgrams[2]) != 0 {
			t.Fatalf("read %d views (%d coalesced), want 2 whole datagrams and an empty view", n, p.rx.rcoalesced)
		}
		if binary.BigEndian.Uint32(dgrams[1][4:]) != 1 {
			t.Errorf("second view is datagram %d", binary.BigEndian.Uint32(dgrams[1][4:]))
		}
	})
}

// TestBatchAllocs checks that steady-state writeBatch and readBatch
// allocate nothing, with and without GSO and GRO.
func TestBatchAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("gso+gro=%v", on), func(t *testing.T) {
			p := newBatchPair(t, udpCases[0], on, on)
			bufs, sizes := mixedBatch()
			for i, b := range bufs {
				fill(b, 0, i)
			}
			dgrams := make([][]byte, batchSize)
			addrs := make([]netip.AddrPort, batchSize)
			to := p.to
			round := func() {
				if n, err := p.tx.writeBatch(bufs, to); n != len(bufs) || err != nil {
					panic(fmt.Sprint("writeBatch: ", n, err))
				}
				for got := 0; got < len(sizes); {
					n, err := p.rx.readBatch(dgrams, addrs)
					if err != nil {
						panic(err)
					}
					got += n
				}
			}
			round()
			if a := testing.AllocsPerRun(50, round); a != 0 {
				t.Errorf("%.1f allocations per batch of %d datagrams, want 0", a, len(bufs))
			}
		})
	}
}

// TestWriteBatchConcurrent has several goroutines send batches on one
// socket at once (a listener's connections share theirs): every datagram
// arrives once and intact (run it with -race).
func TestWriteBatchConcurrent(t *testing.T) {
	p := newBatchPair(t, udpCases[0], true, true)
	s := newSocket(p.txConn)
	if _, ok := s.batch.(*mmsgIO); !ok {
		t.Fatal("no fast path on a UDPConn")
	}
	to := endpoint{ap: p.to, addr: net.UDPAddrFromAddrPort(p.to)}
	const writers, rounds = 4, 10
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			store := make([]byte, 16*testPkt)
			bufs := make([][]byte, 16)
			for i := range bufs {
				bufs[i] = store[i*testPkt : (i+1)*testPkt]
			}
			for r := 0; r < rounds; r++ {
				for i, b := range bufs {
					fill(b, w, r*16+i)
				}
				if n, err := s.writeBatch(bufs, &to); n != len(bufs) || err != nil {
					t.Errorf("writeBatch = %d, %v", n, err)
				}
				time.Sleep(time.Millisecond) // stay below the receive buffer
			}
		}()
	}
	seen := make(map[[2]uint32]bool)
	dgrams := make([][]byte, batchSize)
	addrs := make([]netip.AddrPort, batchSize)
	for len(seen) < writers*rounds*16 {
		n, err := p.rx.readBatch(dgrams, addrs)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", len(seen), err)
		}
		for _, b := range dgrams[:n] {
			w, i := binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
			for j := 8; j < len(b); j++ {
				if b[j] != byte(int(w)*31+int(i)*7+j) {
					t.Fatalf("writer %d datagram %d differs at byte %d", w, i, j)
				}
			}
			k := [2]uint32{w, i}
			if seen[k] {
				t.Fatalf("writer %d datagram %d twice", w, i)
			}
			seen[k] = true
		}
	}
	wg.Wait()
}

// TestReleaseGRO checks that a socket hands its PacketConn back with UDP
// GRO off, so that a later reader gets plain datagrams.
func TestReleaseGRO(t *testing.T) {
	p := newBatchPair(t, udpCases[0], true, true)
	gro := func() int {
		rc, err := p.rxConn.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		v := -1
		if err := rc.Control(func(fd uintptr) {
			v, _ = unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO)
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := gro(); v != 1 {
		t.Fatalf("UDP_GRO = %d with the fast path on, want 1", v)
	}
	p.rx.release()
	if v := gro(); v != 0 {
		t.Fatalf("UDP_GRO = %d after release, want 0", v)
	}
}

// With CAP_NET_ADMIN the buffers pass net.core.rmem_max; without it they
// stay where SO_RCVBUF put them.
func TestForceBuffers(t *testing.T) {
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	rc, err := uc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rcvbuf := func() (n int) {
		rc.Control(func(fd uintptr) { n, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
		return n
	}
	const want = 32 << 20
	uc.SetReadBuffer(want)
	capped := rcvbuf()
	forceBuffers(uc, want, want)
	got := rcvbuf()
	if !hasNetAdmin(t) {
		if got != capped {
			t.Fatalf("SO_RCVBUF %d after forceBuffers without CAP_NET_ADMIN, %d before", got, capped)
		}
		t.Skip("no CAP_NET_ADMIN: forcing is refused, as it should be")
	}
	if got < want { // the kernel reports twice what it was given
		t.Fatalf("SO_RCVBUF %d after forcing %d (capped at %d)", got, want, capped)
	}
}

// hasNetAdmin reports whether this process has CAP_NET_ADMIN (bit 12 of
// CapEff in /proc/self/status).
func hasNetAdmin(t *testing.T) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_NET_ADMIN) != 0
		}
	}
	return false
}
