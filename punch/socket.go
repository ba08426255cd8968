package punch

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v3"
)

// Socket is the one UDP socket of a p2pcat run while it discovers its
// public address and punches: a reader goroutine routes STUN responses to
// the transaction waiting for them (by transaction ID, whatever address
// they come from: RFC 3489's CHANGE-REQUEST answers come from elsewhere)
// and our punch probes to the prober. Anything else is dropped. Release
// stops the reader and hands the socket on, untouched, to UDT.
type Socket struct {
	conn *net.UDPConn

	mu      sync.Mutex
	pending map[[stun.TransactionIDSize]byte]chan *stun.Message
	probes  chan Datagram

	stopOnce sync.Once
	stopping chan struct{}
	done     chan struct{}
}

// Datagram is a received packet and its source.
type Datagram struct {
	B    []byte
	From netip.AddrPort
}

// NewSocket starts reading conn.
func NewSocket(conn *net.UDPConn) *Socket {
	s := &Socket{
		conn:     conn,
		pending:  make(map[[stun.TransactionIDSize]byte]chan *stun.Message),
		probes:   make(chan Datagram, 256),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	go s.readLoop()
	return s
}

// LocalAddr is the socket's local address.
func (s *Socket) LocalAddr() netip.AddrPort {
	return s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// WriteTo sends one datagram.
func (s *Socket) WriteTo(b []byte, to netip.AddrPort) error {
	_, err := s.conn.WriteToUDPAddrPort(b, to)
	return err
}

// Probes delivers the punch probes that arrive.
func (s *Socket) Probes() <-chan Datagram { return s.probes }

// Release stops reading and returns the socket for the next user.
func (s *Socket) Release() *net.UDPConn {
	s.stopOnce.Do(func() {
		close(s.stopping)
		_ = s.conn.SetReadDeadline(time.Unix(1, 0))
		<-s.done
		_ = s.conn.SetReadDeadline(time.Time{})
	})
	return s.conn
}

func (s *Socket) readLoop() {
	defer close(s.done)
	buf := make([]byte, 2048)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		select {
		case <-s.stopping:
			return
		default:
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		b := buf[:n]
		switch {
		case stun.IsMessage(b):
			m := &stun.Message{Raw: append([]byte(nil), b...)}
			if m.Decode() != nil {
				continue
			}
			s.mu.Lock()
			ch := s.pending[m.TransactionID]
			s.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default:
				}
			}
		case isProbe(b):
			select {
			case s.probes <- Datagram{B: append([]byte(nil), b...), From: from}:
			default:
			}
		}
	}
}

// ErrNoResponse is returned when a STUN server does not answer in time.
var ErrNoResponse = errors.New("no response")

// Transact sends a STUN request to server and waits for the response with
// the same transaction ID, retransmitting after 100, 200, 400 … ms (RFC
// 5389 §7.2.1 with a shorter first timeout) until ctx ends.
func (s *Socket) Transact(ctx context.Context, server netip.AddrPort, req *stun.Message) (*stun.Message, error) {
	ch := make(chan *stun.Message, 1)
	s.mu.Lock()
	s.pending[req.TransactionID] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, req.TransactionID)
		s.mu.Unlock()
	}()
	rto := 100 * time.Millisecond
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case m := <-ch:
			return m, nil
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, ErrNoResponse
			}
			return nil, ctx.Err()
		case <-t.C:
			if err := s.WriteTo(req.Raw, server); err != nil {
				return nil, err
			}
			t.Reset(rto)
			rto = min(2*rto, 1600*time.Millisecond)
		}
	}
}
