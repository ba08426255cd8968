//go:build !linux

package udt

import "net"

func newBatchIO(net.PacketConn) batchIO { return nil }

func forceBuffers(net.PacketConn, int, int) {}
