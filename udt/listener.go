package udt

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/wire"
)

// Listener accepts UDT client connections on a PacketConn (client/server
// mode, §6.1): a type-1 request gets a cookie, the type -1 request that
// echoes it gets a connection.
type Listener struct {
	mux    *mux
	cfg    Config
	secret [32]byte
	start  time.Time
	accept chan *Conn

	mu       sync.Mutex
	closed   bool
	children map[childKey]*Conn
	done     chan struct{}
}

type childKey struct {
	addr netip.AddrPort
	id   int32
}

// ErrListenerClosed is returned by Accept after Close.
var ErrListenerClosed = errors.New("udt: listener closed")

// Listen starts accepting UDT connections on pc.
func Listen(pc net.PacketConn, cfg *Config) (*Listener, error) {
	l := &Listener{
		cfg:      cfg.withDefaults(),
		start:    time.Now(),
		accept:   make(chan *Conn, 16),
		children: make(map[childKey]*Conn),
		done:     make(chan struct{}),
	}
	if _, err := rand.Read(l.secret[:]); err != nil {
		return nil, err
	}
	l.mux = newMux(pc)
	l.mux.setListener(l)
	return l, nil
}

// Accept waits for the next connection.
func (l *Listener) Accept(ctx context.Context) (*Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.done:
		return nil, ErrListenerClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Addr returns the local address.
func (l *Listener) Addr() net.Addr { return l.mux.sock.pc.LocalAddr() }

// Close stops accepting. Connections already accepted keep working (and
// their late handshakes are still answered); unaccepted ones are closed.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	l.mu.Unlock()
	for {
		select {
		case c := <-l.accept:
			c.Close()
			continue
		default:
		}
		break
	}
	l.mux.release()
	return nil
}

// cookie is our SYN cookie for a client address in a given minute.
func (l *Listener) cookie(from netip.AddrPort, minute int64) int32 {
	mac := hmac.New(sha256.New, l.secret[:])
	b, _ := from.MarshalBinary()
	mac.Write(b)
	var m [8]byte
	binary.BigEndian.PutUint64(m[:], uint64(minute))
	mac.Write(m[:])
	return int32(binary.BigEndian.Uint32(mac.Sum(nil)))
}

// handle processes a connection request (destination socket ID 0) on the
// reader goroutine.
func (l *Listener) handle(b []byte, from netip.AddrPort) {
	h, body, err := wire.ParseControl(b)
	if err != nil || h.Type != wire.TypeHandshake || len(body) != wire.HandshakeLen {
		l.mux.foreign.Add(1)
		return
	}
	var hs wire.Handshake
	if hs.Parse(body) != nil {
		return
	}
	to := endpoint{ap: from, addr: net.UDPAddrFromAddrPort(from)}
	minute := int64(time.Since(l.start) / time.Minute)
	switch hs.ReqType {
	case wire.ReqRegular:
		reply := hs
		reply.Cookie = l.cookie(from, minute)
		l.send(&reply, uint32(hs.SocketID), &to)
	case wire.ReqResponse:
		if hs.Cookie != l.cookie(from, minute) && hs.Cookie != l.cookie(from, minute-1) {
			return
		}
		if hs.Version != 4 || hs.SockType != wire.SockStream {
			reply := hs
			reply.ReqType = wire.ReqRejected
			l.send(&reply, uint32(hs.SocketID), &to)
			return
		}
		key := childKey{from, hs.SocketID}
		l.mu.Lock()
		c := l.children[key]
		if c == nil && !l.closed {
			c = newConn(l.mux, to, l.cfg, modeServer)
			c.hs.isn = hs.ISN
			c.hsMu.Lock()
			c.establish(hs.ISN, hs.ISN, int(hs.MSS), int(hs.FlightFlag), uint32(hs.SocketID))
			c.hsMu.Unlock()
			l.mux.add(c)
			l.children[key] = c
			c.onClose = func() {
				l.mu.Lock()
				if l.children[key] == c {
					delete(l.children, key)
				}
				l.mu.Unlock()
			}
			select {
			case l.accept <- c:
			default:
				go c.Close() // backlog full
			}
		}
		l.mu.Unlock()
		if c == nil {
			return
		}
		reply := wire.Handshake{
			Version:    4,
			SockType:   wire.SockStream,
			ISN:        hs.ISN,
			MSS:        int32(c.mss),
			FlightFlag: int32(min(l.cfg.FlowWindow, defaultFC)),
			ReqType:    wire.ReqResponse,
			SocketID:   int32(c.id),
			Cookie:     hs.Cookie,
		}
		if from.Addr().Is4() {
			reply.SetPeerIPv4(from.Addr().As4())
		}
		// Nothing but this response goes to the client until it proves it
		// is connected: a libudt client that lost the response gives up
		// connecting on the first other packet it gets, keep-alive or data.
		l.send(&reply, uint32(hs.SocketID), &to)
	}
}

func (l *Listener) send(hs *wire.Handshake, dst uint32, to *endpoint) {
	b := make([]byte, 0, wire.HeaderLen+wire.HandshakeLen)
	b = wire.AppendControlHeader(b, &wire.ControlHeader{Type: wire.TypeHandshake, DstID: dst})
	_ = l.mux.sock.write(hs.Append(b), to)
}
