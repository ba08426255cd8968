package udt

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

// testPkt is the datagram size of MSS 1500, as the sender builds them.
const testPkt = 1500 - ipUDPHeaderBytes

// fill writes datagram number i of round r into b.
func fill(b []byte, r, i int) {
	for j := range b {
		b[j] = byte(r*31 + i*7 + j)
	}
	if len(b) >= 8 {
		binary.BigEndian.PutUint32(b, uint32(r))
		binary.BigEndian.PutUint32(b[4:], uint32(i))
	}
}

// opaqueConn hides the *net.UDPConn inside it, so that the socket takes
// the one-datagram-per-call path that other PacketConns (and other
// systems) get.
type opaqueConn struct{ *net.UDPConn }

// TestSocketPlainPath sends a batch of mixed sizes through the plain path
// of socket.writeBatch and reads it back through socket.readBatch: one
// datagram per call, whole, in order, from the sender; a datagram too
// long for the mux comes back longer than maxDatagram, for it to drop.
func TestSocketPlainPath(t *testing.T) {
	listen := func() *net.UDPConn {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Skip(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc.(*net.UDPConn)
	}
	rxc, txc := listen(), listen()
	for _, pc := range []net.PacketConn{opaqueConn{rxc}, struct{ net.PacketConn }{rxc}} {
		rx, tx := newSocket(pc), newSocket(opaqueConn{txc})
		if rx.batch != nil || tx.batch != nil {
			t.Fatal("fast path on a PacketConn that is no *net.UDPConn")
		}
		_ = rxc.SetReadDeadline(time.Now().Add(10 * time.Second))
		store := make([]byte, 8*testPkt)
		var bufs [][]byte
		for i, n := range []int{testPkt, testPkt, 700, testPkt, 16, 1, testPkt, 1000} {
			b := store[i*testPkt:][:n]
			fill(b, 0, i)
			bufs = append(bufs, b)
		}
		bufs = append(bufs, make([]byte, maxDatagram+100))
		to := endpoint{ap: rxc.LocalAddr().(*net.UDPAddr).AddrPort()}
		to.addr = net.UDPAddrFromAddrPort(to.ap)
		if n, err := tx.writeBatch(bufs, &to); n != len(bufs) || err != nil {
			t.Fatalf("writeBatch = %d, %v; want %d, nil", n, err, len(bufs))
		}
		from := txc.LocalAddr().(*net.UDPAddr).AddrPort()
		dgrams := make([][]byte, batchSize)
		addrs := make([]netip.AddrPort, batchSize)
		for i, want := range bufs {
			n, err := rx.readBatch(dgrams, addrs)
			if n != 1 || err != nil {
				t.Fatalf("readBatch = %d, %v; want 1, nil", n, err)
			}
			if addrs[0] != from {
				t.Errorf("datagram %d from %v, want %v", i, addrs[0], from)
			}
			if i == len(bufs)-1 {
				if len(dgrams[0]) <= maxDatagram {
					t.Errorf("oversize datagram read as %d bytes", len(dgrams[0]))
				}
				continue
			}
			if !bytes.Equal(dgrams[0], want) {
				t.Errorf("datagram %d: got %d bytes, want %d (or different contents)", i, len(dgrams[0]), len(want))
			}
		}
	}
}
