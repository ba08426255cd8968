package udt

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/wire"
)

// Conn is a UDT4 stream connection. It implements net.Conn; Read, Write
// and Close may be called from different goroutines.
type Conn struct {
	cfg        Config
	mux        *mux
	sock       *socket
	peer       endpoint
	id         uint32 // our socket ID
	rendezvous bool
	start      time.Time

	// Connection setup; see handshake.go. hs fields are guarded by hsMu
	// until connected is closed, and read-only after.
	hsMu      sync.Mutex
	hs        handshakeState
	connected chan struct{}
	setupErr  error

	// Negotiated at connection time, read-only after.
	peerID  uint32
	mss     int
	payload int

	snd sender
	rcv receiver

	// Timer state (timers.go), owned by the timer goroutine except the
	// atomics, which the reader goroutine updates.
	lastHeard  atomic.Int64 // ns since start of the last packet from the peer
	lastSent   atomic.Int64 // ns since start of the last packet we sent
	connectedT int64

	readMu        sync.Mutex // Read and WriteTo, one at a time
	readDeadline  deadline
	writeDeadline deadline

	closing   chan struct{} // closed when the connection stops
	failOnce  sync.Once
	failErr   error
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	onClose func() // set by a listener for its children

	rxBuf []byte // control packets built on the reader goroutine
	dirty bool   // reader goroutine: touched in the current batch
	stats connStats

	ctlMu  sync.Mutex
	ctlBuf [wire.HeaderLen + 4]byte // sendControl's packet
}

type connStats struct {
	sent, retransmitted, received, duplicate atomic.Uint64
	payloadSent, payloadReceived             atomic.Uint64
	naksSent, naksReceived, acksSent         atomic.Uint64
	headRepairs                              atomic.Uint64
}

// Stats are a connection's counters.
type Stats struct {
	PacketsSent          uint64        // data packets written, retransmissions included
	PayloadSent          uint64        // data bytes in those packets (what crossed the wire, less headers)
	PayloadReceived      uint64        // data bytes in new packets received
	PacketsRetransmitted uint64        // of which retransmissions
	PacketsReceived      uint64        // new data packets received
	PacketsDuplicate     uint64        // data packets received that were not new
	NAKsSent             uint64        // loss reports sent
	NAKsReceived         uint64        // loss reports received
	HeadRepairs          uint64        // packets queued again because the ACK point's ACK was overdue (sender.repairHead)
	ACKsSent             uint64        // full and light ACKs sent
	Foreign              uint64        // datagrams dropped on this socket for coming from elsewhere or being malformed
	RTT                  time.Duration // smoothed round-trip time
	MSS                  int           // negotiated packet size

	// The sender's congestion state, for diagnostics.
	Window         float64       // congestion window, packets
	PacketInterval time.Duration // pacing interval (0: unpaced)
	InFlight       int           // packets sent and not yet acknowledged
	Losses         int           // packets waiting for retransmission
	LinkCapacity   float64       // the peer's smoothed packet-pair link capacity, packets/s
	Controller     string        // the controller's own state, if it tells
}

// stater is what a controller may implement to describe its state.
type stater interface {
	State() (state string, btlbw float64, minRTT time.Duration)
}

// detailer is what a controller may implement to add details for traces.
type detailer interface {
	Detail() string
}

// Stats returns the connection's counters.
func (c *Conn) Stats() Stats {
	c.snd.mu.Lock()
	rtt := time.Duration(c.snd.rtt)
	win, iv := c.snd.cc.Window(), c.snd.cc.PacketInterval()
	inflight, losses := c.snd.inFlight(), c.snd.losses
	capacity := c.snd.bandwidth
	var ctl string
	if st, ok := c.snd.cc.(stater); ok {
		state, bw, minRTT := st.State()
		ctl = fmt.Sprintf("%s btlbw=%.0fpkt/s minrtt=%v", state, bw, minRTT.Round(time.Millisecond/10))
	}
	if d, ok := c.snd.cc.(detailer); ok {
		ctl += " " + d.Detail()
	}
	c.snd.mu.Unlock()
	return Stats{
		Window:               win,
		PacketInterval:       iv,
		InFlight:             inflight,
		Losses:               losses,
		LinkCapacity:         capacity,
		Controller:           ctl,
		PacketsSent:          c.stats.sent.Load(),
		PayloadSent:          c.stats.payloadSent.Load(),
		PayloadReceived:      c.stats.payloadReceived.Load(),
		PacketsRetransmitted: c.stats.retransmitted.Load(),
		PacketsReceived:      c.stats.received.Load(),
		PacketsDuplicate:     c.stats.duplicate.Load(),
		NAKsSent:             c.stats.naksSent.Load(),
		NAKsReceived:         c.stats.naksReceived.Load(),
		HeadRepairs:          c.stats.headRepairs.Load(),
		ACKsSent:             c.stats.acksSent.Load(),
		Foreign:              c.mux.foreign.Load(),
		RTT:                  rtt,
		MSS:                  c.mss,
	}
}

func (c *Conn) now() int64 { return c.since(time.Now()) }

// since is t on the connection's clock (ns since start).
func (c *Conn) since(t time.Time) int64 { return int64(t.Sub(c.start)) }

// LocalAddr returns the local address of the underlying PacketConn.
func (c *Conn) LocalAddr() net.Addr { return c.sock.pc.LocalAddr() }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.peer.addr }

// PayloadSize is the number of data bytes per packet. Writes in multiples
// of it avoid short packets.
func (c *Conn) PayloadSize() int { return c.payload }

// establish finishes connection setup with the negotiated parameters and
// starts the sender and timer goroutines. Called with hsMu held.
func (c *Conn) establish(sendISN, recvISN int32, mss, peerWindow int, peerID uint32) {
	c.peerID = peerID
	if mss > c.cfg.MSS {
		mss = c.cfg.MSS
	}
	c.mss = mss
	c.payload = mss - ipUDPHeaderBytes - wire.HeaderLen
	if peerWindow < 2 {
		peerWindow = 2
	}
	c.snd.now = c.now
	c.snd.init(sendISN, c.cfg.SendBuffer, c.payload, peerWindow, mss, c.cfg.CC(&c.snd.clock))
	// Accept packets as large as our own MSS allows, whatever we send.
	c.rcv.init(recvISN, c.cfg.FlowWindow, c.cfg.MSS-ipUDPHeaderBytes-wire.HeaderLen)
	c.rcv.est.libudt = c.cfg.LibudtRate
	now := c.now()
	c.connectedT = now
	c.lastHeard.Store(now)
	c.hs.done = true
	close(c.connected)
	c.wg.Add(2)
	go c.sendLoop()
	go c.timerLoop()
	if c.hs.mode != modeServer {
		// Completes a libudt rendezvous peer still waiting at -1. A
		// listener's child sends none: a libudt client that sees a
		// keep-alive before the response gives up.
		c.sendControl(wire.TypeKeepAlive, 0)
	}
	c.cfg.logf("udt: connected to %v (socket %d -> %d, mss %d, isn %d/%d)", c.peer.ap, c.id, peerID, mss, sendISN, recvISN)
}

// markPeerReady records proof that the peer is connected: data may flow.
func (c *Conn) markPeerReady() {
	s := &c.snd
	s.mu.Lock()
	was := s.peerReady
	s.peerReady = true
	s.readyAtomic.Store(true)
	s.mu.Unlock()
	if !was {
		notify(s.wake)
	}
}

// handle processes one datagram from the peer on the reader goroutine.
func (c *Conn) handle(b []byte, now int64) {
	c.lastHeard.Store(now)
	select {
	case <-c.connected:
	default:
		if !c.handleConnecting(b, now) {
			return
		}
	}
	if !wire.IsControl(b) {
		h, payload, err := wire.ParseData(b)
		if err != nil {
			c.mux.foreign.Add(1)
			return
		}
		c.rcv.mu.Lock()
		fresh := c.rcv.onData(&h, payload, now)
		c.rcv.mu.Unlock()
		if fresh {
			c.stats.received.Add(1)
			c.stats.payloadReceived.Add(uint64(len(payload)))
		} else {
			c.stats.duplicate.Add(1)
		}
		if !c.snd.peerReadyHint() {
			c.markPeerReady()
		}
		return
	}
	h, body, err := wire.ParseControl(b)
	if err != nil {
		c.mux.foreign.Add(1)
		return
	}
	if h.Type != wire.TypeHandshake && !c.snd.peerReadyHint() {
		c.markPeerReady()
	}
	switch h.Type {
	case wire.TypeHandshake:
		c.handleLateHandshake(body)
	case wire.TypeKeepAlive:
	case wire.TypeACK:
		var a wire.ACK
		if a.Parse(body) != nil {
			return
		}
		if a.Fields == 1 {
			c.snd.mu.Lock()
			c.snd.onLightACK(a.Ack)
			c.snd.mu.Unlock()
		} else {
			c.rxBuf = wire.AppendEmpty(c.rxBuf[:0], wire.TypeACK2, h.Info, c.peerID)
			c.write(c.rxBuf)
			c.snd.mu.Lock()
			c.snd.onACK(&a)
			c.snd.mu.Unlock()
		}
		notify(c.snd.wake)
		notify(c.snd.space)
	case wire.TypeACK2:
		c.rcv.mu.Lock()
		c.rcv.onACK2(int32(h.Info&0x7FFFFFFF), now)
		c.rcv.mu.Unlock()
	case wire.TypeNAK:
		c.stats.naksReceived.Add(1)
		c.snd.mu.Lock()
		ok := c.snd.onNAK(body)
		c.snd.mu.Unlock()
		if !ok && c.cfg.Logf != nil { // the guard spares boxing the address
			c.cfg.logf("udt: ignoring malformed loss report from %v", c.peer.ap)
		}
		notify(c.snd.wake)
	case wire.TypeCongestion:
		c.snd.mu.Lock()
		c.snd.cc.OnCongestionWarning()
		c.snd.mu.Unlock()
	case wire.TypeShutdown:
		c.fail(io.EOF)
	case wire.TypeDropReq, wire.TypePeerError, wire.TypeUser:
		// Message mode and user types mean nothing to a stream socket.
	}
}

// flush runs on the reader goroutine after each batch: it sends the ACK
// the batch made due and wakes a blocked reader. (NAKs go out from the
// timer, after reorderHold.)
func (c *Conn) flush(now int64) {
	select {
	case <-c.connected:
	default:
		return
	}
	r := &c.rcv
	r.mu.Lock()
	b := c.rxBuf[:0]
	if r.ackNow {
		b = r.appendFullACK(b, c.peerID, now, false)
	} else if r.sinceACK >= lightACKEvery {
		b = r.appendLightACK(b, c.peerID)
	}
	wake := r.ackSeq != r.wokeAt
	r.wokeAt = r.ackSeq
	r.mu.Unlock()
	if len(b) > 0 {
		c.stats.acksSent.Add(1)
		c.write(b)
	}
	c.rxBuf = b[:0]
	if wake {
		notify(r.readable)
	}
}

// peerReadyHint is a racy-but-safe fast check used on the hot path; the
// authoritative flag is set under mu.
func (s *sender) peerReadyHint() bool { return s.readyAtomic.Load() }

// write sends one control packet; errors are transient or surface through
// the sender.
func (c *Conn) write(b []byte) {
	if err := c.sock.write(b, &c.peer); err == nil {
		c.lastSent.Store(c.now())
	}
}

// sendControl sends an empty-bodied control packet from any goroutine.
func (c *Conn) sendControl(t wire.Type, info uint32) {
	// A buffer on the stack would escape (to the PacketConn's WriteTo)
	// and cost an allocation per keep-alive.
	c.ctlMu.Lock()
	c.write(wire.AppendEmpty(c.ctlBuf[:0], t, info, c.peerID))
	c.ctlMu.Unlock()
}

// fail stops the connection with err (io.EOF for the peer's Shutdown). It
// does not wait for the goroutines; Close does.
func (c *Conn) fail(err error) {
	c.failOnce.Do(func() {
		c.failErr = err
		c.cfg.logf("udt: connection to %v ends: %v", c.peer.ap, err)
		sendErr := err
		if err == io.EOF {
			sendErr = ErrPeerClosed
		}
		select {
		case <-c.connected:
			c.snd.fail(sendErr)
			c.rcv.fail(err)
		default:
		}
		close(c.closing)
	})
}

// stopped reports whether fail has run.
func (c *Conn) stopped() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// Read reads data in order. After the peer's Shutdown it returns what is
// buffered, then io.EOF; after a failure, what is buffered, then the error.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	r := &c.rcv
	for {
		r.mu.Lock()
		if n := r.read(p); n > 0 {
			r.mu.Unlock()
			return n, nil
		}
		err := r.err
		r.mu.Unlock()
		if err != nil {
			return 0, err
		}
		if err := c.readDeadline.wait(r.readable); err != nil {
			return 0, err
		}
	}
}

// writeToMax bounds one write of WriteTo: the receive window reopens only
// as the writes return.
const writeToMax = 256 << 10

// WriteTo writes the data read to w until the peer's Shutdown (then it
// returns nil) or an error, as io.Copy's fast path: w gets slices of the
// receive buffer itself, runs of whole packets, not copies of them in a
// buffer of the caller's as with Read. w must not keep the slices. Read
// and WriteTo take turns: one waits while the other runs.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	r := &c.rcv
	var total int64
	for {
		r.mu.Lock()
		v := r.view(writeToMax)
		err := r.err
		r.mu.Unlock()
		if len(v) > 0 {
			n, werr := w.Write(v)
			if n < 0 || n > len(v) {
				n, werr = 0, errInvalidWrite
			}
			r.mu.Lock()
			r.consume(n)
			r.mu.Unlock()
			total += int64(n)
			if werr == nil && n < len(v) {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr
			}
			continue
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if err := c.readDeadline.wait(r.readable); err != nil {
			return total, err
		}
	}
}

// Write queues p for sending. It blocks while the send buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	s := &c.snd
	n := 0
	for {
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return n, err
		}
		if s.closing {
			s.mu.Unlock()
			return n, ErrClosed
		}
		n += s.fill(p[n:])
		s.mu.Unlock()
		notify(s.wake)
		if n == len(p) {
			return n, nil
		}
		if err := c.writeDeadline.wait(s.space); err != nil {
			return n, err
		}
	}
}

// Close sends what is buffered (waiting up to Config.Linger for the peer to
// acknowledge it), sends Shutdown and releases the connection. It returns
// an error if data was left unacknowledged.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

// Abort closes the connection at once: what is unacknowledged is
// dropped, and the peer gets Shutdown.
func (c *Conn) Abort() error {
	c.closeOnce.Do(func() { c.closeErr = c.teardown() })
	return c.closeErr
}

func (c *Conn) close() error {
	var err error
	select {
	case <-c.connected:
		err = c.linger()
	default:
	}
	if terr := c.teardown(); err == nil {
		err = terr
	}
	return err
}

// teardown sends Shutdown (if the connection still lives) and releases
// everything.
func (c *Conn) teardown() error {
	select {
	case <-c.connected:
		if !c.stopped() {
			// Shutdown is never retransmitted; a second copy makes a lost
			// one less likely to cost the peer its idle timeout.
			c.sendControl(wire.TypeShutdown, 0)
			c.sendControl(wire.TypeShutdown, 0)
		}
	default:
	}
	c.fail(ErrClosed)
	c.wg.Wait()
	c.readDeadline.stop()
	c.writeDeadline.stop()
	c.mux.remove(c)
	if c.onClose != nil {
		c.onClose()
	}
	return nil
}

// linger waits until a full ACK covers everything written. A light ACK is
// not enough: a libudt receiver makes data readable only when it sends a
// full ACK, and it can wait up to 100 ms to send one once packets stop
// arriving; our Shutdown, sent on a light ACK, would beat it and cut the
// stream short on the peer while we report success.
func (c *Conn) linger() error {
	s := &c.snd
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	limit := time.NewTimer(c.cfg.Linger)
	defer limit.Stop()
	for {
		s.mu.Lock()
		left, err := s.undelivered(), s.err
		s.mu.Unlock()
		if left == 0 {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-s.space:
		case <-c.closing:
		case <-limit.C:
			return errors.New("udt: linger timeout with data unacknowledged")
		}
	}
}

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.readDeadline.set(t)
	c.writeDeadline.set(t)
	return nil
}

// SetReadDeadline sets the deadline for Read.
func (c *Conn) SetReadDeadline(t time.Time) error { c.readDeadline.set(t); return nil }

// SetWriteDeadline sets the deadline for Write.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.writeDeadline.set(t); return nil }

// deadline is a settable deadline that blocked calls observe. Waiting
// costs no allocation: the channel closed when the deadline passes and the
// timer that closes it live as long as the deadline (and are reused when
// it moves), and the channel that wakes waiters when it changes is
// replaced only when somebody was waiting on it.
type deadline struct {
	mu      sync.Mutex
	t       time.Time
	waiters int           // goroutines in wait
	changed chan struct{} // closed by set while waiters wait on it
	expired chan struct{} // closed once t has passed; nil without a deadline
	fired   bool          // expired is closed
	timer   *time.Timer   // runs expire at t
	dead    bool          // stopped: the connection is gone
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.t = t
	if d.fired {
		d.expired, d.fired = nil, false
	}
	if t.IsZero() || d.dead {
		if d.timer != nil {
			d.timer.Stop()
		}
	} else {
		if d.expired == nil {
			d.expired = make(chan struct{})
		}
		if d.timer == nil {
			d.timer = time.AfterFunc(time.Until(t), d.expire)
		} else {
			d.timer.Reset(time.Until(t))
		}
	}
	if d.waiters > 0 && d.changed != nil {
		close(d.changed)
		d.changed = nil
	}
}

// expire closes expired if the deadline has really passed (set may have
// moved it since the timer fired), or waits on.
func (d *deadline) expire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fired || d.expired == nil || d.t.IsZero() || d.dead {
		return
	}
	if left := time.Until(d.t); left > 0 {
		d.timer.Reset(left)
		return
	}
	close(d.expired)
	d.fired = true
}

// stop releases the timer for good (Close): a far deadline must not keep
// the connection's memory alive. Whoever still waits wakes up to find the
// connection closed.
func (d *deadline) stop() {
	d.mu.Lock()
	d.dead = true
	if d.timer != nil {
		d.timer.Stop()
	}
	if d.waiters > 0 && d.changed != nil {
		close(d.changed)
		d.changed = nil
	}
	d.mu.Unlock()
}

// wait blocks until ch is signalled, the deadline changes (nil) or passes
// (errDeadline).
func (d *deadline) wait(ch chan struct{}) error {
	d.mu.Lock()
	if d.fired || !d.t.IsZero() && time.Until(d.t) <= 0 {
		d.mu.Unlock()
		return errDeadline
	}
	if d.changed == nil {
		d.changed = make(chan struct{})
	}
	changed, expired := d.changed, d.expired // expired is nil without a deadline: never ready
	d.waiters++
	d.mu.Unlock()
	var err error
	select {
	case <-ch:
	case <-changed:
	case <-expired:
		err = errDeadline
	}
	d.mu.Lock()
	d.waiters--
	d.mu.Unlock()
	return err
}

// isTransient reports socket errors worth ignoring (ICMP-induced errors on
// some platforms, a full buffer).
func isTransient(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.EAGAIN) || errors.Is(err, os.ErrDeadlineExceeded)
}

var _ net.Conn = (*Conn)(nil)
