package cc

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/seqno"
)

// Constants of UDT4's native algorithm (libudt 4.11 CUDTCC).
const (
	// synInterval is UDT's SYN: the rate-control period. Rate control
	// runs at most once per SYN.
	synInterval = 10 * time.Millisecond
	synMicros   = float64(synInterval / time.Microsecond)

	initialWindow = 16  // W at start, packets; also the floor of W after slow start
	initialPeriod = 1.0 // P at start, µs: effectively unpaced

	// defaultMaxWindow stands in for an unknown flow window (FlowWindow <= 0):
	// what a default 4.11 peer advertises in its handshake.
	defaultMaxWindow = 8192
	// defaultMSS stands in for an unknown MSS (MSS <= 0).
	defaultMSS = 1500

	// minIncrease is 4.11's floor on the per-SYN increase, in packets
	// (raised from 1/MSS to 0.01 in 2012, see ccc.cpp).
	minIncrease = 0.01
	// increaseBeta is the β of the increase formula: 1.5e-6.
	increaseBeta = 0.0000015
	// decreaseFactor multiplies P on a decrease: the rate drops to 8/9.
	decreaseFactor = 1.125
	// maxDecreasesPerEpoch caps the decreases within one congestion epoch
	// (0.875^5 ≈ 0.51: the rate is not more than halved per epoch).
	maxDecreasesPerEpoch = 5

	// maxPeriod is our own upper bound on P, µs (1 s): no event, however
	// odd the Snapshot, may slow the sender below one packet a second.
	maxPeriod = 1e6

	// maxCWnd is our own upper bound on W, packets: half the sequence space,
	// beyond which sequence comparisons break down anyway. It only keeps W
	// finite when a Snapshot carries absurd rates.
	maxCWnd = 1 << 30

	// pcgStream is the fixed second PCG seed word; the first is lastDecSeq.
	pcgStream = 0x5544_5434_4343_2e31 // "UDT4CC.1"
)

// Native is UDT4's own congestion control, as libudt 4.11 implements it in
// CUDTCC: a rate-based AIMD on the inter-packet interval P with a window W
// that only matters during slow start. See §10 of udt4-protocol.md.
//
// Where this differs from 4.11 it says so at the spot; the differences are
// all in corner cases (a units bug, reordered ACKs, unbounded intervals).
type Native struct {
	clk Clock

	// anchored is false until the first event tells us where the sequence
	// space starts (4.11 gets this from setSndCurrSeqNo before init).
	anchored bool
	lastRC   time.Time // time of the last rate-control step (OnACK)

	period    float64 // P, inter-packet interval, µs
	cwnd      float64 // W, congestion window, packets
	slowStart bool

	lastAck int32 // last ACK seen in slow start
	loss    bool  // a loss was reported since the last rate-control step

	lastDecSeq    int32   // highest sent at the last decrease: the epoch boundary
	lastDecPeriod float64 // P just before the last new-epoch decrease
	nakCount      int     // NAKs in the current epoch
	avgNAKNum     int     // smoothed NAKs per epoch
	decCount      int     // NAKs considered for a decrease in this epoch
	decRandom     int     // decrease on every decRandom-th NAK of an epoch

	rng rand.PCG // reseeded from lastDecSeq at each epoch: no global state
}

var _ Controller = (*Native)(nil)

// NewNative returns UDT4's native controller in its initial state: P = 1 µs,
// W = 16, slow start. Call it when the connection is established: like
// 4.11, the first rate-control step is one SYN after creation.
func NewNative(clk Clock) *Native {
	if clk == nil {
		clk = SystemClock{}
	}
	return &Native{
		clk:           clk,
		lastRC:        clk.Now(),
		period:        initialPeriod,
		cwnd:          initialWindow,
		slowStart:     true,
		lastDecPeriod: 1,
		decRandom:     1,
	}
}

// anchor sets 4.11's init() sequence state: lastAck = the sender's current
// sequence number (ISN-1 before anything is sent), lastDecSeq = lastAck-1.
func (c *Native) anchor(cur int32) {
	c.anchored = true
	c.lastAck = cur
	c.lastDecSeq = seqno.Dec(cur)
}

// anchorFrom anchors at the snapshot's highest sent number if no earlier
// event has done it.
func (c *Native) anchorFrom(s *Snapshot) {
	if !c.anchored {
		c.anchor(s.MaxSent)
	}
}

// OnACK is 4.11's CUDTCC::onACK: at most once per SYN, grow W in slow
// start, otherwise set W from the receive rate and, unless a loss was seen
// since the last step, shorten P by the increase formula.
func (c *Native) OnACK(ack int32, s *Snapshot) {
	c.anchorFrom(s)
	now := c.clk.Now()
	if now.Sub(c.lastRC) < synInterval {
		return
	}
	c.lastRC = now

	recvRate := rate(s.RecvRate)
	rtt := rttMicros(s)
	if c.slowStart {
		// 4.11 adds seqlen(lastAck, ack) unconditionally; for an ACK older
		// than lastAck (reordered) that is ~2^31 and ends slow start with
		// an absurd window. We count only forward progress.
		if d := seqno.Off(c.lastAck, ack); d >= 0 {
			c.setWindow(c.cwnd + float64(d+1)) // seqlen: inclusive, as 4.11
			c.lastAck = ack
		}
		if c.cwnd <= maxWindow(s) {
			return // no rate increase during slow start
		}
		c.endSlowStart(recvRate, rtt)
		// As in 4.11, the step goes on to the increase below (W keeps
		// its slow-start value until the next step).
	} else {
		c.setWindow(recvRate*(rtt+synMicros)/1e6 + initialWindow)
	}

	if c.loss {
		c.loss = false
		return
	}

	// spare = B - current rate, packets/s. 4.11 keeps B as an int and
	// truncates spare to int64; Trunc/Floor reproduce that for whole-number
	// rates without converting possibly huge floats to integers.
	bw := rate(s.Bandwidth)
	spare := -1.0 // P == 0: unpaced, the current rate is unbounded
	if c.period > 0 {
		spare = math.Trunc(bw - 1e6/c.period)
	}
	if c.period > c.lastDecPeriod && math.Floor(bw/9) < spare {
		spare = math.Floor(bw / 9)
	}
	inc := minIncrease
	if spare > 0 {
		mss := float64(s.MSS)
		if s.MSS <= 0 {
			mss = defaultMSS
		}
		inc = max(minIncrease, pow10Ceil(spare*mss*8)*increaseBeta/mss)
	}
	// inc more packets per SYN: 1/P' = 1/P + inc/SYN.
	c.setPeriod(c.period * synMicros / (c.period*inc + synMicros))
}

// OnLoss is 4.11's CUDTCC::onLoss: end slow start; on the first loss
// beyond lastDecSeq start a new congestion epoch and raise P by 1/8;
// within an epoch raise it again on every decRandom-th NAK, at most five
// decreases per epoch.
func (c *Native) OnLoss(first int32, s *Snapshot) {
	c.anchorFrom(s)
	if c.slowStart {
		recvRate := rate(s.RecvRate)
		c.endSlowStart(recvRate, rttMicros(s))
		if recvRate > 0 {
			return // send at the receive rate; no decrease, no loss flag
		}
		// No receive rate known: go on to decrease from the rate derived
		// from the window.
	}

	c.loss = true

	first &= seqno.Max // a loss-list entry may carry the range bit
	if seqno.Cmp(first, c.lastDecSeq) > 0 {
		// New congestion epoch.
		c.lastDecPeriod = c.period
		c.setPeriod(math.Ceil(c.period * decreaseFactor))
		c.avgNAKNum = int(math.Ceil(float64(c.avgNAKNum)*0.875 + float64(c.nakCount)*0.125))
		c.nakCount = 1
		c.decCount = 1
		c.lastDecSeq = s.MaxSent
		c.decRandom = c.randomDecrease()
		return
	}

	// Same epoch. 4.11: if (DecCount++ < 5 && ++NAKCount % DecRandom == 0);
	// we stop counting at 5 instead of letting DecCount run on (same result,
	// no overflow).
	if c.decCount >= maxDecreasesPerEpoch {
		return
	}
	c.decCount++
	c.nakCount++
	if c.nakCount%c.decRandom == 0 {
		c.setPeriod(math.Ceil(c.period * decreaseFactor))
		c.lastDecSeq = s.MaxSent
	}
}

// randomDecrease returns 4.11's DecRandom = max(1, ceil(AvgNAKNum * u)),
// u uniform, seeded from lastDecSeq so that it is a function of the epoch
// (4.11: srand(lastDecSeq); rand()/RAND_MAX, u in [0,1]; here u in (0,1]).
// The generator is a value inside c: no allocation, no shared state.
func (c *Native) randomDecrease() int {
	c.rng.Seed(uint64(uint32(c.lastDecSeq)), pcgStream)
	u := float64(c.rng.Uint64()>>11+1) / (1 << 53)
	return max(1, int(math.Ceil(float64(c.avgNAKNum)*u)))
}

// OnTimeout is 4.11's CUDTCC::onTimeout: it ends slow start and does
// nothing else (4.11 has the after-slow-start decrease commented out).
func (c *Native) OnTimeout(s *Snapshot) {
	c.anchorFrom(s)
	if c.slowStart {
		c.endSlowStart(rate(s.RecvRate), rttMicros(s))
	}
}

// OnSent has no effect on the rate or window. Only the first call matters:
// it anchors the sequence state at seq-1 (4.11's m_iSndCurrSeqNo = ISN-1 at
// init), whatever the engine's MaxSent convention.
func (c *Native) OnSent(seq int32, bytes int, retransmit bool, s *Snapshot) {
	if c.anchored {
		return
	}
	if retransmit {
		c.anchorFrom(s)
		return
	}
	c.anchor(seqno.Dec(seq))
}

// OnCongestionWarning lengthens P by 1/8 (the rate drops to 8/9).
//
// 4.11 applies this to the sender's copy of the interval (with a ceil in
// CPU ticks, i.e. none to speak of), and the next CCUpdate — after the next
// packet received — overwrites it with CUDTCC's P, so there it is nearly a
// no-op; 4.11 receivers never send the warning anyway. We apply it to P.
func (c *Native) OnCongestionWarning() {
	c.setPeriod(c.period * decreaseFactor)
}

// PacketInterval returns P.
func (c *Native) PacketInterval() time.Duration {
	return time.Duration(math.Round(c.period * float64(time.Microsecond)))
}

// Window returns W.
func (c *Native) Window() float64 { return c.cwnd }

// endSlowStart is 4.11's slow-start exit: send at the receive rate if one
// is known, otherwise spread the window over RTT+SYN.
//
// 4.11 uses P = (RTT+SYN)/W only in onACK. In onLoss and onTimeout it
// writes P = W/(RTT+SYN), packets per µs where µs per packet is meant:
// with W = 16 and RTT = 100 ms that is 0.00015 µs, i.e. unpaced, right
// after a loss. We use (RTT+SYN)/W everywhere.
func (c *Native) endSlowStart(recvRate, rtt float64) {
	c.slowStart = false
	if recvRate > 0 {
		c.setPeriod(1e6 / recvRate)
	} else {
		c.setPeriod((rtt + synMicros) / c.cwnd)
	}
}

// setPeriod stores P clamped to [0, maxPeriod]. 4.11 has no bounds except
// UDT_MAXBW (not offered here); ours keep a tiny receive rate or a run of
// decreases from stalling the sender.
func (c *Native) setPeriod(p float64) {
	switch {
	case !(p <= maxPeriod): // also NaN
		p = maxPeriod
	case p < 0:
		p = 0
	}
	c.period = p
}

// setWindow stores W, at most maxCWnd (4.11 has no bound).
func (c *Native) setWindow(w float64) {
	c.cwnd = min(w, maxCWnd)
}

// rate returns a snapshot rate, with unknown or nonsense values as 0.
func rate(r float64) float64 {
	if r > 0 && r <= math.MaxFloat64 {
		return r
	}
	return 0
}

// rttMicros returns the snapshot's RTT in µs, never negative.
func rttMicros(s *Snapshot) float64 {
	if s.RTT <= 0 {
		return 0
	}
	return float64(s.RTT) / float64(time.Microsecond)
}

// maxWindow is 4.11's m_dMaxCWndSize: the flow window from the handshake.
func maxWindow(s *Snapshot) float64 {
	if s.FlowWindow <= 0 {
		return defaultMaxWindow
	}
	return float64(s.FlowWindow)
}

// pow10Ceil returns 10^ceil(log10(x)) for x > 0: the smallest power of ten
// not below x (+Inf beyond the float64 range). math.Log10 is not exact at
// every power of ten, so the exponent is corrected against exact powers.
func pow10Ceil(x float64) float64 {
	if x > math.MaxFloat64 {
		return x
	}
	e := int(min(max(math.Ceil(math.Log10(x)), -323), 309))
	for e > -323 && math.Pow10(e-1) >= x {
		e--
	}
	for e < 309 && math.Pow10(e) < x {
		e++
	}
	return math.Pow10(e)
}
