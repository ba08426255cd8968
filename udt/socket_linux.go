//go:build linux

package udt

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// gsoMaxSegments is the kernel's UDP_MAX_SEGMENTS (64; newer kernels
	// take more, older ones do not).
	gsoMaxSegments = 64
	// gsoMaxBytes bounds the payload of one GSO send: it must fit one
	// IPv6 (the tighter limit) or IPv4 datagram with its headers.
	gsoMaxBytes = 65535 - 40 - 8
	// groBufLen holds the largest datagram UDP GRO builds: the kernel
	// stops coalescing non-TCP packets below 64 KiB including headers.
	groBufLen = 1 << 16
	// groMsgs is the number of messages per recvmmsg with GRO on: each
	// may hold up to 64 datagrams.
	groMsgs = 16
	// ctlWords sizes a message's control buffer (one int or uint16 cmsg
	// needs 24 bytes on 64-bit systems) in uint64s, for alignment.
	ctlWords = 8
)

// mmsgIO moves up to batchSize datagrams per system call with recvmmsg
// and sendmmsg on a real UDP socket, and more with UDP GSO (a run of
// equal-size packets that lie back to back in memory leaves as one
// message with a UDP_SEGMENT cmsg; the kernel or the NIC cuts it up) and
// UDP GRO (the kernel hands over packets of one flow coalesced, with their
// size in a UDP_GRO cmsg; readBatch cuts them apart again). It goes
// through syscall.RawConn so that Go's poller still handles blocking,
// deadlines and Close. All state is preallocated: a batch costs no
// allocation.
type mmsgIO struct {
	rc    syscall.RawConn
	inet6 bool // the socket is AF_INET6 (dual-stack): IPv4 peers as v4-mapped

	// Reading: only the mux's reader goroutine touches these.
	gro    bool   // UDP_GRO is on
	rlen   int    // bytes per message buffer
	rvlen  int    // messages per recvmmsg
	rbuf   []byte // rvlen buffers of rlen bytes, back to back
	rmsgs  [batchSize]unix.Mmsghdr
	riovs  [batchSize]unix.Iovec
	rnames [batchSize]unix.RawSockaddrInet6
	rctl   [batchSize][ctlWords]uint64
	rn     int // messages the last recvmmsg returned
	rerr   error
	readFn func(fd uintptr) bool
	// The cursor over the last recvmmsg's messages: readBatch hands out
	// the datagrams of message rmsg from rbuf[roff:rend] in rseg pieces.
	rmsg  int
	roff  int
	rend  int
	rseg  int
	rfrom netip.AddrPort
	rcut  bool // after its whole datagrams, message rmsg yields one empty view (cut short)
	// Counters for tests: recvmmsg calls, messages holding several datagrams.
	rcalls, rcoalesced int

	// Writing: the caller serialises writeBatch (socket.wmu).
	gso     bool // UDP_SEGMENT is usable; cleared for good when the kernel refuses it
	wmsgs   [batchSize]unix.Mmsghdr
	wiovs   [batchSize]unix.Iovec
	wctl    [batchSize][ctlWords]uint64
	wsegs   [batchSize]int // datagrams in each message
	wname   unix.RawSockaddrInet6
	wnamlen uint32
	wvlen   int
	wdone   int
	werr    error
	writeFn func(fd uintptr) bool
	// Counters for tests: sendmmsg calls, messages sent with GSO.
	wcalls, wgso int
}

// newBatchIO returns the recvmmsg/sendmmsg fast path for *net.UDPConn, nil
// for anything else. It turns on GSO and GRO where the kernel has them.
func newBatchIO(pc net.PacketConn) batchIO {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return nil
	}
	m := newMmsgIO(uc, true, true)
	if m == nil {
		return nil // an untyped nil: the socket falls back to one datagram per call
	}
	return m
}

// newMmsgIO sets up the fast path on uc, with GSO and GRO if wanted and
// available, or returns nil.
func newMmsgIO(uc *net.UDPConn, gso, gro bool) *mmsgIO {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	m := &mmsgIO{rc: rc}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if serr != nil {
			return
		}
		// A kernel that knows UDP_SEGMENT (4.18+) answers this; an older
		// one would silently ignore the cmsg and send one huge datagram.
		if gso {
			_, err := unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT)
			m.gso = err == nil
		}
		if gro {
			m.gro = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) == nil
		}
	}); err != nil || serr != nil {
		return nil
	}
	m.inet6 = domain == unix.AF_INET6
	if m.gro {
		m.rlen, m.rvlen = groBufLen, groMsgs
	} else {
		// One spare byte per buffer: a datagram that fills it was truncated.
		m.rlen, m.rvlen = maxDatagram+1, batchSize
	}
	m.rbuf = make([]byte, m.rlen*m.rvlen)
	for i := 0; i < m.rvlen; i++ {
		m.riovs[i].Base = &m.rbuf[i*m.rlen]
		m.riovs[i].SetLen(m.rlen)
		h := &m.rmsgs[i].Hdr
		h.Iov = &m.riovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&m.rnames[i]))
		if m.gro {
			h.Control = (*byte)(unsafe.Pointer(&m.rctl[i][0]))
		}
	}
	m.readFn = m.doRead
	m.writeFn = m.doWrite
	return m
}

func (m *mmsgIO) readBatch(dgrams [][]byte, addrs []netip.AddrPort) (int, error) {
	k := 0
	for {
		for k < len(dgrams) && m.rmsg < m.rn {
			if m.roff < m.rend {
				e := min(m.roff+m.rseg, m.rend)
				dgrams[k] = m.rbuf[m.roff:e:e]
				addrs[k] = m.rfrom
				k++
				m.roff = e
				continue
			}
			if m.rcut {
				dgrams[k] = m.rbuf[m.roff:m.roff:m.roff]
				addrs[k] = m.rfrom
				k++
				m.rcut = false
				continue
			}
			if m.rmsg++; m.rmsg < m.rn {
				m.open()
			}
		}
		if k > 0 || len(dgrams) == 0 {
			return k, nil
		}
		if err := m.recv(); err != nil {
			return 0, err
		}
	}
}

func (m *mmsgIO) release() {
	if m.gro {
		_ = m.rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 0)
		})
	}
}

// recv reads a batch of messages and points the cursor at the first.
func (m *mmsgIO) recv() error {
	m.rn, m.rmsg = 0, 0
	for i := 0; i < m.rvlen; i++ {
		h := &m.rmsgs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.Flags = 0
		if m.gro {
			h.SetControllen(ctlWords * 8)
		}
	}
	m.rcalls++
	if err := m.rc.Read(m.readFn); err != nil {
		m.rn = 0
		return err
	}
	if m.rerr != nil {
		m.rn = 0
		return m.rerr
	}
	m.open()
	return nil
}

// open points the cursor at the datagrams of message rmsg.
func (m *mmsgIO) open() {
	i := m.rmsg
	msg := &m.rmsgs[i]
	n := int(msg.Len)
	m.roff = i * m.rlen
	m.rend = m.roff + n
	m.rseg = n
	m.rcut = n == 0 // an empty datagram is handed on, as one
	m.rfrom = sockaddrToAddrPort(&m.rnames[i])
	coalesced := false
	if m.gro && msg.Hdr.Controllen > 0 {
		ctl := unsafe.Slice((*byte)(unsafe.Pointer(&m.rctl[i][0])), min(int(msg.Hdr.Controllen), ctlWords*8))
		if g := groSegment(ctl); g > 0 && g < n {
			m.rseg, coalesced = g, true
			m.rcoalesced++
		}
	}
	if msg.Hdr.Flags&unix.MSG_TRUNC != 0 {
		// Cut short: keep the whole datagrams, report the rest as one
		// empty view for the caller to count and drop.
		if coalesced {
			m.rend -= n % m.rseg
		} else {
			m.rend = m.roff
		}
		m.rcut = true
	}
}

// groSegment returns the datagram size of a UDP_GRO cmsg in ctl, 0 if none.
func groSegment(ctl []byte) int {
	for len(ctl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(ctl) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(int32(binary.NativeEndian.Uint32(ctl[unix.CmsgLen(0):])))
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(ctl) {
			return 0
		}
		ctl = ctl[next:]
	}
	return 0
}

func (m *mmsgIO) doRead(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.rmsgs[0])), uintptr(m.rvlen), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			m.rn, m.rerr = int(n), nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			m.rn, m.rerr = 0, e
			return true
		}
	}
}

func (m *mmsgIO) writeBatch(bufs [][]byte, to netip.AddrPort) (int, error) {
	n := min(len(bufs), batchSize)
	m.setDest(to)
	sent := 0
	for sent < n {
		m.wvlen, m.wdone, m.werr = m.pack(bufs[sent:n]), 0, nil
		err := m.rc.Write(m.writeFn)
		for _, segs := range m.wsegs[:m.wdone] {
			sent += segs
		}
		if err != nil {
			return sent, err
		}
		if m.werr == nil {
			continue // all of them went out
		}
		if m.wsegs[m.wdone] > 1 && gsoRefused(m.werr) {
			// The kernel sent none of that message: send the rest
			// without GSO, now and from now on.
			m.gso = false
			continue
		}
		return sent, m.werr
	}
	return sent, nil
}

// gsoRefused tells whether a GSO send failed for being GSO: unsupported,
// a segment larger than the path MTU, no checksum offload (EIO), ...
func gsoRefused(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIO) || errors.Is(err, unix.ENOPROTOOPT) ||
		errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EMSGSIZE)
}

// pack lays bufs out as messages, one per GSO run (or per datagram without
// GSO), and returns how many.
func (m *mmsgIO) pack(bufs [][]byte) int {
	k := 0
	for i := 0; i < len(bufs); k++ {
		b := bufs[i]
		segs, total := 1, len(b)
		if m.gso {
			segs, total = gsoRun(bufs[i:])
		}
		iov := &m.wiovs[k]
		iov.Base = nil
		if len(b) > 0 {
			iov.Base = &b[0]
		}
		iov.SetLen(total)
		h := &m.wmsgs[k].Hdr
		h.Iov = iov
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&m.wname))
		h.Namelen = m.wnamlen
		if segs > 1 {
			ctl := unsafe.Slice((*byte)(unsafe.Pointer(&m.wctl[k][0])), ctlWords*8)
			c := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
			c.Level, c.Type = unix.SOL_UDP, unix.UDP_SEGMENT
			c.SetLen(unix.CmsgLen(2))
			binary.NativeEndian.PutUint16(ctl[unix.CmsgLen(0):], uint16(len(b)))
			h.Control = &ctl[0]
			h.SetControllen(unix.CmsgSpace(2))
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		m.wsegs[k] = segs
		i += segs
	}
	return k
}

// gsoRun returns how many datagrams from bufs[0] on can leave as one GSO
// message, and their total size: back to back in memory, all as long as
// the first except the last, which may be shorter, at most gsoMaxSegments
// and gsoMaxBytes in all.
func gsoRun(bufs [][]byte) (segs, total int) {
	seg := len(bufs[0])
	if seg == 0 {
		return 1, 0
	}
	total = seg
	next := uintptr(unsafe.Pointer(&bufs[0][0])) + uintptr(seg)
	for segs = 1; segs < len(bufs) && segs < gsoMaxSegments; {
		b := bufs[segs]
		if len(b) == 0 || len(b) > seg || total+len(b) > gsoMaxBytes || uintptr(unsafe.Pointer(&b[0])) != next {
			break
		}
		segs++
		total += len(b)
		next += uintptr(len(b))
		if len(b) < seg {
			break // a short datagram ends the run
		}
	}
	return segs, total
}

func (m *mmsgIO) doWrite(fd uintptr) bool {
	for m.wdone < m.wvlen {
		m.wcalls++
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.wmsgs[m.wdone])), uintptr(m.wvlen-m.wdone), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			for _, segs := range m.wsegs[m.wdone : m.wdone+int(n)] {
				if segs > 1 {
					m.wgso++
				}
			}
			m.wdone += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			m.werr = e
			return true
		}
	}
	return true
}

// setDest encodes the destination once per batch.
func (m *mmsgIO) setDest(to netip.AddrPort) {
	m.wname = unix.RawSockaddrInet6{}
	a := to.Addr()
	if !m.inet6 {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&m.wname))
		sa.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], to.Port())
		sa.Addr = a.Unmap().As4()
		m.wnamlen = unix.SizeofSockaddrInet4
		return
	}
	m.wname.Family = unix.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&m.wname.Port))[:], to.Port())
	m.wname.Addr = a.As16() // As16 maps IPv4 to ::ffff:a.b.c.d
	m.wnamlen = unix.SizeofSockaddrInet6
}

func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// forceBuffers raises the socket buffers past net.core.rmem_max and
// wmem_max where the process may (CAP_NET_ADMIN: SO_RCVBUFFORCE), as
// wireguard-go and quic-go do: the system's default cap of a few MB
// holds only milliseconds of a fast transfer, and a receiver the
// scheduler holds up longer than that loses what overflows. Without the
// capability the kernel refuses, and the capped buffers stay.
func forceBuffers(pc net.PacketConn, rcv, snd int) {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcv)
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, snd)
	})
}
