package udt

import (
	"time"

	"github.com/p2pcat/p2pcat/udt/cc"
)

// Protocol constants of UDT4 / libudt 4.11.
const (
	synInterval      = 10 * time.Millisecond  // SYN: ACK and rate-control period
	handshakeRetry   = 250 * time.Millisecond // handshake retransmission
	expMinimum       = 300 * time.Millisecond // minimum EXP period per expiration count
	lightACKEvery    = 64                     // packets between light ACKs
	probeModulus     = 16                     // packet pair after seq % 16 == 0
	initialRTT       = 100 * time.Millisecond
	initialRTTVar    = 50 * time.Millisecond
	ipUDPHeaderBytes = 28 // MSS counts IP and UDP headers (IPv4 sizes, as libudt)
	defaultFC        = 25600
	ackHistoryLen    = 1024
)

// Implementation choices of ours (not visible on the wire).
const (
	keepAliveIdle   = 500 * time.Millisecond // send a keep-alive after this much sending silence
	nakMinInterval  = 40 * time.Millisecond  // lowest period for re-reporting an unrepaired loss
	reorderHold     = 3 * time.Millisecond   // a gap must last this long before its first NAK
	batchSize       = 64                     // datagrams per read/write batch
	peerReadyGrace  = time.Second            // send data even without proof that the peer is connected
	maxPacingBurst  = 2 * time.Millisecond   // pacing debt forgiven after a late wake-up
	repairRunMin    = 16                     // packets repairHead resends from a head never reported lost
	defaultIdleDead = 6 * time.Second
)

// Config tunes a connection. The zero value (or nil) gives libudt's
// defaults.
type Config struct {
	// MSS is the maximum packet size including IP and UDP headers
	// (default 1500, as libudt, on every interface; at most 9244, a
	// 9216-byte datagram).
	MSS int
	// FlowWindow is the receive buffer in packets, advertised to the peer
	// as its flight flag size (default 8192).
	FlowWindow int
	// SendBuffer is the send buffer in packets (default 8192).
	SendBuffer int
	// CC builds the congestion controller (default: cc.NewBBR, a
	// loss-tolerant model-based controller; cc.NewNative is UDT4's own).
	CC func(cc.Clock) cc.Controller
	// PeerTimeout is how long total silence from the peer is tolerated
	// before the connection is declared broken (default 6 s; libudt's
	// own is about 46 s).
	PeerTimeout time.Duration
	// Linger bounds how long Close waits for unacknowledged data (default
	// 180 s, as libudt; a dead peer ends it after PeerTimeout anyway).
	Linger time.Duration
	// LibudtRate makes the receive rate in our full ACKs at least the
	// figure libudt 4.11's receiver would send: the mean of the last 16
	// packet arrival intervals that lie within a factor of 8 of their
	// median. A libudt sender sizes its window from that field (rate ×
	// (RTT + 10 ms) + 16 packets, once out of slow start), and libudt's
	// figure runs high (packets arrive in bunches), which is what lets
	// libudt reach its own speed; our receiver's honest figure held a
	// libudt sender to a fifth of that. Our own sender leans less on a
	// figure like that (it is a libudt receiver's), so set it only where
	// the peer may be libudt: p2pcat --raw.
	LibudtRate bool
	// PeerTakesEarlyData says the rendezvous peer keeps data that comes
	// before its side of the handshake completes, as this package does
	// once it holds the peer's handshake. Data may then flow the moment a
	// rendezvous connects on the peer's -1 response (which the peer sends
	// only once it holds ours), instead of waiting up to a round trip for
	// a first packet from the connected peer. libudt 4.11 drops such data
	// and its sender crawls after losing a first flight, so leave it off
	// where the peer may be libudt (p2pcat --raw).
	PeerTakesEarlyData bool
	// ISN forces the initial sequence number (tests); 0 means random.
	ISN int32
	// Logf, if set, receives debug messages.
	Logf func(format string, args ...any)
}

func (c *Config) withDefaults() Config {
	var r Config
	if c != nil {
		r = *c
	}
	if r.MSS == 0 {
		r.MSS = 1500
	}
	if r.MSS < 76 {
		r.MSS = 76
	}
	if r.MSS > maxDatagram+ipUDPHeaderBytes {
		// Never advertise more than the reader can take in (§6.2).
		r.MSS = maxDatagram + ipUDPHeaderBytes
	}
	if r.FlowWindow <= 0 {
		r.FlowWindow = 8192
	}
	if r.FlowWindow < 32 {
		r.FlowWindow = 32
	}
	if r.SendBuffer <= 0 {
		r.SendBuffer = 8192
	}
	if r.SendBuffer < 32 {
		r.SendBuffer = 32
	}
	if r.CC == nil {
		r.CC = func(clk cc.Clock) cc.Controller { return cc.NewBBR(clk) }
	}
	if r.PeerTimeout <= 0 {
		r.PeerTimeout = defaultIdleDead
	}
	if r.Linger <= 0 {
		r.Linger = 180 * time.Second
	}
	return r
}

func (c *Config) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}
