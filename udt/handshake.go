package udt

import (
	"context"
	"math/rand/v2"
	"net"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/seqno"
	"github.com/p2pcat/p2pcat/udt/internal/wire"
)

// Connection setup (shared/udt4-protocol.md §6): the client side of
// client/server (type 1 request, cookie echo as type -1, response) and
// libudt 4.11's rendezvous state machine (type 0 until the peer is heard,
// then -1; connected on the peer's -1 or -2 while at -1, or on any other
// packet once a handshake has been recorded; -2 replies once connected).

type setupMode int

const (
	modeClient setupMode = iota
	modeRendezvous
	modeServer // a listener's child
)

func (m setupMode) String() string {
	switch m {
	case modeClient:
		return "client"
	case modeRendezvous:
		return "rendezvous"
	}
	return "server"
}

// handshakeState is a connecting socket's view of the exchange, guarded by
// Conn.hsMu.
type handshakeState struct {
	mode       setupMode
	isn        int32          // our initial sequence number
	own        int32          // request type we send: rendezvous 0 or -1, client 1 or -1
	cookie     int32          // client: the listener's cookie
	stageStart int64          // client: when the -1 stage began
	last       wire.Handshake // the peer's most recent full handshake
	haveLast   bool
	done       bool
}

// Dial connects to a UDT listener at raddr over pc (client/server mode).
// pc must not be used for anything else while the connection lives. The
// context bounds connection setup only; libudt's own limit is 3 s.
func Dial(ctx context.Context, pc net.PacketConn, raddr net.Addr, cfg *Config) (*Conn, error) {
	return connect(ctx, pc, raddr, cfg, modeClient)
}

// Rendezvous connects to a peer that connects back at the same time (UDT
// rendezvous mode: both sides connect, neither listens), as libudt 4.11
// does. The context bounds connection setup; libudt's own limit is 30 s.
func Rendezvous(ctx context.Context, pc net.PacketConn, raddr net.Addr, cfg *Config) (*Conn, error) {
	return connect(ctx, pc, raddr, cfg, modeRendezvous)
}

func connect(ctx context.Context, pc net.PacketConn, raddr net.Addr, cfg *Config, mode setupMode) (*Conn, error) {
	peer, err := newEndpoint(raddr)
	if err != nil {
		return nil, err
	}
	m := newMux(pc)
	c := newConn(m, peer, cfg.withDefaults(), mode)
	m.add(c)
	tick := time.NewTicker(handshakeRetry)
	defer tick.Stop()
	for {
		c.hsMu.Lock()
		var pkt []byte
		if !c.hs.done {
			if mode == modeClient && c.hs.own == wire.ReqResponse && c.now()-c.hs.stageStart > int64(time.Second) {
				// libudt's cookie is only good within its minute: start over.
				c.hs.own, c.hs.cookie = wire.ReqRegular, 0
			}
			pkt = c.handshakePacket()
		}
		c.hsMu.Unlock()
		if pkt != nil {
			c.write(pkt)
		}
		select {
		case <-c.connected:
			return c, nil
		case <-c.closing:
			err := c.failErr
			c.Close()
			return nil, err
		case <-ctx.Done():
			c.fail(ctx.Err())
			c.Close()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

func newConn(m *mux, peer endpoint, cfg Config, mode setupMode) *Conn {
	c := &Conn{
		cfg:        cfg,
		mux:        m,
		sock:       m.sock,
		peer:       peer,
		id:         uint32(rand.Int32N(1<<30)) + 1,
		rendezvous: mode == modeRendezvous,
		start:      time.Now(),
		connected:  make(chan struct{}),
		closing:    make(chan struct{}),
		rxBuf:      make([]byte, 0, 2048),
	}
	c.hs.mode = mode
	c.hs.isn = cfg.ISN
	if c.hs.isn <= 0 {
		c.hs.isn = rand.Int32N(seqno.Max)
	}
	if mode == modeClient {
		c.hs.own = wire.ReqRegular
	}
	return c
}

// handshakePacket builds the handshake a connecting socket sends now.
func (c *Conn) handshakePacket() []byte {
	var dst uint32
	if c.hs.haveLast {
		dst = uint32(c.hs.last.SocketID)
	}
	if c.hs.mode == modeClient {
		dst = 0 // requests go to the listener
	}
	hs := c.ownHandshake(c.hs.own)
	hs.Cookie = c.hs.cookie
	return c.handshakeBytes(&hs, dst)
}

func (c *Conn) ownHandshake(req int32) wire.Handshake {
	hs := wire.Handshake{
		Version:    4,
		SockType:   wire.SockStream,
		ISN:        c.hs.isn,
		MSS:        int32(c.cfg.MSS),
		FlightFlag: int32(min(c.cfg.FlowWindow, defaultFC)),
		ReqType:    req,
		SocketID:   int32(c.id),
	}
	if a := c.peer.ap.Addr(); a.Is4() {
		hs.SetPeerIPv4(a.As4())
	}
	return hs
}

func (c *Conn) handshakeBytes(hs *wire.Handshake, dst uint32) []byte {
	b := make([]byte, 0, wire.HeaderLen+wire.HandshakeLen)
	b = wire.AppendControlHeader(b, &wire.ControlHeader{Type: wire.TypeHandshake, DstID: dst})
	return hs.Append(b)
}

// handleConnecting processes a datagram that arrived before the
// connection was established. It returns true if the datagram completed
// the setup and must now be processed as part of the connection (libudt
// peers may send data before we have seen their last handshake).
func (c *Conn) handleConnecting(b []byte, now int64) bool {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.hs.done {
		return true
	}
	if wire.IsControl(b) {
		h, body, err := wire.ParseControl(b)
		if err != nil {
			return false
		}
		if h.Type == wire.TypeHandshake {
			var hs wire.Handshake
			if hs.Parse(body) != nil {
				return false
			}
			switch c.hs.mode {
			case modeRendezvous:
				c.rendezvousHandshake(&hs)
			case modeClient:
				c.clientHandshake(&hs)
			}
			return false
		}
	}
	// Keep-alive, ACK or data from a rendezvous peer whose handshake we
	// have recorded: it is connected, and so are we (libudt does the same).
	if c.hs.mode == modeRendezvous && c.hs.haveLast {
		c.establishRendezvous()
		c.markPeerReady()
		return true
	}
	return false
}

func (c *Conn) rendezvousHandshake(hs *wire.Handshake) {
	switch hs.ReqType {
	case wire.ReqRegular:
		return // never valid towards a rendezvous socket
	case wire.ReqAgreement:
		// A -2 is built from a zeroed structure: take its ISN, ID and MSS
		// only if no full handshake has been seen.
		if !c.hs.haveLast {
			c.hs.last, c.hs.haveLast = *hs, true
		}
	default:
		c.hs.last, c.hs.haveLast = *hs, true
	}
	if c.hs.own == wire.ReqRendezvous || hs.ReqType == wire.ReqRendezvous {
		c.hs.own = wire.ReqResponse
		c.write(c.handshakePacket())
		return
	}
	c.establishRendezvous()
	if hs.ReqType == wire.ReqAgreement || c.cfg.PeerTakesEarlyData {
		// A -2 comes only from a connected socket; a -1 from one that
		// holds our handshake, which is enough for a peer that takes
		// early data.
		c.markPeerReady()
	}
}

func (c *Conn) establishRendezvous() {
	l := &c.hs.last
	c.establish(c.hs.isn, l.ISN&seqno.Max, int(l.MSS), int(l.FlightFlag), uint32(l.SocketID))
}

func (c *Conn) clientHandshake(hs *wire.Handshake) {
	switch {
	case hs.ReqType == wire.ReqRejected:
		go c.fail(ErrRejected)
	case c.hs.own == wire.ReqRegular && hs.ReqType == wire.ReqRegular:
		c.hs.cookie = hs.Cookie
		c.hs.own = wire.ReqResponse
		c.hs.stageStart = c.now()
		c.write(c.handshakePacket())
	case c.hs.own == wire.ReqResponse && hs.ReqType == wire.ReqResponse && hs.ISN == c.hs.isn:
		c.establish(c.hs.isn, c.hs.isn, int(hs.MSS), int(hs.FlightFlag), uint32(hs.SocketID))
		c.markPeerReady() // the listener connected before it answered
	}
}

// handleLateHandshake answers handshakes that arrive after we connected:
// a rendezvous peer still at -1 needs a -2 to complete.
func (c *Conn) handleLateHandshake(body []byte) {
	if !c.rendezvous {
		return
	}
	var hs wire.Handshake
	if hs.Parse(body) != nil || hs.ReqType == wire.ReqAgreement {
		return
	}
	reply := wire.Handshake{
		ISN:        c.hs.isn,
		MSS:        int32(c.mss),
		FlightFlag: defaultFC,
		ReqType:    wire.ReqAgreement,
		SocketID:   int32(c.id),
	}
	c.write(c.handshakeBytes(&reply, c.peerID))
}
