// BBR's state machine: Startup, Drain, ProbeBW's gain cycle and its
// up-phases' probing limit, and ProbeRTT (see the BBR type's "States").

package cc

import (
	"math"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/seqno"
)

// startupLossLimit is the loss fraction of a round without growth that
// ends Startup: 5 % above twice the random loss seen in Startup so far.
func (c *BBR) startupLossLimit() float64 {
	bg := 0.0
	if c.suSent > 0 {
		bg = float64(c.suLost) / float64(c.suSent)
	}
	return bbrPlateauLoss + 2*bg
}

// queueing reports whether the smoothed RTT shows a standing queue.
func (c *BBR) queueing() bool {
	return c.minRTT > 0 && c.srtt > c.minRTT+c.minRTT/4+int64(2*time.Millisecond)
}

// inNetwork estimates the packets in flight: from the ACK point, less those
// taken as arrived behind a hole.
func (c *BBR) inNetwork() float64 {
	return float64(max(seqno.Off(c.lastAck, c.nextSeq)-c.hidden, 0))
}

func (c *BBR) bdp() float64 {
	return c.bw * float64(c.minRTT) / 1e9
}

func (c *BBR) runStates(now int64) {
	switch c.state {
	case bbrStartup:
		if c.roundStart && c.bw > 0 && !c.filled {
			if c.bw >= c.fullBw*bbrFullBwGrowth {
				c.fullBw, c.fullBwRounds = c.bw, 0
			} else {
				// Three rounds without growth; or one, with losses well
				// above the background: the pipe is full and overflowing.
				c.fullBwRounds++
				c.filled = c.fullBwRounds >= bbrFullBwRounds ||
					c.lastLoss > c.startupLossLimit() && c.lostPrev >= bbrMinLosses && c.measured()
			}
		}
		if c.filled {
			c.enterDrain()
		}
	case bbrDrain:
		if c.roundStart {
			c.drainRounds++
		}
		// Down to a BDP in flight, with the RTT showing no queue (or,
		// should the RTT have grown for good, after three rounds).
		if in := c.inNetwork(); in <= c.bdp() && (!c.queueing() || c.drainRounds > 3) ||
			c.drainRounds > bbrMaxDrainRounds {
			c.enterProbeBW(now)
		}
	case bbrProbeBW:
		c.advanceCycle(now)
	case bbrProbeRTT:
		c.runProbeRTT(now)
	}
}

func (c *BBR) enterStartup() {
	c.state = bbrStartup
	c.pacingGain, c.cwndGain = bbrStartupPacingGain, bbrStartupCwndGain
}

func (c *BBR) enterDrain() {
	if c.state == bbrStartup {
		c.lossEpoch = c.now // Startup's overshoot is not the new regime's loss
	}
	c.state = bbrDrain
	c.drainRounds = 0
	c.drainRound = c.round
	c.pacingGain, c.cwndGain = bbrDrainPacingGain, bbrStartupCwndGain
}

func (c *BBR) enterProbeBW(now int64) {
	c.cutAt = max(c.cutAt, now) // only ProbeBW's own packets count for cuts
	c.state = bbrProbeBW
	c.cwndGain = bbrCwndGain
	// Start anywhere but in the draining phase (as Linux BBR).
	c.rng ^= c.rng << 13
	c.rng ^= c.rng >> 7
	c.rng ^= c.rng << 17
	c.cycleIdx = int(c.rng % 7)
	if c.cycleIdx >= 1 {
		c.cycleIdx++
	}
	c.cycleStart = now
	c.cycleLoss = c.lossEvents
	c.pacingGain = c.phaseGain()
	if bbrGainCycle[c.cycleIdx] > 1 {
		c.startProbe(now)
	}
}

// phaseGain is the pacing gain of the current ProbeBW phase: the cycle's,
// but no up-probe while a congestion cut limits the rate (bwLo's growth
// probes, and a probe would only overflow the other flow's queue).
func (c *BBR) phaseGain() float64 {
	g := bbrGainCycle[c.cycleIdx]
	if g > 1 && c.bwLo > 0 {
		g = 1
	}
	return g
}

// startProbe begins an up-phase; if the previous one lost nothing
// unusual, the probing limit grows.
func (c *BBR) startProbe(now int64) {
	if !c.probeHit && c.room > 0 {
		c.room = c.room*1.25 + 1
		if c.room >= (bbrGainCycle[0]-1)*c.bdp() {
			c.room = 0
		}
	}
	c.probeAt = now
	c.probed = c.bwLo <= 0
	if c.probed {
		c.probeBase = c.bw
		if c.round > c.drainRound+bbrBwRounds {
			// (Startup's overshoot, still in the filter, is no
			// measure of the link: in the lab it was 3 % above
			// what ProbeBW found later, alone.)
			c.linkBw = max(c.linkBw, c.bw)
		}
	}
	c.probeMax, c.probeCur = c.probeCur, 0
	c.rng ^= c.rng << 13
	c.rng ^= c.rng >> 7
	c.rng ^= c.rng << 17
	c.probeWait = int64(bbrProbeWait) + int64(c.rng%uint64(bbrProbeWait/2))
	c.probeSent, c.probeLost = 0, 0
	for i := range c.probeLowIn {
		c.probeLowIn[i] = math.MaxInt32
	}
	c.probeHit = false
}

// probeLoss counts a loss among the latest up-phase's packets. Once they
// lose clearly more than the background (by more than 2 % of them and by
// four standard deviations of the random losses to expect), the in-flight
// level where the first loss beyond those random ones happened bounds later
// probes.
func (c *BBR) probeLoss(r *bbrRecord) {
	c.probeLost++
	in := r.inflight
	for i := range c.probeLowIn { // keep the smallest few, ascending
		if in < c.probeLowIn[i] {
			in, c.probeLowIn[i] = c.probeLowIn[i], in
		}
	}
	if c.probeHit {
		return
	}
	expect := c.bgLoss * float64(c.probeSent)
	excess := float64(c.probeLost) - expect
	if excess < 3 || excess < 4*math.Sqrt(expect+1) || excess < 0.02*float64(c.probeSent) {
		return
	}
	c.probeHit = true
	k := min(int(expect), len(c.probeLowIn)-1)
	if c.probeLowIn[k] == math.MaxInt32 {
		k = 0
	}
	c.room = max(bbrProbeRoom*(float64(c.probeLowIn[k])-c.bdp()), bbrMinWindow)
	if c.state == bbrProbeBW && c.pacingGain > 1 {
		c.cycleIdx = 1 // stop probing now
		c.cycleStart = c.now
		c.cycleLoss = c.lossEvents
		c.pacingGain = bbrGainCycle[1]
	}
	if c.shared() {
		// The queue the probe overflowed is another flow's as well:
		// yield, as a loss-based flow would.
		c.sharedCuts++
		c.lower(c.now, c.probeBase, c.probeBase, cutShared)
	}
}

// advanceCycle moves to the next ProbeBW phase when this one is done and
// reports whether it did.
func (c *BBR) advanceCycle(now int64) bool {
	elapsed := now - c.cycleStart
	phase := max(c.minRTT, int64(bbrMinPhase))
	full := elapsed > phase
	in := c.inNetwork()
	bdp := c.bdp()
	var next bool
	switch g := c.pacingGain; {
	case g > 1:
		// As Linux BBR: until the extra is in flight or a loss shows the
		// pipe is full; and never beyond two minRTTs, as our in-flight
		// figure is only an estimate.
		next = full && (in >= g*bdp || c.lossEvents != c.cycleLoss) || elapsed > 2*phase ||
			c.room > 0 && in >= bdp+c.room
	case g < 1:
		// Long enough to drain the queue the smoothed RTT shows (at
		// 1-g of the rate), up to three minRTTs; early only if the
		// flight is down to a BDP and the RTT shows no queue.
		drain := max(phase, min(int64(float64(c.srtt-c.minRTT)/(1-g)), 3*phase))
		next = elapsed > drain || elapsed > int64(bbrMinPhase) && in <= bdp && !c.queueing()
	default:
		// Once an up-phase overflowed the queue, the last cruising
		// phase lasts until 6-9 s after it (a loss-based flow beside
		// us needs seconds to grow back after its cut);
		// otherwise the cycle goes on at once.
		wait := int64(0)
		if c.probeHit {
			wait = c.probeWait
		}
		next = full && (c.cycleIdx != len(bbrGainCycle)-1 || now-c.probeAt >= wait)
	}
	if next {
		c.cycleIdx = (c.cycleIdx + 1) % len(bbrGainCycle)
		c.cycleStart = now
		c.cycleLoss = c.lossEvents
		if bbrGainCycle[c.cycleIdx] > 1 {
			c.startProbe(now)
		}
		c.pacingGain = c.phaseGain()
	}
	return next
}

func (c *BBR) enterProbeRTT(now int64) {
	if c.state == bbrProbeRTT {
		return
	}
	c.state = bbrProbeRTT
	c.pacingGain, c.cwndGain = 1, bbrCwndGain
	c.probeRTTEnd = 0
	c.probeRTTAt = now
	c.probeRTTRnd = false
	c.probeRTTCwnd = max(bbrProbeRTTCwndGain*c.bdp(), bbrMinWindow)
}

func (c *BBR) runProbeRTT(now int64) {
	if c.probeRTTEnd == 0 {
		// Wait for the flight to come down (at most a second: our
		// in-flight figure is an estimate).
		if c.inNetwork() <= c.probeRTTCwnd || now-c.probeRTTAt > int64(time.Second) {
			c.probeRTTEnd = now + int64(bbrProbeRTTDuration)
			c.probeRTTSeq = c.nextSeq
		}
		return
	}
	if seqno.Off(c.probeRTTSeq, c.lastAck) > 0 {
		c.probeRTTRnd = true
	}
	if c.probeRTTRnd && now >= c.probeRTTEnd {
		c.minRTTAt = now
		c.probeRTTOut = now
		if c.filled {
			c.enterProbeBW(now)
		} else {
			c.enterStartup()
		}
	}
}
