package udt

import (
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/wire"
)

// timerLoop is the connection's timer goroutine. Every SYN (10 ms) it runs
// each timer's handler in turn:
//
//   - expiredACK: the periodic full ACK (and window updates);
//   - expiredNAK: re-reports losses that a retransmission has not repaired
//     (libudt 4.11 compiled this out; we keep it because a lost NAK or
//     retransmission otherwise waits for the sender's EXP);
//   - expiredHead: the oldest unacknowledged packet is overdue: resend it;
//   - expiredEXP: the peer's silence: go-back-N retransmission, keep-alives,
//     and after Config.PeerTimeout the end of the connection;
//   - expiredKeepAlive: a keep-alive when we have sent nothing for a while;
//   - expiredPeerReady: data may flow even without proof that the peer
//     finished connecting.
func (c *Conn) timerLoop() {
	defer c.wg.Done()
	t := time.NewTicker(synInterval)
	defer t.Stop()
	buf := make([]byte, 0, c.mss)
	for {
		select {
		case <-t.C:
		case <-c.closing:
			return
		}
		now := c.now()
		buf = c.expiredACK(buf[:0], now)
		buf = c.expiredNAK(buf[:0], now)
		c.expiredHead(now)
		if !c.expiredEXP(now) {
			return
		}
		c.expiredKeepAlive(now)
		c.expiredPeerReady(now)
	}
}

// smoothRTT feeds an RTT sample to a smoothed RTT and its variation, as
// libudt (and RFC 6298) do: the variation by 1/4 towards |sample - srtt|,
// then srtt by 1/8 towards the sample.
func smoothRTT(srtt, rttVar *int64, sample int64) {
	d := sample - *srtt
	if d < 0 {
		d = -d
	}
	*rttVar = (3**rttVar + d) / 4
	*srtt = (7**srtt + sample) / 8
}

// expiredACK sends the periodic full ACK, or a window update when the
// application has drained a buffer we had reported nearly full.
func (c *Conn) expiredACK(buf []byte, now int64) []byte {
	r := &c.rcv
	r.mu.Lock()
	force := r.lastAvail < r.window/4 && r.avail() >= r.window/2
	buf = r.appendFullACK(buf, c.peerID, now, force)
	r.mu.Unlock()
	if len(buf) > 0 {
		c.stats.acksSent.Add(1)
		c.write(buf)
	}
	return buf
}

// expiredNAK re-reports losses older than about one retransmission round.
func (c *Conn) expiredNAK(buf []byte, now int64) []byte {
	r := &c.rcv
	r.mu.Lock()
	interval := 2 * (r.rtt + 4*r.rttVar)
	if interval < int64(nakMinInterval) {
		interval = int64(nakMinInterval)
	}
	buf = r.appendNAKs(buf, c.peerID, now, interval, c.mss-ipUDPHeaderBytes)
	r.mu.Unlock()
	if len(buf) > 0 {
		c.stats.naksSent.Add(1)
		c.write(buf)
	}
	return buf
}

// expiredHead resends the packet holding the ACK point back once its ACK is
// overdue (sender.repairHead).
func (c *Conn) expiredHead(now int64) {
	s := &c.snd
	s.mu.Lock()
	repaired := s.repairHead(now)
	s.mu.Unlock()
	if repaired > 0 {
		c.stats.headRepairs.Add(uint64(repaired))
		notify(s.wake)
	}
}

// expiredEXP is libudt's EXP timer split in its two jobs. The peer's
// silence beyond Config.PeerTimeout ends the connection (libudt's own
// limit is about 46 s). Unacknowledged data without progress for the
// retransmission timeout goes back for retransmission (go-back-N), with the
// timeout growing per expiration as in libudt. It returns false when the
// connection has ended.
func (c *Conn) expiredEXP(now int64) bool {
	if now-c.lastHeard.Load() > int64(c.cfg.PeerTimeout) {
		c.fail(ErrPeerTimeout)
		return false
	}
	s := &c.snd
	s.mu.Lock()
	resent := 0
	if s.inFlight() > 0 && now-s.lastProgress > s.rto() {
		resent = s.onTimeout()
		if resent > 0 && c.cfg.Logf != nil { // the guard spares boxing the numbers
			c.cfg.logf("udt: EXP %d: resending %d of %d unacknowledged packets", s.expCount, resent, s.inFlight())
		}
		s.expCount++
		s.lastProgress = now
	}
	s.mu.Unlock()
	if resent > 0 {
		notify(s.wake)
	}
	return true
}

// expiredKeepAlive keeps the peer (and any NAT on the way) from seeing
// silence while we have nothing to send. A listener's child stays silent
// until its client speaks (see expiredPeerReady).
func (c *Conn) expiredKeepAlive(now int64) {
	if c.awaitingClient() {
		return
	}
	if now-c.lastSent.Load() >= int64(keepAliveIdle) {
		c.sendControl(wire.TypeKeepAlive, 0)
	}
}

// expiredPeerReady lets data flow after a grace period even if the
// rendezvous peer never proved it finished connecting; EXP recovers
// anything it dropped. A listener's child has no grace: its client may
// still be retrying a request whose response was lost, and a libudt client
// gives up on the first non-handshake packet. A connected client always
// speaks first (its keep-alive, ACK or data), so the child waits for that.
func (c *Conn) expiredPeerReady(now int64) {
	if c.hs.mode != modeServer && !c.snd.peerReadyHint() && now-c.connectedT >= int64(peerReadyGrace) {
		c.markPeerReady()
	}
}

// awaitingClient reports whether we are a listener's child whose client
// has not yet shown it is connected: until then only the listener's
// handshake response may reach it.
func (c *Conn) awaitingClient() bool {
	return c.hs.mode == modeServer && !c.snd.peerReadyHint()
}
