// BBR's response to another flow: congestion loss and the queue watch,
// the cuts (or self-corrections) they lead to, bwLo's growth back, and the
// busy-host check that keeps a scheduling delay from passing for a queue
// (see the BBR type's "Congestion").

package cc

import (
	"math"
	"time"
)

// trackLag compares what the sender sent with what its pacing allowed,
// over windows of at least bbrLagWindow and a minRTT, counting only the
// stretches between ACKs that neither the window nor the application
// limited. A window that sent less than bbrLagShare of its budget marks
// the host as busy: the process did not get the CPU in time, and the
// RTT it measures then holds the hosts' scheduling delay, not a queue
// (alone in the NAT lab's e, the sender fell to 64-91 % of its pacing
// rate while the smoothed RTT rose by up to 25 ms over a path whose
// queue holds 12 ms; beside TCP CUBIC it kept 97-101 %).
func (c *BBR) trackLag(now int64, s *Snapshot) {
	if c.lagFrom == 0 {
		c.lagFrom, c.lagAt, c.lagMark = now, now, c.sentAll
		return
	}
	sent := c.sentAll - c.lagMark
	dt := now - c.lagAt
	c.lagAt, c.lagMark = now, c.sentAll
	limited := c.appLimited > c.delivered || s == nil || float64(s.InFlight)+bbrLagSlack > c.Window()
	if c.interval > 0 && !limited {
		c.lagSent += sent
		c.lagBudget += float64(dt) / float64(c.interval) * bbrPairFactor
	}
	if now-c.lagFrom < max(int64(bbrLagWindow), c.minRTT) {
		return
	}
	if c.lagBudget >= bbrLagMin && float64(c.lagSent) < bbrLagShare*c.lagBudget {
		c.hostBusyAt = now
		c.hostLags++
	}
	c.lagFrom, c.lagSent, c.lagBudget = now, 0, 0
}

// hostBusy reports whether the sender lagged behind its pacing within the
// last two RTTs (the RTT samples still in flight then hold the delay).
func (c *BBR) hostBusy(now int64) bool {
	return c.hostBusyAt > 0 && now-c.hostBusyAt < 2*max(c.srtt, c.minRTT)
}

// congestionLoss counts the loss of a packet sent in ProbeBW while not
// probing (and after the last cut), reported while a standing queue shows.
// When the round's such losses exceed the background's prediction by four
// standard deviations (and by 2; on a link known to be shared, under a
// high queue, by 1), another flow is filling the queue: the
// rate limit bwLo drops to bbrLossBeta of the rate, and losses of packets
// sent before now cause no further cut (one per window, as TCP's fast
// recovery).
func (c *BBR) congestionLoss(now int64) {
	c.npLost++
	if c.npRounds < bbrBgRounds {
		return
	}
	n := float64(max(c.npSent, c.npPrev))
	expect := c.npBg * n
	excess := float64(c.npLost) - expect
	least, slack, share := 2.0, 0.25, bbrCongestionExcess
	if c.bwLo > 0 && c.loShared && c.highQueue() {
		// On a link known to be shared, one loss beyond the background
		// under a high queue is the queue overflowing: a paced flow
		// beside a bursty one loses a packet or none when it does (the
		// bursts take the drops). Beside TCP CUBIC in the NAT lab's e,
		// bwLo grew by AIMD through 25 s of such overflows uncut while
		// CUBIC lost at each and fell from 43 to 31 Mbit/s.
		least, slack, share = 1, 0, 0
	}
	if excess < least || excess < 4*math.Sqrt(expect+slack) || excess < share*n {
		return
	}
	c.cut(now, cutLoss)
}

// The evidence a cut answers (lower).
type cutKind int

const (
	cutLoss   cutKind = iota // congestion loss beyond the background
	cutQueue                 // a standing queue outlasted a cruise (watchQueue)
	cutShared                // an up-phase overflowed a queue shared with another flow
)

// cut answers congestion: another flow's lowers bwLo (lower). But
// congestion that follows our own rise of the rate (btlbw grew within
// bbrRiseRounds minRTTs, an up-phase or ProbeRTT ended within
// bbrSelfRounds), comes before two RTTs of cruising under a standing
// queue, or while that cruise still paces above linkBw, is ours: btlbw
// was too high (the receiver's figures can exceed the link), and the
// filter restarts from what the ACKs delivered instead (selfCorrect).
// (In the NAT lab's d, 300 Mbit/s with a queue of 4 ms, btlbw sat 4-5 %
// above a linkBw a self-correction had lowered, so 0.97 of it still
// overflowed the queue, and the cut to the fair half cost 25 Mbit/s
// of a 1 GiB run.)
func (c *BBR) cut(now int64, kind cutKind) {
	if c.bwLo <= 0 {
		if why := c.selfReason(now); why >= 0 {
			c.selfWhy[why]++
			c.selfCorrect(now)
			return
		}
	}
	c.lower(now, c.rateBw(), c.bw, kind)
}

// The reasons cut finds congestion ours, in the order it tests them.
const (
	selfUndrained = iota // not two RTTs of cruising under a standing queue yet
	selfAboveLink        // cruising still paces above linkBw
	selfRose             // btlbw rose within bbrRiseRounds RTTs
	selfProbe            // an up-phase ended within bbrSelfRounds RTTs
	selfProbeRTT         // ProbeRTT ended within bbrSelfRounds RTTs
	selfReasons          // how many there are
)

// selfCuts is how many times congestion was found self-inflicted.
func (c *BBR) selfCuts() int {
	n := 0
	for _, k := range c.selfWhy {
		n += k
	}
	return n
}

// selfReason says why congestion now is ours, or -1 if it is not.
func (c *BBR) selfReason(now int64) int {
	rtt := max(c.minRTT, c.srtt)
	recent := int64(bbrSelfRounds) * rtt
	switch {
	case c.standSince == 0 || now-c.standSince <= 2*rtt:
		return selfUndrained
	case c.linkBw > 0 && bbrCruiseDrain*c.bw > c.linkBw:
		return selfAboveLink
	case now-c.bwRoseAt < int64(bbrRiseRounds)*rtt:
		return selfRose
	case now-c.probeAt < recent:
		return selfProbe
	case now-c.probeRTTOut < recent:
		return selfProbeRTT
	}
	return -1
}

// selfCorrect answers congestion found to be ours: btlbw was too high,
// and the filter restarts from what the ACKs delivered over two minRTTs
// (a correction, not a cut: at most bbrSelfCorrection of btlbw, never
// below the cuts' floor).
func (c *BBR) selfCorrect(now int64) {
	if d, _, ok := c.deliveryRates(now); ok && d > 0 && d < c.bw {
		d = max(d, bbrSelfCorrection*c.bw, bbrLossFloor*c.peakBw)
		c.restartFilter(d)
		c.linkBw = min(c.linkBw, d) // it was too high as well
	}
	c.cutAt = now
	c.cutRound = true
	c.npLost = 0
	c.queueSince = 0
	c.update()
}

// lower is the multiplicative decrease for another flow's congestion:
// bwLo to bbrLossBeta of the rate r, but a rate above bbrFairShare of
// peakBw to that share at once, and never below bbrLossFloor of it. It
// grows back (growBwLo) until it reaches bw, btlbw at the episode's first
// cut: as CUBIC's window, or as an AIMD flow fair to Reno once a cut of
// the episode was on a shared link (a shared probe's, one from below
// bbrSharedShare of linkBw, or one within bbrSharedWithin of the cut
// before). A queue cut (watchQueue: a queue another flow holds) that is
// none of these grows as AIMD for a spell of bbrQueueSpell, then as
// CUBIC's window from where it got to; so does a loss cut under a high
// queue that drains within bbrDrainRounds (drainWatch, growBwLo).
func (c *BBR) lower(now int64, r, bw float64, kind cutKind) {
	if c.bwLo <= 0 {
		c.cutBw = bw
		c.loShared, c.queueSpell = false, false
	}
	// Fast convergence (RFC 9438 §4.7) on every cut, not only below the
	// cut before: CUBIC's curve plateaus at 0.85 of the cut's rate and
	// leaves the other flow room to grow into before it probes past it.
	c.cutMax = r * (1 + bbrLossBeta) / 2
	c.bwLo = max(min(bbrLossBeta*r, bbrFairShare*c.peakBw), bbrLossFloor*c.peakBw)
	c.cutLo = c.bwLo
	rtt := float64(c.minRTT) / 1e9
	c.cutK = math.Cbrt(max(c.cutMax-c.bwLo, 0) * rtt / cubicC)
	// (Judged by btlbw at the episode's first cut: paced at bwLo, btlbw
	// falls below linkBw whoever else is there.)
	again := c.cuts > 0 && now-c.lowerAt < int64(bbrSharedWithin)
	switch {
	case kind == cutShared || again || c.belowLink(c.cutBw):
		c.loShared, c.queueSpell = true, false
	case kind == cutQueue && !c.loShared:
		c.loShared, c.queueSpell = true, true
	}
	c.drainWatch = kind == cutLoss && !c.loShared && c.highQueue()
	c.cutTime, c.lowerAt, c.growAt, c.held = now, now, now, 0
	c.cutAt = now
	c.cutRound = true
	c.npLost = 0
	c.queueSince = 0
	c.cuts++
	c.update()
}

// watchQueue cuts when a standing queue outlasts bbrQueueRounds minRTTs
// of cruising (at most btlbw, less while it shows): not ours, as we drain
// it, but a loss-based flow's, which fills any queue there is.
func (c *BBR) watchQueue(now int64) {
	if c.state == bbrProbeBW && c.pacingGain == 1 && c.standingQueue() {
		if c.standSince == 0 {
			c.standSince = now
		}
	} else {
		c.standSince = 0
	}
	if c.state != bbrProbeBW || c.pacingGain > 1 || c.minRTT <= 0 || !c.highQueue() ||
		c.npRounds < bbrBgRounds || now-c.probeAt < 2*max(c.srtt, c.minRTT) || c.hostBusy(now) {
		c.queueSince = 0
		return
	}
	if c.queueSince == 0 {
		c.queueSince = now
	} else if now-c.queueSince > bbrQueueRounds*c.minRTT && c.queueSince-max(c.probeAt, c.probeRTTOut) > 2*max(c.srtt, c.minRTT) {
		// (All of it in one cruise: not the queue an up-phase or the
		// end of ProbeRTT left.)
		c.queueCuts++
		c.cut(now, cutQueue)
	}
}

// growBwLo raises the rate limit after a cut as CUBIC raises its window,
// W(t) = C(t-K)^3 + W_max as a rate (W/minRTT), or at least as its
// Reno-friendly estimate; on a shared link by bbrAIMDAlpha packets per
// RTT each RTT alone. It lifts the limit once it reaches btlbw.
func (c *BBR) growBwLo(now int64) {
	if c.bwLo <= 0 || c.minRTT <= 0 {
		return
	}
	if c.drainWatch {
		switch {
		case c.loShared || now-c.lowerAt > bbrDrainRounds*c.minRTT:
			c.drainWatch = false
		case !c.standingQueue():
			// A loss cut under a high queue, and the queue drained
			// as we slowed: the queue was load, not jitter, and the
			// loss followed a cruise under it, so another flow held
			// it. As after a queue cut, a spell of AIMD leaves it the
			// room. (Beside TCP CUBIC in the NAT lab's e, a loss cut
			// first, on CUBIC's curve, left CUBIC 28-29 Mbit/s; a
			// queue cut first, 35-41.)
			c.drainWatch = false
			c.loShared, c.queueSpell = true, true
		}
	}
	if c.queueSpell && now-c.lowerAt > int64(bbrQueueSpell) {
		// A queue cut's spell of AIMD is over: on from here as CUBIC's
		// window past its W_max (the convex part). The queue said
		// another flow was there, but not that it is large: beside TCP
		// CUBIC in the NAT lab's e, the cut came 3 s in, while CUBIC,
		// which had lost at a window of ~9 in our Startup, grew on its
		// own slow clock (1-16 Mbit/s until 10 s); CUBIC's curve took
		// bwLo back to 85 % of the link by then, the queue overflowed,
		// and CUBIC lost again at a window of ~150 and needed until 25 s
		// to reach its half. The spell leaves it the room; and should
		// the cut have been a mistake, alone, the convex curve is back
		// at the link some 10 s after the spell.
		c.queueSpell, c.loShared = false, false
		c.cutTime, c.cutLo, c.cutMax, c.cutK, c.held = now, c.bwLo, c.bwLo, 0, 0
	}
	hold := c.standingQueue() && c.held < int64(c.cutK*1e9)
	if hold {
		// Someone else is filling the queue: hold (CUBIC's clock
		// stops), leave the room to it; but for no longer than K in
		// all, so growth at most takes twice as long. Jitter alone can
		// look like a standing queue (in the NAT lab's impaired path
		// the smoothed RTT sat 13 ms above minRTT), and there a clock
		// held for good kept the rate at the cut's floor to the end.
		c.held += now - c.growAt
		c.cutTime += now - c.growAt
	}
	rtt := float64(c.minRTT) / 1e9
	if c.loShared {
		// Another flow shares the link: grow as an AIMD flow with
		// bbrLossBeta's decrease that is as fair to Reno as Reno (RFC
		// 9438 §4.3). CUBIC's curve took the room back within K, before
		// the TCP flow beside us could grow into it.
		if !hold {
			c.bwLo += bbrAIMDAlpha * float64(now-c.growAt) / 1e9 / (rtt * rtt)
		}
	} else {
		// CUBIC's window, or its Reno-friendly estimate where that is
		// larger (RFC 9438 §4.3): at short RTTs the cubic curve, whose
		// clock is in seconds, is far slower than a packet per RTT. On
		// loopback (minRTT 0.1 ms) it took K = 2.2 s to get back to
		// the cut's rate, longer than the whole transfer.
		el := float64(now-c.cutTime) / 1e9
		t := el - c.cutK
		est := c.cutLo + bbrAIMDAlpha*el/(rtt*rtt)
		c.bwLo = max(c.bwLo, c.cutMax+cubicC*t*t*t/rtt, est)
	}
	c.growAt = now
	if c.bwLo >= c.cutBw {
		c.bwLo = 0
	}
}

// highQueue is a standing queue of more than max(2 ms, minRTT/16) and the
// RTT's variation: a link emulator or a busy host alone adds a few ms.
func (c *BBR) highQueue() bool {
	return c.minRTT > 0 && c.srtt > c.minRTT+max(int64(2*time.Millisecond), c.minRTT/16)+c.rttVar
}

// standingQueue reports whether the smoothed RTT shows a queue: above
// minRTT by more than max(2 ms, minRTT/32) and the RTT's variation (path
// jitter alone is not a queue).
func (c *BBR) standingQueue() bool {
	return c.minRTT > 0 && c.srtt > c.minRTT+max(int64(2*time.Millisecond), c.minRTT/32)+c.rttVar
}

// shared reports whether the latest up-phase began from a btlbw clearly
// below the link's (linkBw): another flow takes part of it. Alone, the
// btlbw a probe starts from stays within some 3 % of the largest;
// beside a TCP flow it is what the queue's share leaves us. A paced flow
// beside a bursty one loses little when the queue overflows (the bursts
// take the drops), so in the NAT lab the losses that tell are a probe's.
func (c *BBR) shared() bool {
	return c.probed && c.belowLink(c.probeBase) && c.npRounds >= bbrBgRounds
}

// belowLink reports whether bw is clearly below linkBw (if known): what
// another flow on the link leaves us.
func (c *BBR) belowLink(bw float64) bool {
	return c.linkBw > 0 && bw < bbrSharedShare*c.linkBw
}

// rateBw is the bandwidth the sender paces at: btlbw, or after congestion
// loss bwLo (not the less of the two: paced at bwLo, btlbw falls to it,
// and bwLo's growth is what probes then).
func (c *BBR) rateBw() float64 {
	if c.bwLo > 0 {
		return c.bwLo
	}
	return c.bw
}
