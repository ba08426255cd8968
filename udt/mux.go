package udt

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/wire"
)

// maxDatagram bounds the datagrams the reader accepts (jumbo frames).
const maxDatagram = 9216

// mux owns the reading side of one PacketConn: a reader goroutine that
// reads batches of datagrams and hands each to the connection it belongs
// to (by destination socket ID and exact source address, as libudt's
// CRcvQueue does), or to the listener for connection requests. Datagrams
// that belong to nobody are counted and dropped.
type mux struct {
	sock     *socket
	conns    atomic.Pointer[[]*Conn] // copy-on-write; read by the reader without locks
	listener atomic.Pointer[Listener]
	foreign  atomic.Uint64

	mu    sync.Mutex
	users int
	stop  atomic.Bool
	done  chan struct{}
}

func newMux(pc net.PacketConn) *mux {
	m := &mux{sock: newSocket(pc), done: make(chan struct{})}
	m.conns.Store(new([]*Conn))
	m.sock.tuneBuffers(8<<20, 4<<20)
	go m.readLoop()
	return m
}

func (m *mux) setListener(l *Listener) {
	m.mu.Lock()
	m.users++
	m.listener.Store(l)
	m.mu.Unlock()
}

func (m *mux) add(c *Conn) {
	m.mu.Lock()
	old := *m.conns.Load()
	next := make([]*Conn, len(old), len(old)+1)
	copy(next, old)
	next = append(next, c)
	m.conns.Store(&next)
	m.users++
	m.mu.Unlock()
}

// remove forgets c and stops the reader once nobody uses the mux.
func (m *mux) remove(c *Conn) {
	m.mu.Lock()
	old := *m.conns.Load()
	next := make([]*Conn, 0, len(old))
	found := false
	for _, x := range old {
		if x == c {
			found = true
			continue
		}
		next = append(next, x)
	}
	m.conns.Store(&next)
	m.mu.Unlock()
	if found {
		m.release()
	}
}

// release drops one user; the last one stops the reader and waits for it.
func (m *mux) release() {
	m.mu.Lock()
	m.users--
	last := m.users == 0
	m.mu.Unlock()
	if !last {
		return
	}
	m.stop.Store(true)
	m.sock.wake()
	<-m.done
	m.sock.resetDeadline()
	m.sock.release()
}

func (m *mux) readLoop() {
	defer close(m.done)
	// Views into the socket's own buffers: a coalesced (GRO) read comes
	// back split into its datagrams, batchSize of them per round.
	dgrams := make([][]byte, batchSize)
	addrs := make([]netip.AddrPort, batchSize)
	var touched []*Conn
	failures := 0
	for {
		n, err := m.sock.readBatch(dgrams, addrs)
		if m.stop.Load() {
			return
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				for _, c := range *m.conns.Load() {
					c.fail(err)
				}
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// Somebody else's deadline on a shared socket: clear it.
				m.sock.resetDeadline()
				continue
			}
			if failures++; failures > 100 {
				time.Sleep(time.Millisecond)
			}
			continue
		}
		failures = 0
		conns := *m.conns.Load()
		for i := 0; i < n; i++ {
			if c := m.dispatch(dgrams[i], addrs[i], conns); c != nil && !c.dirty {
				c.dirty = true
				touched = append(touched, c)
			}
		}
		for _, c := range touched {
			c.dirty = false
			c.flush(c.now())
		}
		clear(touched)
		touched = touched[:0]
	}
}

// dispatch hands one datagram to its connection and returns that
// connection, or nil if the datagram went elsewhere or nowhere.
func (m *mux) dispatch(b []byte, from netip.AddrPort, conns []*Conn) *Conn {
	if len(b) < wire.HeaderLen || len(b) > maxDatagram {
		m.foreign.Add(1) // too short, or too long for any MSS we accept
		return nil
	}
	dst := wire.DstID(b)
	if dst == 0 {
		if l := m.listener.Load(); l != nil {
			l.handle(b, from)
			return nil
		}
		// A rendezvous peer's handshake sent before it learned our ID.
		for _, c := range conns {
			if c.rendezvous && c.peer.ap == from && wire.IsControl(b) {
				c.handle(b, c.now())
				return c
			}
		}
		m.foreign.Add(1)
		return nil
	}
	for _, c := range conns {
		if c.id == dst {
			if c.peer.ap != from {
				break
			}
			c.handle(b, c.now())
			return c
		}
	}
	m.foreign.Add(1)
	return nil
}
