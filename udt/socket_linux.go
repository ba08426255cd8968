//go:build linux

package udt

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgIO moves up to batchSize datagrams per system call with recvmmsg
// and sendmmsg on a real UDP socket. It goes through syscall.RawConn so
// that Go's poller still handles blocking, deadlines and Close. All state
// is preallocated: a batch costs no allocation.
type mmsgIO struct {
	rc     syscall.RawConn
	inet6  bool // the socket is AF_INET6 (dual-stack): IPv4 peers as v4-mapped
	rmsgs  [batchSize]unix.Mmsghdr
	riovs  [batchSize]unix.Iovec
	rnames [batchSize]unix.RawSockaddrInet6
	rvlen  int
	rn     int
	rerr   error
	readFn func(fd uintptr) bool

	wmsgs   [batchSize]unix.Mmsghdr
	wiovs   [batchSize]unix.Iovec
	wname   unix.RawSockaddrInet6
	wnamlen uint32
	wvlen   int
	wdone   int
	werr    error
	writeFn func(fd uintptr) bool
}

// newBatchIO returns the recvmmsg/sendmmsg fast path for *net.UDPConn, nil
// for anything else.
func newBatchIO(pc net.PacketConn) batchIO {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return nil
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	m := &mmsgIO{rc: rc}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil || serr != nil {
		return nil
	}
	m.inet6 = domain == unix.AF_INET6
	m.readFn = m.doRead
	m.writeFn = m.doWrite
	return m
}

func (m *mmsgIO) readBatch(bufs [][]byte, sizes []int, addrs []netip.AddrPort) (int, error) {
	n := min(len(bufs), batchSize)
	for i := 0; i < n; i++ {
		m.riovs[i].Base = &bufs[i][0]
		m.riovs[i].SetLen(len(bufs[i]))
		h := &m.rmsgs[i].Hdr
		h.Iov = &m.riovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&m.rnames[i]))
		h.Namelen = unix.SizeofSockaddrInet6
		h.Control, h.Controllen, h.Flags = nil, 0, 0
	}
	m.rvlen = n
	if err := m.rc.Read(m.readFn); err != nil {
		return 0, err
	}
	if m.rerr != nil {
		return 0, m.rerr
	}
	for i := 0; i < m.rn; i++ {
		sizes[i] = int(m.rmsgs[i].Len)
		addrs[i] = sockaddrToAddrPort(&m.rnames[i])
	}
	return m.rn, nil
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
	for i := 0; i < n; i++ {
		m.wiovs[i].Base = &bufs[i][0]
		m.wiovs[i].SetLen(len(bufs[i]))
		h := &m.wmsgs[i].Hdr
		h.Iov = &m.wiovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&m.wname))
		h.Namelen = m.wnamlen
	}
	m.wvlen, m.wdone, m.werr = n, 0, nil
	if err := m.rc.Write(m.writeFn); err != nil {
		return m.wdone, err
	}
	return m.wdone, m.werr
}

func (m *mmsgIO) doWrite(fd uintptr) bool {
	for m.wdone < m.wvlen {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.wmsgs[m.wdone])), uintptr(m.wvlen-m.wdone), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
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
