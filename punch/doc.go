// Package punch will own NAT traversal for p2pcat: STUN on the shared UDP
// socket, NAT-type classification, the copy-paste token, NTP-synchronised
// start slots and hole punching. It hands the UDT engine a PacketConn and
// a peer address, and knows nothing of UDT internals.
//
// It is empty until the punch issue lands; today a PEER is a plain ip:port.
package punch
