//go:build linux

package udt

import "net"

// newBatchIO returns the recvmmsg/sendmmsg fast path for real UDP sockets.
func newBatchIO(pc net.PacketConn) batchIO {
	return nil // filled in by the batching change
}
