// BBR's model: the minRTT filter, the bandwidth samples and btlbw's max
// filter over rounds, delivery over a long window, and the rounds
// themselves (see the BBR type's "Model" and "Bandwidth samples").

package cc

import (
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/seqno"
)

// updateMinRTT feeds an RTT sample to the 10 s min filter.
func (c *BBR) updateMinRTT(rtt, now int64) {
	if rtt <= 0 || rtt > bbrMaxRTT {
		return
	}
	expired := c.minRTT != 0 && now-c.minRTTAt > int64(bbrMinRTTWindow)
	if expired && c.state != bbrProbeRTT {
		// Not refreshed for 10 s: drain the queue to check, to a window
		// set by the old value (the new sample may well include a queue).
		c.enterProbeRTT(now)
	}
	if c.minRTT == 0 || rtt <= c.minRTT || expired {
		c.minRTT, c.minRTTAt = rtt, now
	} else if rtt <= c.minRTT+max(int64(bbrMinRTTSlack), c.minRTT/64) {
		// Within a hair of the minimum: there is no queue that ProbeRTT
		// would drain, so the minimum stands another 10 s. (A sample a
		// tenth of a millisecond above a lucky minimum otherwise sent a
		// path with an empty queue into ProbeRTT every 10 s, at 0.8 % of
		// its throughput in lab scenario e.)
		c.minRTTAt = now
	}
}

// sampleBandwidth takes the bandwidth samples an ACK offers: the delivery
// rate from the record of the newest packet it covers, if that sample is
// clean, and the receiver's arrival rate, capped at our own sending rate.
func (c *BBR) sampleBandwidth(r *bbrRecord, now int64) {
	sample := 0.0
	if r != nil && c.clean(r) {
		iv := max(r.sent-r.firstTx, now-r.deliveredAt)
		if n := c.delivered - r.delivered; n > 0 && iv > 0 && iv >= c.minRTT {
			sample = float64(n) * 1e9 / float64(iv)
		}
	}
	// The receiver cannot see more than we sent (its report may be about
	// the previous phase, so the probing gain at least), and within a
	// round not more than that gain times btlbw at the round's start: per
	// ACK, a cap relative to btlbw would compound (2.77^11 in 110 ms of
	// Startup).
	probeGain := max(c.pacingGain, bbrGainCycle[0])
	delivered, sent, haveRates := c.deliveryRates(now)
	if b := c.recvRate; b > 0 && !c.recvUntrusted && c.filled && haveRates && b > bbrArtefactGain*max(sent, c.bw) {
		// Far more than we sent and far beyond the model: libudt's
		// receiver, fed packets in bunches, reports up to 10^6
		// packets/s, and its figures are inflated even when they look
		// plausible. Capped or not, a sender that follows them floods
		// the path; after a few such reports, stop listening to them.
		// (Not in Startup: a libudt receiver's median over 16 packet
		// intervals honestly shows the line rate of the unpaced first
		// flights. Nor against what we sent alone: after a timeout we
		// send little, and the figure may be older than that.)
		if c.artefacts++; c.artefacts >= bbrArtefacts {
			c.distrustReceiver(now)
		}
	}
	if c.recvUntrusted {
		// Without the receiver's figure: the rate at which its ACKs and
		// loss reports showed packets arriving (Snapshot.Received).
		// Unlike the cumulative ACK it does not stall on a hole and jump
		// when the hole fills, so the delivery-rate sample above, which
		// such jumps inflate, is not taken either. A window that ends
		// just after a report can count a little more than arrived in
		// it, hence the round's cap. (Samples from windows in which we
		// sent little new data do count: the max filter outlasts them,
		// and without them a btlbw too high to send at would never
		// come down.)
		sample = 0
		if d, _, ok := c.seenRate(now); ok {
			if c.roundBw > 0 {
				d = min(d, probeGain*c.roundBw)
			}
			sample = d
		}
	} else if b := c.recvRate; b > 0 {
		if base := max(c.roundBw, c.startupBase()); base > 0 {
			b = min(b, probeGain*base)
		} else if c.bw > 0 {
			b = min(b, probeGain*c.bw)
		} else if c.firstSend >= 0 && now > c.firstSend {
			// No model yet: at most what we have sent so far, per
			// second, times the gain.
			sent := float64(seqno.Off(c.lastAck, c.nextSeq)) + float64(c.delivered)
			b = min(b, c.pacingGain*sent*1e9/float64(max(now-c.firstSend, c.minRTT)))
		}
		if haveRates && delivered > 0 {
			// At most bbrDeliveryCapGain (1.5 pacing gains in Startup,
			// which grows 2.77x per round) times what the ACKs
			// delivered over the last two minRTTs.
			b = min(b, max(bbrDeliveryCapGain, 1.5*c.pacingGain)*delivered)
		}
		sample = max(sample, b)
	}
	sample = min(sample, bbrMaxRate)
	// An up-phase, or the phase after it, when its packets are ACKed.
	probing := c.state == bbrProbeBW && (c.pacingGain > 1 || c.cycleIdx == 1)
	if c.state == bbrProbeBW && !probing && c.bwLo <= 0 && c.standingQueue() {
		// Not probing (nor seeing an up-phase's packets arrive, nor
		// held to bwLo, whose growth the samples follow), and the
		// queue says the link is full: we sent at most btlbw, so
		// a rate above it is the figures' noise (the receiver's read
		// batches, the ACK clock, a queue draining), not more link.
		// Alone in the NAT lab's e, such a sample 0.8 % above btlbw
		// left the 0.97 cruise still above the link, and the queue it
		// kept cut the rate to the fair half. (Without a queue the
		// noise does no harm, and on a lossy path, whose up-phases end
		// early, the filter needs those samples: in the simulator's
		// 1 % loss the link's use fell from 91 to 87 % without them.)
		sample = min(sample, c.bw)
	}
	if sample <= 0 || r != nil && r.flags&recAppLimited != 0 && sample < c.bw {
		return
	}
	if probing {
		c.probeCur = max(c.probeCur, sample)
	}
	slot := &c.bwSlots[c.round%bbrBwRounds]
	if slot.round != c.round {
		slot.round, slot.max = c.round, 0
	}
	if sample > slot.max {
		slot.max = sample
		if sample > c.bw {
			if sample > c.bw*bbrBwRose {
				c.bwRoseAt = now
			}
			c.bw = sample
			c.peakBw = max(c.peakBw, sample)
		}
	}
}

// measured reports whether, in Startup, btlbw has reached what the
// initial window makes per minRTT: before that, the figures are the engine's initial guess and
// a few app-limited packets, and losses then say nothing about a full
// pipe. (In the lab's impaired path, a head repair of 15 packets in the
// second round trip ended Startup at 16 packets/s, and ProbeBW took half a
// minute to grow from there.)
func (c *BBR) measured() bool {
	base := c.startupBase()
	return base > 0 && c.bw >= base*bbrInitialWindow/bbrStartupWindow
}

// startupBase is, in Startup, bbrStartupWindow per minRTT (0 otherwise,
// or without an RTT): the least btlbw that the pacing rate and the
// round's cap on samples grow from. The first figures are the engine's
// initial guess and the key exchange above (some 16 packets/s), and a cap
// of 2.77 times that per round took three round trips to reach what the
// initial window alone sends.
func (c *BBR) startupBase() float64 {
	if c.state != bbrStartup || c.minRTT <= 0 {
		return 0
	}
	return bbrStartupWindow * 1e9 / float64(c.minRTT)
}

// distrustReceiver stops believing the receiver's arrival rate for good,
// and restarts the bandwidth filter from what its ACKs and loss reports
// show arriving, if that tells anything: the filter's samples came from
// the figures now found wanting.
func (c *BBR) distrustReceiver(now int64) {
	c.recvUntrusted = true
	seen, fresh, ok := c.seenRate(now)
	if !ok || seen <= 0 || seen >= c.bw || c.seenLimited(fresh) {
		return
	}
	c.restartModel(seen)
}

// restartFilter restarts the bandwidth filter (and the up-phases'
// samples kept in it) from bw.
func (c *BBR) restartFilter(bw float64) {
	for i := range c.bwSlots {
		c.bwSlots[i] = bbrBwSlot{}
	}
	c.probeMax, c.probeCur = 0, 0
	c.bwSlots[c.round%bbrBwRounds] = bbrBwSlot{round: c.round, max: bw}
	c.bw = bw
}

// restartModel restarts the filter from bw and forgets the largest
// figures measured before (peakBw, linkBw): they came from a model now
// found wanting.
func (c *BBR) restartModel(bw float64) {
	c.restartFilter(bw)
	c.peakBw = bw
	c.linkBw = 0
}

// markDelivered remembers the delivered count, one mark per 10 ms at most.
func (c *BBR) markDelivered(now int64) {
	last := &c.dmarks[(c.dmarkIx+bbrDeliveryMarks-1)%bbrDeliveryMarks]
	if last.at != 0 && now-last.at < int64(10*time.Millisecond) {
		last.delivered, last.sent, last.seen, last.sentNew = c.delivered, c.sentAll, c.seen, c.sentNew
		return
	}
	c.dmarks[c.dmarkIx] = bbrDeliveryMark{at: now, delivered: c.delivered, sent: c.sentAll, seen: c.seen, sentNew: c.sentNew}
	c.dmarkIx = (c.dmarkIx + 1) % bbrDeliveryMarks
}

// deliveryRates returns the rate at which the cumulative ACKs delivered
// packets and the rate at which packets were sent (retransmissions
// included), both over the last max(2 minRTT, bbrDeliveryWindow), or
// ok false while there is not half that much history.
func (c *BBR) deliveryRates(now int64) (delivered, sent float64, ok bool) {
	from, span := c.rateSpan(now)
	if from == nil {
		return 0, 0, false
	}
	return float64(c.delivered-from.delivered) / span, float64(c.sentAll-from.sent) / span, true
}

// seenRate is the rate at which the receiver showed packets arriving
// (Snapshot.Received) over the last two minRTTs (at least
// bbrDeliveryWindow), and the rate at which we sent new packets then.
func (c *BBR) seenRate(now int64) (seen, fresh float64, ok bool) {
	from, span := c.rateSpan(now)
	if from == nil {
		return 0, 0, false
	}
	return float64(c.seen-from.seen) / span, float64(c.sentNew-from.sentNew) / span, true
}

// seenLimited reports whether a seenRate figure says more about us than
// about the path: we sent new packets at well under btlbw (the window was
// full of packets behind holes, or the application had nothing). Such a
// figure does not reset the model (heavy loss, distrustReceiver).
func (c *BBR) seenLimited(fresh float64) bool {
	return fresh < bbrSeenLimited*c.bw
}

// rateSpan returns the delivery mark that deliveryRates and seenRate
// measure from: the newest at least max(2 minRTT, bbrDeliveryWindow) old
// (or the oldest kept), and the seconds since it; nil while there is not
// half that much history.
func (c *BBR) rateSpan(now int64) (*bbrDeliveryMark, float64) {
	w := max(2*c.minRTT, int64(bbrDeliveryWindow))
	var from *bbrDeliveryMark
	for i := 1; i <= bbrDeliveryMarks; i++ {
		m := &c.dmarks[(c.dmarkIx-i+2*bbrDeliveryMarks)%bbrDeliveryMarks]
		if m.at == 0 {
			break
		}
		from = m
		if now-m.at >= w {
			break
		}
	}
	if from == nil || now-from.at < w/2 {
		return nil, 0
	}
	return from, float64(now-from.at) / 1e9
}

// clean reports whether a sample from r counts only packets that arrived
// within its interval: r itself was never retransmitted and the ACK point
// when it left was not a lost packet (with something hidden behind it).
func (c *BBR) clean(r *bbrRecord) bool {
	if r.flags&recRetrans != 0 {
		return false
	}
	return !c.lostAt(r.ackAtSend)
}

// lostAt reports whether seq is known to be lost (NAKed or retransmitted),
// or too old to tell.
func (c *BBR) lostAt(seq int32) bool {
	h := &c.ring[seq&bbrRingMask]
	if h.seq != seq || h.flags&recValid == 0 {
		return true
	}
	return h.flags&(recRetrans|recNAKed) != 0
}

// recomputeBw takes the maximum over the filter window.
func (c *BBR) recomputeBw() {
	// Up-phases come up to 6-9 s apart, longer than the filter's rounds on a
	// path of 100 ms: their samples count until the next one's.
	bw := max(c.probeMax, c.probeCur)
	for i := range c.bwSlots {
		if s := &c.bwSlots[i]; s.round > c.round-bbrBwRounds && s.round <= c.round {
			bw = max(bw, s.max)
		}
	}
	if bw > 0 {
		c.bw = bw
	}
}

// startRound closes the loss accounting of the round that ended, opens the
// next one, and acts on heavy loss.
func (c *BBR) startRound(now int64) {
	c.round++
	c.roundStart = true
	c.roundBw = c.bw
	c.roundEnd = c.nextSeq
	c.roundAt = now
	total := c.sentRound + c.lostRound
	c.lastLoss = 0
	if total > 0 {
		c.lastLoss = float64(c.lostRound) / float64(total)
	}
	lost := c.lostRound
	c.lostPrev = lost
	c.sentPrev = c.sentRound
	c.sentRound, c.lostRound = 0, 0
	if c.state == bbrProbeBW && !c.recovering && !c.cutRound && c.npSent > 0 {
		// The background for congestion loss: the loss rate of what
		// ProbeBW sends while not probing (a mean over the first
		// rounds, then smoothed by 1/8), rounds that cut excepted.
		c.npRounds++
		c.npBg += (float64(c.npLostAll)/float64(c.npSent) - c.npBg) / float64(min(c.npRounds, 8))
	}
	c.npPrev, c.npSent, c.npLost, c.npLostAll = c.npSent, 0, 0, 0
	c.recomputeBw()
	if c.state != bbrStartup && !c.recovering && total > 0 {
		c.bgLoss += (c.lastLoss - c.bgLoss) / 8
	}
	c.cutRound = false
	c.growBwLo(now)
	if c.state == bbrStartup {
		c.suSent += c.sentPrev
		c.suLost += lost
	}

	if lost < bbrMinLosses || c.recovering {
		return
	}
	switch {
	case c.state == bbrStartup && c.lastLoss > bbrStartupLoss && c.measured():
		c.filled = true
	case c.state != bbrStartup && c.lastLoss > bbrHeavyLoss && c.queueing():
		// Heavy loss and a queue: the path got slower than the model.
		// The receiver's arrival rate is what the path carries now;
		// restart the filter from it and drain the queue.
		c.lossEpoch = now
		carried := c.recvRate
		if c.recvUntrusted {
			if seen, fresh, ok := c.seenRate(now); ok && !c.seenLimited(fresh) {
				carried = seen
			} else {
				carried = 0 // we sent too little to tell
			}
		}
		if carried > 0 && carried < c.bw {
			c.restartModel(carried)
		}
		if c.state != bbrProbeRTT {
			c.enterDrain()
		}
	}
}

// roundTimeout ends a round that has lasted two RTTs (plus the ACK
// period): while the ACK point sits on a hole the ACK does not move, and
// rounds counted by ACKs alone would stall the filters and the loss
// accounting for as long as the repair takes.
func (c *BBR) roundTimeout(now int64) {
	rtt := max(c.minRTT, c.srtt)
	if rtt > 0 && now-c.roundAt > 2*rtt+int64(bbrACKHeadroom) {
		c.startRound(now)
	}
}
