package udt

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// endpoint is a peer address in both forms: netip for cheap comparison,
// net.Addr for PacketConns that only speak net.Addr.
type endpoint struct {
	ap   netip.AddrPort
	addr net.Addr
}

func newEndpoint(a net.Addr) (endpoint, error) {
	if u, ok := a.(*net.UDPAddr); ok {
		return endpoint{ap: normAddrPort(u.AddrPort()), addr: a}, nil
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return endpoint{}, err
	}
	return endpoint{ap: normAddrPort(ap), addr: a}, nil
}

func normAddrPort(ap netip.AddrPort) netip.AddrPort {
	if ap.Addr().Is4In6() {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return ap
}

// addrPortConn is the allocation-free interface *net.UDPConn (and the test
// link) offer.
type addrPortConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// batchIO is a platform fast path that moves several datagrams per system
// call (recvmmsg/sendmmsg on Linux, with UDP GSO and GRO where the kernel
// has them).
type batchIO interface {
	// readBatch reads at least one datagram and sets dgrams[i] to views of
	// up to len(dgrams) of them in buffers of its own, valid until the next
	// call; addrs[i] is the source of dgrams[i]. A datagram it had to cut
	// short comes back longer than maxDatagram or empty, for the caller to
	// drop.
	readBatch(dgrams [][]byte, addrs []netip.AddrPort) (int, error)
	// writeBatch sends bufs, all to one peer, and returns how many went
	// out. Only one writeBatch runs at a time per batchIO.
	writeBatch(bufs [][]byte, to netip.AddrPort) (int, error)
	// release undoes socket options it set (UDP GRO) once reading is over,
	// so that whoever reads the PacketConn next gets plain datagrams.
	release()
}

// socket is the seam between the engine and the PacketConn it was handed:
// batched reads and writes where the platform has them, one datagram per
// call otherwise.
type socket struct {
	pc    net.PacketConn
	ap    addrPortConn // nil if pc lacks the netip methods
	batch batchIO      // nil if no fast path
	rbuf  []byte       // read buffer of the one-datagram path

	wmu sync.Mutex // serialises writeBatch: sockets are shared by a listener's connections
}

func newSocket(pc net.PacketConn) *socket {
	s := &socket{pc: pc}
	s.ap, _ = pc.(addrPortConn)
	s.batch = newBatchIO(pc)
	if s.batch == nil {
		// One spare byte: a datagram that fills it was truncated.
		s.rbuf = make([]byte, maxDatagram+1)
	}
	return s
}

// readBatch reads at least one datagram and returns views of up to
// len(dgrams) of them, valid until the next call, in dgrams and their
// sources in addrs. Only one goroutine (the mux's reader) calls it.
func (s *socket) readBatch(dgrams [][]byte, addrs []netip.AddrPort) (int, error) {
	if s.batch != nil {
		return s.batch.readBatch(dgrams, addrs)
	}
	var (
		n   int
		ap  netip.AddrPort
		err error
	)
	if s.ap != nil {
		n, ap, err = s.ap.ReadFromUDPAddrPort(s.rbuf)
	} else {
		var a net.Addr
		n, a, err = s.pc.ReadFrom(s.rbuf)
		if err == nil {
			var e endpoint
			e, err = newEndpoint(a)
			ap = e.ap
		}
	}
	if err != nil {
		return 0, err
	}
	dgrams[0] = s.rbuf[:n]
	addrs[0] = normAddrPort(ap)
	return 1, nil
}

// write sends one datagram.
func (s *socket) write(b []byte, to *endpoint) error {
	var err error
	if s.ap != nil {
		_, err = s.ap.WriteToUDPAddrPort(b, to.ap)
	} else {
		_, err = s.pc.WriteTo(b, to.addr)
	}
	return err
}

// writeBatch sends all of bufs to one peer and returns how many went out.
// Runs of full-size packets that lie back to back in memory may leave as
// one GSO send.
func (s *socket) writeBatch(bufs [][]byte, to *endpoint) (int, error) {
	if s.batch != nil {
		s.wmu.Lock()
		n, err := s.batch.writeBatch(bufs, to.ap)
		s.wmu.Unlock()
		return n, err
	}
	for i, b := range bufs {
		if err := s.write(b, to); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

// release hands the PacketConn back in the state it came: the mux's
// reader has stopped.
func (s *socket) release() {
	if s.batch != nil {
		s.batch.release()
	}
}

// wake unblocks a pending read so that the reader can notice it should stop.
func (s *socket) wake() { _ = s.pc.SetReadDeadline(time.Unix(1, 0)) }

// resetDeadline clears the read deadline set by wake.
func (s *socket) resetDeadline() { _ = s.pc.SetReadDeadline(time.Time{}) }

// tuneBuffers asks for socket buffers big enough for UDT's windows; best
// effort, only on real UDP sockets.
func (s *socket) tuneBuffers(rcv, snd int) {
	type bufferSetter interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	}
	if b, ok := s.pc.(bufferSetter); ok {
		_ = b.SetReadBuffer(rcv)
		_ = b.SetWriteBuffer(snd)
		forceBuffers(s.pc, rcv, snd)
	}
}
