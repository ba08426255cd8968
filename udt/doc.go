// Package udt is a UDT4 stream transport over any net.PacketConn,
// wire-compatible with the reference implementation libudt 4.11 in
// client/server and rendezvous modes (see shared/udt4-protocol.md).
//
// It owns connection setup (handshake.go, listener.go), the sender
// (sender.go: send buffer, loss list, pacing, ACK and NAK processing), the
// receiver (receiver.go: reordering buffer, ACK and NAK generation,
// estimator.go: arrival-rate and packet-pair estimators), timers
// (timers.go) and the socket seam (mux.go, socket*.go). Packet formats live
// in internal/wire and congestion control behind the interface in cc.
//
// The package knows nothing of STUN, NAT traversal, framing or encryption:
// it is handed a PacketConn and a peer address, and ignores datagrams from
// any other address.
package udt
