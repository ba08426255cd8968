// Package cc holds UDT congestion controllers behind one small interface.
//
// The UDT engine's sender is the only caller: it reports events (ACKs,
// loss reports, timeouts, packets sent) together with a Snapshot of what it
// knows, and reads back the pacing interval and the congestion window. A
// controller never sees packets, sockets or the peer; time comes from an
// injected Clock so that tests drive a fake one and never sleep.
package cc

import "time"

// Clock tells a controller the time. The engine passes the wall clock,
// held still while it hands out a batch of packets that leave at one
// instant; tests pass a fake.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock (monotonic reading).
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Snapshot is the sender's state when an event is reported. Rates are in
// packets per second as UDT4 ACKs carry them (0 = not known yet).
type Snapshot struct {
	RTT        time.Duration // smoothed round-trip time
	RTTVar     time.Duration // its variance
	RecvRate   float64       // smoothed receive rate reported by the peer, packets/s
	ACKRate    float64       // OnACK: the receive rate in this very ACK (0: none)
	Bandwidth  float64       // smoothed link capacity reported by the peer, packets/s
	MaxSent    int32         // highest data sequence number sent so far
	MSS        int           // negotiated maximum packet size, bytes incl. IP/UDP headers
	FlowWindow int           // the peer's flow window from the handshake, packets
	InFlight   int           // packets sent and not yet acknowledged
	Timeouts   int           // OnTimeout: expirations in a row without progress (1 = the first)
	Guess      bool          // OnSent: a retransmission of a packet never reported lost (an overdue ACK's repair or EXP's), not a known loss

	// Received counts the packets the receiver has shown it holds: up to
	// its cumulative ACK, and up to the packet beyond each gap it
	// reported, less the packets those reports named lost (once each).
	// It grows while the ACK point waits on a hole, as SACK would.
	Received int64
}

// Controller is a congestion-control algorithm. Methods are called with the
// sender's lock held, never concurrently, and must not block or allocate
// in steady state.
type Controller interface {
	// OnACK is called for every full ACK: everything before ack arrived.
	OnACK(ack int32, s *Snapshot)
	// OnLoss is called for every loss report (NAK) once its losses are
	// queued for retransmission; first is the first lost sequence number.
	OnLoss(first int32, s *Snapshot)
	// OnTimeout is called when the EXP timer puts unacknowledged data back
	// for retransmission: on the first expiration (Snapshot.Timeouts 1)
	// only the packet at the ACK point and those reported lost before, on
	// later ones all of it.
	OnTimeout(s *Snapshot)
	// OnSent is called for each data packet handed to the socket.
	OnSent(seq int32, bytes int, retransmit bool, s *Snapshot)
	// OnCongestionWarning is called when the peer sends a delay warning
	// (control type 4).
	OnCongestionWarning()
	// PacketInterval is the time to wait between two data packets; 0 or
	// anything under a microsecond means "not paced".
	PacketInterval() time.Duration
	// Window is the congestion window in packets.
	Window() float64
}

// New returns a controller by name: "udt" (UDT4's native algorithm) or
// "bbr" (the model-based controller, see BBR). It returns nil for an
// unknown name.
func New(name string, clk Clock) Controller {
	switch name {
	case "udt", "":
		return NewNative(clk)
	case "bbr":
		return NewBBR(clk)
	}
	return nil
}
