// Package memlink owns an in-memory, impairable datagram link: two connected
// endpoints that each implement net.PacketConn, with configurable loss,
// duplication, reordering, delay, jitter, rate limiting (drop-tail queue),
// tampering, filtering, and injection of datagrams from foreign addresses.
//
// It is test infrastructure for udt/ and stream/ and is never used by the
// p2pcat binary. Nothing here touches a real network: the addresses it
// reports (127.0.0.1:40001 and 127.0.0.1:40002 by default) are labels only.
//
// Model of one direction a→b, in the order applied to each datagram written
// by a to b's address:
//
//  1. the datagram is copied; Filter may drop it;
//  2. Loss may drop it;
//  3. with Rate > 0 it enters a drop-tail queue of Queue datagrams and is
//     serialised at Rate bits per second (payload bits, no header overhead);
//  4. it then travels for Delay ± Jitter (uniform; jitter may reorder);
//  5. Tamper may modify it;
//  6. Reorder may hold it back until the next datagram written by a that is
//     not itself held back has been scheduled, so that it is delivered right
//     after that one (or after ReorderHold if no such datagram is written);
//  7. Duplicate may schedule a second copy at the same time (the copy is
//     not held back by Reorder);
//  8. on arrival it is put in b's bounded receive queue (RecvQueue
//     datagrams); if that is full it is dropped and counted as Overflow.
//
// Decisions (loss, duplication, reordering, jitter) are drawn from a PRNG
// seeded with Config.Seed; four values are drawn for every datagram written
// to the peer, so the fate of the n-th datagram written by an endpoint
// depends only on Seed and n (when one goroutine writes). Timing is real
// time, so drops by the Rate queue and Overflow depend on scheduling.
//
// Each direction has one delivery goroutine driven by a time-ordered heap;
// datagrams that are due immediately (no delay, nothing pending) are
// delivered synchronously by WriteTo. Both goroutines exit once both
// endpoints are closed (a direction's goroutine exits as soon as its
// receiver is closed, or its sender is closed and nothing is in flight).
package memlink

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Default values used when the corresponding Config field is zero.
const (
	DefaultQueue       = 100                   // Rate queue length in datagrams
	DefaultRecvQueue   = 8192                  // receive queue length in datagrams
	DefaultReorderHold = 10 * time.Millisecond // max wait of a reordered datagram
	// MaxDatagram is the largest datagram WriteTo accepts (as for UDP over IPv4).
	MaxDatagram = 65507
)

// Default endpoint addresses used by Pair. They are never put on a network.
var (
	AddrA = netip.MustParseAddrPort("127.0.0.1:40001")
	AddrB = netip.MustParseAddrPort("127.0.0.1:40002")
)

// Config describes the impairment of one direction of a link. The zero
// value is a perfect link (no loss, no delay, unlimited rate).
type Config struct {
	Loss      float64       // probability 0..1 that a datagram is dropped
	Duplicate float64       // probability that a datagram is delivered twice
	Reorder   float64       // probability that a datagram is held back and delivered after the next one not held back
	Delay     time.Duration // one-way delay
	Jitter    time.Duration // uniform +/- jitter added to Delay (total delay never below 0); may reorder unless FIFO
	FIFO      bool          // jitter keeps write order, as the NAT lab's linkemu does: a datagram never arrives before an earlier one
	Rate      int64         // bits per second, 0 = unlimited; serialisation with a drop-tail queue
	Queue     int           // queue length in datagrams for Rate (0 = DefaultQueue)
	Seed      int64         // PRNG seed (deterministic decisions for a given seed)

	// Filter, if set, is called with the (copied) datagram before any other
	// impairment; returning false drops it (counted as Filtered).
	// Filter and Tamper are called with the direction's lock held, so calls
	// for one direction are serialised; they must not call methods of
	// either Conn.
	Filter func(p []byte) bool
	// Tamper, if set, may modify the (copied) datagram before delivery. It
	// is called only for datagrams that survived Filter, Loss and the Rate
	// queue, once per datagram (a duplicate is a copy of the tampered bytes).
	Tamper func(p []byte)

	// ReorderHold bounds how long a datagram chosen by Reorder waits for a
	// later datagram to overtake it (0 = DefaultReorderHold).
	ReorderHold time.Duration
	// RecvQueue is the capacity, in datagrams, of the receiving endpoint's
	// queue (0 = DefaultRecvQueue). Only used by Pair/PairAddrs.
	RecvQueue int
}

// Stats are the counters of one endpoint. Sent, Dropped, Duplicated,
// Filtered, QueueDrops, Reordered and Misaddressed describe datagrams
// written by this endpoint; Delivered, Overflow, Injected and Received
// describe datagrams arriving at this endpoint.
type Stats struct {
	Sent         uint64 // datagrams written to the peer's address
	Delivered    uint64 // datagrams placed in this endpoint's receive queue (incl. duplicates and injected)
	Dropped      uint64 // datagrams written by this endpoint and lost by Config.Loss
	Duplicated   uint64 // extra copies made of datagrams written by this endpoint
	Overflow     uint64 // arriving datagrams dropped because this endpoint's receive queue was full
	Misaddressed uint64 // datagrams written by this endpoint to an address other than the peer's (discarded)
	Filtered     uint64 // datagrams written by this endpoint dropped by Config.Filter
	QueueDrops   uint64 // datagrams written by this endpoint dropped by the Rate drop-tail queue
	Reordered    uint64 // datagrams written by this endpoint held back by Config.Reorder
	Injected     uint64 // datagrams given to Inject on this endpoint and queued
	Received     uint64 // datagrams returned by ReadFrom / ReadFromUDPAddrPort
}

type counters struct {
	sent, delivered, dropped, duplicated, overflow, misaddressed atomic.Uint64
	filtered, queueDrops, reordered, injected, received          atomic.Uint64
}

// packet is one datagram in flight or queued.
type packet struct {
	buf  []byte
	from netip.AddrPort
	at   time.Duration // delivery time, relative to link.base
	seq  uint64        // tie-breaker keeping write order among equal times
}

// freeList recycles packets of one Pair. Unlike sync.Pool it never drops
// items at random, so steady-state allocation is zero even under -race.
type freeList struct {
	mu   sync.Mutex
	pkts []*packet
}

const maxFree = 4096

func (f *freeList) get(n int) *packet {
	f.mu.Lock()
	var pk *packet
	if k := len(f.pkts); k > 0 {
		pk = f.pkts[k-1]
		f.pkts[k-1] = nil
		f.pkts = f.pkts[:k-1]
	}
	f.mu.Unlock()
	if pk == nil {
		pk = new(packet)
	}
	if cap(pk.buf) < n {
		c := 2048
		for c < n {
			c *= 2
		}
		pk.buf = make([]byte, c)
	}
	pk.buf = pk.buf[:n]
	return pk
}

func (f *freeList) put(pk *packet) {
	f.mu.Lock()
	if len(f.pkts) < maxFree {
		f.pkts = append(f.pkts, pk)
	}
	f.mu.Unlock()
}

// Conn is one endpoint of a Pair. It implements net.PacketConn.
type Conn struct {
	local netip.AddrPort
	peer  *Conn
	out   *link // direction from this endpoint to the peer
	free  *freeList

	rx     chan *packet
	done   chan struct{}
	closed atomic.Bool

	rd, wd deadline
	stats  counters
}

var _ net.PacketConn = (*Conn)(nil)

// Pair returns two connected endpoints at AddrA and AddrB; ab impairs a→b,
// ba impairs b→a.
func Pair(ab, ba Config) (a, b *Conn) {
	return PairAddrs(AddrA, AddrB, ab, ba)
}

// PairAddrs is like Pair with explicit endpoint addresses (which must
// differ; IPv4-mapped IPv6 addresses are unmapped).
func PairAddrs(aAddr, bAddr netip.AddrPort, ab, ba Config) (a, b *Conn) {
	aAddr, bAddr = unmap(aAddr), unmap(bAddr)
	if aAddr == bAddr {
		panic("memlink: endpoints must have different addresses")
	}
	free := new(freeList)
	base := time.Now()
	a = newConn(aAddr, free, ba.RecvQueue)
	b = newConn(bAddr, free, ab.RecvQueue)
	a.peer, b.peer = b, a
	a.out = newLink(a, b, ab, base)
	b.out = newLink(b, a, ba, base)
	go a.out.run()
	go b.out.run()
	return a, b
}

func newConn(addr netip.AddrPort, free *freeList, rq int) *Conn {
	if rq <= 0 {
		rq = DefaultRecvQueue
	}
	c := &Conn{
		local: addr,
		free:  free,
		rx:    make(chan *packet, rq),
		done:  make(chan struct{}),
	}
	c.rd.init()
	c.wd.init()
	return c
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (c *Conn) opErr(op string, addr net.Addr, err error) error {
	e := &net.OpError{Op: op, Net: "udp", Source: net.UDPAddrFromAddrPort(c.local), Err: err}
	if addr != nil {
		e.Addr = addr
	}
	return e
}

// ReadFrom reads one datagram into p and returns its size and source
// (a *net.UDPAddr). A datagram larger than p is truncated silently, as
// with a UDP socket.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromUDPAddrPort(p)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// ReadFromUDPAddrPort is like ReadFrom but returns the source as a
// netip.AddrPort; it does not allocate in steady state.
func (c *Conn) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	if c.closed.Load() {
		return 0, netip.AddrPort{}, c.opErr("read", nil, net.ErrClosed)
	}
	dl := c.rd.wait()
	select {
	case <-dl:
		return 0, netip.AddrPort{}, c.opErr("read", nil, os.ErrDeadlineExceeded)
	default:
	}
	select {
	case pk := <-c.rx:
		n := copy(p, pk.buf)
		from := pk.from
		c.free.put(pk)
		c.stats.received.Add(1)
		return n, from, nil
	case <-c.done:
		return 0, netip.AddrPort{}, c.opErr("read", nil, net.ErrClosed)
	case <-dl:
		return 0, netip.AddrPort{}, c.opErr("read", nil, os.ErrDeadlineExceeded)
	}
}

// WriteTo copies p and sends it to addr, which must be a *net.UDPAddr.
// Unless addr equals the peer's address the datagram is silently
// discarded (counted as Misaddressed). WriteTo never blocks for long.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua == nil {
		return 0, c.opErr("write", addr, errors.New("memlink: address must be a non-nil *net.UDPAddr"))
	}
	return c.WriteToUDPAddrPort(p, ua.AddrPort())
}

// WriteToUDPAddrPort is like WriteTo with a netip.AddrPort destination.
func (c *Conn) WriteToUDPAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	if c.closed.Load() {
		return 0, c.opErr("write", nil, net.ErrClosed)
	}
	if c.wd.expired.Load() {
		return 0, c.opErr("write", nil, os.ErrDeadlineExceeded)
	}
	if len(p) > MaxDatagram {
		return 0, c.opErr("write", nil, errors.New("memlink: message too long"))
	}
	if unmap(addr) != c.peer.local {
		c.stats.misaddressed.Add(1)
		return len(p), nil
	}
	c.stats.sent.Add(1)
	c.out.send(p)
	return len(p), nil
}

// Inject delivers a copy of p to c as if it came from `from`, bypassing all
// impairment (but not the receive queue bound). It is a no-op once c is
// closed.
func (c *Conn) Inject(p []byte, from netip.AddrPort) {
	if c.closed.Load() {
		return
	}
	pk := c.free.get(len(p))
	copy(pk.buf, p)
	pk.from = from
	if c.enqueue(pk) {
		c.stats.injected.Add(1)
	}
}

// enqueue puts pk in c's receive queue without blocking; it reports
// whether pk was queued (otherwise it has been recycled).
func (c *Conn) enqueue(pk *packet) bool {
	if c.closed.Load() {
		c.free.put(pk)
		return false
	}
	select {
	case c.rx <- pk:
		c.stats.delivered.Add(1)
		return true
	default:
		c.stats.overflow.Add(1)
		c.free.put(pk)
		return false
	}
}

// Close closes the endpoint: blocked and further reads and writes return
// net.ErrClosed, queued datagrams are discarded. A second Close returns an
// error wrapping net.ErrClosed.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return c.opErr("close", nil, net.ErrClosed)
	}
	close(c.done)
	c.rd.stop()
	c.wd.stop()
	for {
		select {
		case pk := <-c.rx:
			c.free.put(pk)
		default:
			return nil
		}
	}
}

// LocalAddr returns the endpoint's address as a *net.UDPAddr.
func (c *Conn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.local) }

// LocalAddrPort returns the endpoint's address.
func (c *Conn) LocalAddrPort() netip.AddrPort { return c.local }

// PeerAddrPort returns the address of the other endpoint.
func (c *Conn) PeerAddrPort() netip.AddrPort { return c.peer.local }

// SetDeadline sets both the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opErr("set", nil, net.ErrClosed)
	}
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

// SetReadDeadline sets the read deadline, as for net.UDPConn: a time in the
// past wakes blocked readers; a zero time removes the deadline. Reads that
// time out return an error satisfying errors.Is(err, os.ErrDeadlineExceeded)
// whose Timeout method reports true.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opErr("set", nil, net.ErrClosed)
	}
	c.rd.set(t)
	return nil
}

// SetWriteDeadline sets the write deadline. Writes never block, so it only
// makes writes fail once it has passed.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opErr("set", nil, net.ErrClosed)
	}
	c.wd.set(t)
	return nil
}

// SetReadBuffer and SetWriteBuffer exist for code that tunes socket
// buffers through an interface assertion; they do nothing.
func (c *Conn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer does nothing; see SetReadBuffer.
func (c *Conn) SetWriteBuffer(int) error { return nil }

// SetConfig replaces the impairment of datagrams written by c from now on
// (datagrams already in flight are unaffected). The PRNG is reseeded from
// cfg.Seed; cfg.RecvQueue is ignored.
func (c *Conn) SetConfig(cfg Config) {
	c.out.mu.Lock()
	c.out.setConfig(cfg)
	c.out.mu.Unlock()
}

// Stats returns a snapshot of c's counters.
func (c *Conn) Stats() Stats {
	s := &c.stats
	return Stats{
		Sent:         s.sent.Load(),
		Delivered:    s.delivered.Load(),
		Dropped:      s.dropped.Load(),
		Duplicated:   s.duplicated.Load(),
		Overflow:     s.overflow.Load(),
		Misaddressed: s.misaddressed.Load(),
		Filtered:     s.filtered.Load(),
		QueueDrops:   s.queueDrops.Load(),
		Reordered:    s.reordered.Load(),
		Injected:     s.injected.Load(),
		Received:     s.received.Load(),
	}
}

// deadline is a resettable deadline whose expiry closes a channel. The
// timer is reused across set calls; a stale timer callback is harmless
// because the callback re-checks the current deadline.
type deadline struct {
	mu      sync.Mutex
	t       time.Time   // current deadline, zero = none
	timer   *time.Timer // lazily created, reused
	cancel  chan struct{}
	expired atomic.Bool // cancel is closed
}

func (d *deadline) init() { d.cancel = make(chan struct{}) }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.t = t
	if d.timer != nil {
		d.timer.Stop()
	}
	if t.IsZero() {
		d.renew()
		return
	}
	if dur := time.Until(t); dur > 0 {
		d.renew()
		if d.timer == nil {
			d.timer = time.AfterFunc(dur, d.fire)
		} else {
			d.timer.Reset(dur)
		}
		return
	}
	d.expire()
}

func (d *deadline) renew() {
	if d.expired.Load() {
		d.cancel = make(chan struct{})
		d.expired.Store(false)
	}
}

func (d *deadline) expire() {
	if !d.expired.Load() {
		close(d.cancel)
		d.expired.Store(true)
	}
}

func (d *deadline) fire() {
	d.mu.Lock()
	if !d.t.IsZero() && !time.Now().Before(d.t) {
		d.expire()
	}
	d.mu.Unlock()
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	ch := d.cancel
	d.mu.Unlock()
	return ch
}

func (d *deadline) stop() {
	d.mu.Lock()
	if d.timer != nil {
		d.timer.Stop()
	}
	d.mu.Unlock()
}

// link is one direction of a Pair, from `from` to `to`.
type link struct {
	from, to *Conn
	base     time.Time
	wake     chan struct{} // capacity 1: new earliest event

	mu        sync.Mutex
	cfg       Config
	rng       *rand.Rand
	heap      []*packet
	seq       uint64
	held      []*packet     // datagrams held back by Reorder, in write order
	heldUntil time.Duration // release time of held if no successor is written
	busyUntil time.Duration // Rate: end of serialisation of the last queued datagram
	lastAt    time.Duration // FIFO: arrival time of the last datagram scheduled
	departs   []time.Duration
	dhead     int // departs is a FIFO: departs[dhead:]
	stopped   bool
}

func newLink(from, to *Conn, cfg Config, base time.Time) *link {
	l := &link{from: from, to: to, base: base, wake: make(chan struct{}, 1)}
	l.setConfig(cfg)
	return l
}

func (l *link) setConfig(cfg Config) {
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.ReorderHold <= 0 {
		cfg.ReorderHold = DefaultReorderHold
	}
	l.cfg = cfg
	l.rng = rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15))
}

func (l *link) now() time.Duration { return time.Since(l.base) }

func (l *link) send(p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cfg := &l.cfg
	// Always draw the same number of values so the fate of the n-th
	// datagram depends only on Seed and n.
	rLoss, rDup, rReorder, rJitter := l.rng.Float64(), l.rng.Float64(), l.rng.Float64(), l.rng.Float64()
	if l.stopped {
		return // receiver closed: nowhere to deliver
	}
	st := &l.from.stats
	pk := l.from.free.get(len(p))
	copy(pk.buf, p)
	pk.from = l.from.local
	if cfg.Filter != nil && !cfg.Filter(pk.buf) {
		st.filtered.Add(1)
		l.from.free.put(pk)
		return
	}
	if rLoss < cfg.Loss {
		st.dropped.Add(1)
		l.from.free.put(pk)
		return
	}
	now := l.now()
	depart := now
	if cfg.Rate > 0 {
		for l.dhead < len(l.departs) && l.departs[l.dhead] <= now {
			l.dhead++
		}
		if l.dhead == len(l.departs) {
			l.departs, l.dhead = l.departs[:0], 0
		}
		if len(l.departs)-l.dhead >= cfg.Queue {
			st.queueDrops.Add(1)
			l.from.free.put(pk)
			return
		}
		if l.dhead > 0 && len(l.departs) == cap(l.departs) {
			n := copy(l.departs, l.departs[l.dhead:])
			l.departs, l.dhead = l.departs[:n], 0
		}
		start := max(now, l.busyUntil)
		tx := time.Duration(int64(len(p)) * 8 * int64(time.Second) / cfg.Rate)
		depart = start + tx
		l.busyUntil = depart
		l.departs = append(l.departs, depart)
	}
	delay := cfg.Delay
	if cfg.Jitter > 0 {
		delay += time.Duration((2*rJitter - 1) * float64(cfg.Jitter))
	}
	pk.at = depart + max(delay, 0)
	if cfg.FIFO {
		pk.at = max(pk.at, l.lastAt)
		l.lastAt = pk.at
	}
	if cfg.Tamper != nil {
		cfg.Tamper(pk.buf)
	}
	var dup *packet
	if rDup < cfg.Duplicate {
		dup = l.from.free.get(len(pk.buf))
		copy(dup.buf, pk.buf)
		dup.from, dup.at = pk.from, pk.at
		st.duplicated.Add(1)
	}
	if rReorder < cfg.Reorder {
		st.reordered.Add(1)
		if len(l.held) == 0 {
			l.heldUntil = pk.at + cfg.ReorderHold
			l.signal()
		}
		l.held = append(l.held, pk)
	} else {
		at := pk.at // pk may be recycled once scheduled
		l.schedule(pk, now)
		l.release(at, now) // held datagrams follow pk
	}
	if dup != nil {
		l.schedule(dup, now)
	}
}

// release schedules the held datagrams, in write order, no earlier than at
// (and, having later sequence numbers, after anything scheduled before).
// l.mu must be held.
func (l *link) release(at, now time.Duration) {
	for i, h := range l.held {
		h.at = max(h.at, at)
		l.schedule(h, now)
		l.held[i] = nil
	}
	l.held = l.held[:0]
}

// schedule delivers pk now if it is due and nothing is pending, else puts
// it in the heap. l.mu must be held.
func (l *link) schedule(pk *packet, now time.Duration) {
	if len(l.heap) == 0 && pk.at <= now {
		l.to.enqueue(pk)
		return
	}
	l.seq++
	pk.seq = l.seq
	if l.push(pk) == 0 {
		l.signal()
	}
}

func (l *link) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *link) less(i, j int) bool {
	a, b := l.heap[i], l.heap[j]
	return a.at < b.at || (a.at == b.at && a.seq < b.seq)
}

// push adds pk to the heap and returns its final index.
func (l *link) push(pk *packet) int {
	l.heap = append(l.heap, pk)
	i := len(l.heap) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !l.less(i, p) {
			break
		}
		l.heap[i], l.heap[p] = l.heap[p], l.heap[i]
		i = p
	}
	return i
}

func (l *link) pop() *packet {
	h := l.heap
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h[n] = nil
	l.heap = h[:n]
	i := 0
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && l.less(c+1, c) {
			c++
		}
		if !l.less(c, i) {
			break
		}
		l.heap[i], l.heap[c] = l.heap[c], l.heap[i]
		i = c
	}
	return top
}

// run is the delivery goroutine of the direction. It exits when the
// receiver is closed, or when the sender is closed and nothing is in
// flight.
func (l *link) run() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	senderDone := l.from.done
	for {
		l.mu.Lock()
		now := l.now()
		if len(l.held) > 0 && (l.heldUntil <= now || l.from.closed.Load()) {
			l.release(0, now) // no successor will come in time
		}
		for len(l.heap) > 0 && l.heap[0].at <= now {
			l.to.enqueue(l.pop())
		}
		if l.to.closed.Load() || (l.from.closed.Load() && len(l.heap) == 0) {
			l.stopped = true
			for _, pk := range l.heap {
				l.to.free.put(pk)
			}
			for _, pk := range l.held {
				l.to.free.put(pk)
			}
			l.heap, l.held = nil, nil
			l.mu.Unlock()
			return
		}
		next := time.Duration(-1)
		if len(l.heap) > 0 {
			next = l.heap[0].at
		}
		if len(l.held) > 0 && (next < 0 || l.heldUntil < next) {
			next = l.heldUntil
		}
		l.mu.Unlock()

		if next < 0 {
			select {
			case <-l.wake:
			case <-senderDone:
				senderDone = nil
			case <-l.to.done:
			}
			continue
		}
		timer.Reset(next - l.now())
		select {
		case <-l.wake:
		case <-timer.C:
		case <-senderDone:
			senderDone = nil
		case <-l.to.done:
		}
		timer.Stop()
	}
}
