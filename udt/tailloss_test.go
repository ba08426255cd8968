package udt

import (
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/internal/memlink"
	"github.com/p2pcat/p2pcat/udt/internal/seqno"
)

// TestTailLoss loses the first transmission of the last 500 data packets
// of a transfer: the receiver sees no later packet, so no gap and no NAK,
// and only the sender's EXP can recover. A first expiration that resends
// only the packet at the ACK point makes progress with it, so the next one
// is a first one again: one packet per EXP period (300 ms or more), about
// 150 s for the 500 (seen on loopback UDP when the receiver's socket
// buffer overflows at the end of a burst). It should take well under 10 s.
//
// sender.go's onTimeout therefore also resends the newest packet in flight
// on a first expiration (a tail-loss probe: the receiver then sees the gap
// and NAKs it all at once); with that, this takes about 0.4 s.
func TestTailLoss(t *testing.T) {
	const (
		isn  = 1000
		size = 4 << 20
		tail = 500
	)
	packets := (size + 1455) / 1456 // payload 1456 at MSS 1500
	first := int32(isn + packets - tail)
	seen := make([]bool, tail)
	drop := func(p []byte) bool {
		if len(p) < 16 || p[0]&0x80 != 0 {
			return true // control
		}
		seq := int32(uint32(p[0])<<24|uint32(p[1])<<16|uint32(p[2])<<8|uint32(p[3])) & seqno.Max
		if off := seqno.Off(first, seq); off >= 0 && off < tail && !seen[off] {
			seen[off] = true
			return false
		}
		return true
	}
	cfg := &Config{ISN: isn}
	a, b, pa, pb := pairOver(t, memlink.Config{Filter: drop}, memlink.Config{}, false, cfg, cfg)
	res := oneWay(t, a, b, testData(size), 10*time.Second, func() { closeLink(pa, pb) })
	t.Logf("%d bytes in %v; writer %+v", res.received, res.elapsed.Round(time.Millisecond), a.Stats())
}
