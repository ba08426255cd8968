package cc

import (
	"fmt"
	"math"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/seqno"
)

// BBR is a model-based, paced congestion controller in the manner of BBR
// (Cardwell et al., "BBR: Congestion-Based Congestion Control", 2016, and
// draft-cardwell-iccrg-bbr-congestion-control), fitted to what a UDT4
// sender learns: cumulative ACKs every SYN (10 ms), the RTT and receive
// rate fields in them, NAKs, and the EXP timeout. Nothing here needs a
// cooperating receiver: a libudt 4.11 peer will do.
//
// # Model
//
// The controller estimates the bottleneck bandwidth btlbw (packets/s) and
// the round-trip propagation time minRTT, sends at pacing_gain × btlbw and
// caps the data in flight near cwnd_gain × btlbw × minRTT. Random loss does
// not enter the model: a lost packet costs a retransmission, not rate.
//
// OnSent writes a record for each new packet into a ring of 2^15 entries
// indexed by seq & mask (preallocated: nothing allocates per packet; a
// record older than the ring is simply missing and yields no sample): send
// time, delivered count and its time, the send time of the newest packet
// acknowledged by then (BBR's first_tx), the ACK point, the in-flight level,
// and flags (retransmitted, reported lost, app-limited, sent while probing).
//
// # Bandwidth samples
//
// UDT ACKs are cumulative and carry no SACK. While the ACK point sits on a
// lost packet, whatever arrives behind it is invisible; when the
// retransmission fills the hole the ACK jumps and counts a backlog as
// delivered at once. With 1 % loss and a 100 ms RTT the ACK point sits on a
// hole nearly all the time, and BBR's delivery-rate samples
// (tcp_rate.c: delivered since the packet left / max(send elapsed, ACK
// elapsed)) are then too high after a jump and too low during a stall; fed
// to a max filter they run away. So each ACK that moves the ACK point
// offers two samples, and the larger counts:
//
//   - the delivery rate from the record of ack-1, only if it is clean: ack-1
//     was never retransmitted and the ACK point when it left was not a lost
//     packet (nothing was hidden behind it), and its interval is at least
//     minRTT (no ACK compression);
//   - the receiver's arrival rate (Snapshot.RecvRate, the ACK's receive rate
//     field, which counts every packet that arrives, holes or not), capped
//     at max(pacing_gain, 1.25) × btlbw: the receiver cannot see more than
//     we sent, so a larger figure is a measurement artefact.
//
// A receiver whose figure is, after Startup, more than 4 times both what
// we sent over the last two minRTTs and btlbw, three times, is not
// believed again: libudt's receiver (a median over 16 packet intervals)
// reports up to 10^6 packets/s when packets come bunched, and inflated
// figures that pass the caps below. From then on the only sample is the
// rate of Snapshot.Received over two minRTTs (what the receiver's ACKs and
// loss reports show arriving: the packet beyond each reported gap arrived,
// the gap did not), at most the gain times btlbw at the round's start; it
// does not stall behind a hole and jump when the hole fills as the
// cumulative ACK does. The filter restarts from that rate when the
// receiver loses our trust, unless we sent too little new data to tell.

// The engine smooths the receive rate (7/8 per ACK), so it lags by some
// eight ACKs: on lossy paths Startup grows by about 1.8 instead of 2 per
// round, and a probe reveals only part of any new bandwidth. The link
// capacity field (packet pairs) is not used: it is unreliable under jitter.
//
// btlbw is the maximum sample over the last 10 rounds. A round ends when
// the ACK passes the highest sequence number sent when it began, or after
// 2 RTTs and two ACK periods (the ACK point may be stuck on a hole). Samples
// from app-limited packets count only if they raise btlbw; a packet is
// app-limited when it leaves after a silence much longer than the pacing
// interval that no ACK or NAK ended.
//
// minRTT is the minimum over 10 s of two kinds of samples. Ours: from
// sending ack-1 (if never retransmitted) to its ACK. They include the
// receiver's ACK delay, but ack-1 is the last packet to arrive before the
// ACK left, so the delay is about one packet time at any useful rate (at
// worst one SYN, which the window's headroom covers); behind a hole they
// are inflated. And the receiver's ACK/ACK2 RTT (Snapshot.RTT), never below
// the path's RTT and not held up by holes, once 64 ACKs have washed its
// 100 ms starting value out of both smoothings.
//
// # States
//
// Startup: pacing gain 4·ln2 ≈ 2.77, cwnd gain 2/ln2 ≈ 2.89. It ends after
// three rounds without 25 % growth of btlbw; or one, if that round also
// lost more than 5 % (plus twice the loss seen before in Startup: random
// loss alone never ends it); or as soon as a round's retransmissions exceed
// 20 % of the previous round's packets (at least 8 losses each time). The
// loss-based ends wait until btlbw has reached the initial window per
// minRTT (before that the figures are guesses). A loss is the first
// retransmission of a packet, unless it is a guess (Snapshot.Guess: the
// engine repairing an overdue ACK or EXP resending, for a packet nobody
// reported lost): a head repair resends a run of 16 that mostly arrived.
//
// Drain: pacing gain 1/2.89 until the flight is down to a BDP and the
// smoothed RTT shows no queue (or after three rounds).
//
// ProbeBW: gain cycle 1.25, 0.75, 1, 1, 1, 1, 1, 1 from a pseudo-random
// phase, phases timed by sends as well as ACKs (no ACKs come while the ACK
// point is stuck). 1.25 lasts a minRTT and until 1.25 BDP is in flight or
// a NAK came, at most two minRTTs. 0.75 lasts long enough to drain the
// queue the smoothed RTT shows (at most three minRTTs), less if the flight
// is down to a BDP and no queue shows. 1 lasts a minRTT; but after an
// up-phase that overflowed the queue (below) the last 1 lasts until 6-9 s
// (at random) after it: a probe into a full queue costs a loss-based flow
// beside us a cut, and it needs seconds to grow back (BBRv2's 2-3 s left
// TCP CUBIC 16 % of the NAT lab's e, 6-9 s 21 %; alone unchanged). The
// samples of the latest two up-phases (and the phase after each) stay in
// btlbw until the next, as they may be further apart than
// the filter's 10 rounds. A 1 phase paces at 0.97 while the smoothed RTT
// shows a standing queue (below): btlbw a little above the link would
// otherwise fill a shallow queue over such a cruise and overflow it. The
// packets of an up-phase and of the 0.75 phase after it count as the
// probe's (they meet the queue it built). As a simplified
// BBRv2 inflight_hi: when the packets of an up-phase are lost clearly more
// often than the background (by over 2 % of them and 4 standard
// deviations), the in-flight level at which its first extra loss left
// tells how much queue there is; later up-phases stop at 3/4 of that room,
// which grows by a quarter with each probe that loses nothing unusual.
//
// # Congestion
//
// In the manner of BBRv2's bw_lo, but fired only by what random loss does
// not explain. A standing queue: the smoothed RTT above minRTT by more
// than max(2 ms, minRTT/32) and the RTT variation (jitter alone is not a
// queue). The background: the loss rate of the packets ProbeBW sends while
// not probing, a mean over its first 8 rounds, then smoothed by 1/8 per
// round (rounds that cut excepted); nothing counts before those 8 rounds.
// Congestion is either
//
//   - loss: a packet sent in ProbeBW while not probing (and after the last
//     cut) and reported lost while a standing queue shows counts; when a
//     round's such losses exceed the background's prediction by 4
//     standard deviations, by 2 and by 0.5 % of the round's packets; or
//   - a queue: one of more than max(2 ms, minRTT/16) and the RTT
//     variation that lasts 8 minRTTs of one cruise (not the aftermath of
//     an up-phase or of ProbeRTT), although we pace below btlbw then: not
//     ours but a loss-based flow's, which fills any queue there is. Not
//     while the sender lags behind its pacing (trackLag): then the RTT
//     holds the busy host's scheduling delay.
//
// Congestion within 16 minRTTs of btlbw's rise by 1 % or 4 of the end of
// an up-phase or ProbeRTT, before two RTTs of cruising at 0.97 under a
// standing queue, or while 0.97 of btlbw is still above linkBw (below), is
// ours: btlbw was too high (the receiver's figures can exceed the link;
// alone in the NAT lab's e a rise of 2 % during a cruise filled the queue
// and overflowed it 10 minRTTs later), and the filter
// restarts from the rate
// the ACKs delivered over two minRTTs (but from no less than 0.95 of
// btlbw, nor than the floor below). Otherwise it is another flow's: the
// rate limit bwLo drops to 0.7 (BBRv2's and CUBIC's beta) of the rate,
// but a rate above half the largest btlbw since the model last restarted
// to that half at once, and never below 0.45 of it (so that a flow that
// ignores loss, as BBRv1, cannot push us below that, whatever the cuts'
// count); losses of packets sent before then cause no further cut (one
// per window, as TCP's fast recovery). bwLo then grows as CUBIC's window:
// C(t-K)³ + W_max as a rate (over minRTT), RFC 9438's C and Reno-friendly
// region (0.53 packets per RTT where that is faster), with fast
// convergence on every cut (W_max 0.85 of the cut's rate: the plateau
// leaves another flow room to grow into before the curve probes past);
// or, on a shared link (below), by those 0.53 packets per RTT each RTT
// alone: with the decrease of 0.7, RFC 9438's AIMD as fair to Reno.
// Growth holds while a standing queue shows (the room is the other
// flow's; but for at most K in all, as jitter can look like a standing
// queue for good), until bwLo is back at btlbw as of the first cut, when
// it is lifted. While it holds, the sender paces at bwLo rather than
// btlbw (btlbw falls to what it sends) and ProbeBW does not probe up:
// bwLo's growth is the probe. State reports "(bw-lo)" meanwhile.
//
// A shared link: linkBw is the largest btlbw an up-phase began from
// (since the model last restarted; not within 10 rounds of Drain, while
// Startup's overshoot is in the filter). Alone, later up-phases begin
// within some 3 % of it (the NAT lab's e: 8 338-8 745 packets/s); beside
// another flow, from what the queue's share leaves us. An up-phase that
// begins below 0.95 of linkBw and loses clearly (as for inflight_hi
// above) cuts too, from the btlbw it began with: a paced flow beside a
// bursty TCP loses little when the queue overflows (the bursts take the
// drops), so in the NAT lab beside CUBIC the losses of our probes were
// the only ones that told, and CUBIC kept 9 % of the link. The link is
// taken as shared after such a cut, after any cut from below 0.95 of
// linkBw, and after one within 20 s of the cut before: another flow that
// keeps filling the queue. An isolated cut is cheap if it was a mistake
// (alone, the NAT lab's jitter or a busy host can pass for another
// flow's queue): the cubic curve is near the cut's rate within K. But
// beside TCP CUBIC, which starts inside our Startup's overshoot, loses
// there and grows again from a few packets, that curve took the room
// back before CUBIC could grow into it, cut after cut, and CUBIC kept
// 21 % of the NAT lab's e; cuts to the fair half growing as AIMD leave it
// a third.
//
// ProbeRTT: when minRTT has not been refreshed for 10 s (a sample within
// max(0.2 ms, minRTT/64) of it refreshes it too), the window drops to
// half the BDP before the refresh (BBRv2's choice rather than 4 packets) for
// 200 ms and a round, then back.
//
// # Outputs
//
// PacketInterval is 1/(pacing_gain × btlbw) (bwLo instead while it
// holds), stretched by 16/15 for the
// engine's packet pairs (after each seq%16 == 0 the next packet goes out at
// once and counts no interval). Before the first RTT sample the sender is
// unpaced and held by the window of 16. In Startup the rate is at least
// pacing_gain × 32 packets per minRTT and never falls (as Linux's BBR from
// its initial window): the first bandwidth figures are the engine's
// initial guess (16 packets/s) and the key exchange above, a few
// app-limited packets, and pacing by them alone held the first round trips
// to a packet every 24 ms. (From 16 packets per minRTT, 1 MB across the
// NAT lab's c took 0.90 s after the key exchange, median of 5; from 32,
// 0.59 s.)
//
// Window is cwnd_gain × BDP + btlbw × 40 ms (ACKs come only every 10 ms,
// and a hole adds the NAK hold and its repair), at least 4 packets, 16 in Startup
// (cwnd_gain × 32 once it has an RTT), plus the packets behind a hole. The
// engine counts in flight from the cumulative ACK point, so behind a hole it
// counts packets that have long arrived, and the sender would stall for the
// round trip the repair takes (several, if the retransmission or the NAK is
// lost). When the ACK point is a known hole (NAKed, retransmitted, or
// unacknowledged for 5/4 RTT and two ACK periods while ACKs and NAKs still
// arrive), the packets beyond it sent more than one smoothed RTT ago are
// taken as no longer in flight (arrived, or lost themselves). A queue that
// grows faster than the smoothed RTT follows would pass for arrived, so the
// allowance is bounded by the model's window: three times that in ProbeBW
// and ProbeRTT while the smoothed RTT shows no queue, once otherwise.
//
// # Loss and timeouts
//
// Loss cuts the rate only as congestion loss (above); a loss is counted
// against the regime its packet was sent in (not, say, Startup's overshoot against ProbeBW). Heavy loss
// corrects the model: a round with more than 20 % retransmissions (at least
// 8) while the smoothed RTT shows a queue means the path got slower than
// btlbw; btlbw restarts from the receiver's arrival rate (or the Received
// rate, if we sent enough new data to tell) and Drain empties the queue. OnTimeout (EXP: no progress for at least 300 ms) is ignored
// the first time (the engine resends only the likely losses); from the
// second in a row it keeps the model but holds new data to 16 packets plus what the ACKs free,
// until the ACK passes what was in flight at the timeout; the go-back-N
// retransmissions are not counted as loss. OnCongestionWarning starts
// ProbeBW's draining phase.
//
// # Robustness
//
// Sequence numbers use seqno arithmetic throughout (the ring index works
// across the 2^31 wrap since the ring size divides 2^31). ACKs that go
// backwards or repeat are ignored; ACKs beyond anything sent are believed
// only up to Snapshot.MaxSent+1. Snapshot values that are negative, NaN,
// infinite or absurd are ignored or clamped; time that runs backwards is
// held. The interval is within [0, 1 s], the window finite and at least 4.
//
// # Engine details relied on
//
// The 16/15 packet-pair stretch, the 7/8 smoothing of RecvRate (for the
// lag only) and the 100 ms initial Snapshot.RTT are properties of the
// sender in udt/sender.go (and of libudt's); change them there and revisit
// them here.
type BBR struct {
	clk   Clock
	epoch time.Time
	now   int64 // ns since epoch, never decreasing

	// Sequence state.
	anchored bool
	lastAck  int32 // first sequence number not yet acknowledged
	nextSeq  int32 // one past the highest new sequence number sent

	// Delivery accounting (tcp_rate.c style).
	delivered   int64 // packets acknowledged so far
	deliveredAt int64 // when delivered last advanced, ns
	firstTx     int64 // send time of the newest packet acknowledged, ns
	lastSend    int64 // last OnSent of a new packet, ns (-1: none yet)
	firstSend   int64 // first OnSent of a new packet, ns (-1: none yet)
	lastCtl     int64 // last ACK or NAK, ns
	appLimited  int64 // packets sent until delivered reaches this are app-limited

	// Model.
	bw       float64 // btlbw, packets/s (0: no sample yet)
	roundBw  float64 // btlbw when the current round began
	bwSlots  [bbrBwRounds]bbrBwSlot
	minRTT   int64 // ns (0: none yet)
	minRTTAt int64 // when minRTT was last set, ns
	srtt     int64 // Snapshot.RTT, ns (0: unknown)
	acks     int   // ACKs that moved the ACK point, up to bbrSRTTWarm
	recvRate float64

	startupRate float64 // the highest pacing rate in Startup, packets/s

	// Rounds and loss accounting.
	round      int64
	roundEnd   int32 // the round ends when the ACK passes this
	roundAt    int64 // when the round began, ns
	roundStart bool  // the current event began a round
	sentRound  int   // new packets sent in the current round
	lostRound  int   // losses counted in the current round
	sentPrev   int   // the same for the previous round
	lostPrev   int
	lastLoss   float64 // loss fraction of the previous round
	bgLoss     float64 // smoothed loss fraction per round after Startup
	suSent     int     // Startup: packets sent in completed rounds
	suLost     int     // Startup: losses counted in completed rounds
	lossEpoch  int64   // losses of packets sent before this are not counted
	lossEvents int64   // NAKs so far

	// State machine.
	state        bbrState
	pacingGain   float64
	cwndGain     float64
	filled       bool // the pipe has been filled: Startup is over
	fullBw       float64
	fullBwRounds int
	drainRounds  int
	cycleIdx     int
	cycleStart   int64 // when the ProbeBW phase began, ns
	cycleLoss    int64 // lossEvents when the phase began
	rng          uint64

	// Probing limit (see ProbeBW above).
	probeAt    int64    // start of the latest up-phase, ns
	probeWait  int64    // the next up-phase starts no sooner after it, ns
	probed     bool     // it did probe (not held by bwLo)
	probeCur   float64  // the largest bandwidth sample in it and the phase after
	probeMax   float64  // the same for the up-phase before
	probeSent  int      // packets sent in it
	probeLost  int      // of which lost
	probeLowIn [8]int32 // least in-flight levels at which lost ones left, ascending
	probeHit   bool     // it lost clearly more than the background
	probeBase  float64  // btlbw when it began
	linkBw     float64  // the largest probeBase (since the model last restarted): the link, as far as we filled it
	drainRound int64    // the round Drain last began: btlbw holds Startup's samples for bbrBwRounds more
	room       float64  // packets an up-phase may add beyond a BDP (0: no limit)

	// Congestion loss (see ProbeBW above).
	bwLo        float64          // rate limit after congestion loss, packets/s (0: none)
	cutAt       int64            // losses of packets sent before this do not cut again, ns
	cutRound    bool             // the current round cut (it does not update bgLoss)
	npSent      int              // packets sent not probing in the current round
	npPrev      int              // the same for the previous round
	npLost      int              // losses of packets sent not probing after cutAt, this round
	npLostAll   int              // all losses of packets sent in ProbeBW not probing, this round
	npBg        float64          // their smoothed share per round: the background loss
	npRounds    int              // rounds in npBg
	cuts        int              // congestion cuts so far
	queueSince  int64            // since when cruising has shown a standing queue, ns (0: not)
	queueCuts   int              // cuts by watchQueue
	sharedCuts  int              // cuts by probeLoss on a shared link
	probeRTTOut int64            // when ProbeRTT last ended, ns
	bwRoseAt    int64            // when btlbw last rose by bbrBwRose, ns
	peakBw      float64          // the largest btlbw (since the model last restarted)
	standSince  int64            // since when cruising (at 0.97) has shown a standing queue, ns (0: not)
	selfWhy     [selfReasons]int // congestion found self-inflicted, by selfReason's reason
	hostLags    int              // windows in which the sender lagged behind its pacing
	cutTime     int64            // when the latest cut happened, ns (moved on while bwLo's clock is held)
	lowerAt     int64            // when the latest cut happened, ns
	cutMax      float64          // CUBIC's W_max after it, as a rate, packets/s
	cutK        float64          // CUBIC's K, s
	cutLo       float64          // bwLo right after the cut: the Reno-friendly estimate's start
	loShared    bool             // a cut since bwLo was set was on a shared link: it grows as AIMD
	queueSpell  bool             // loShared by a queue cut alone (or a drained loss cut), for bbrQueueSpell
	drainWatch  bool             // a loss cut came under a high queue: does it drain within bbrDrainRounds?
	cutBw       float64          // btlbw at the first cut since bwLo was lifted
	growAt      int64            // when bwLo last grew, ns
	held        int64            // how long bwLo's clock has been held since the cut, ns
	rttVar      int64            // Snapshot.RTTVar, ns

	// ProbeRTT.
	probeRTTAt   int64 // when it began, ns
	probeRTTEnd  int64 // when its 200 ms end (0: flight not down yet)
	probeRTTSeq  int32 // it also lasts until the ACK passes this
	probeRTTRnd  bool  // that has happened
	probeRTTCwnd float64

	// Recovery after a timeout.
	recovering   bool
	recoveryEnd  int32
	recoveryCwnd float64

	// Delivery over a long window (deliveryRates).
	dmarks  [bbrDeliveryMarks]bbrDeliveryMark
	dmarkIx int
	sentAll int64 // packets handed to the network, retransmissions included
	seen    int64 // Snapshot.Received, never decreasing
	sentNew int64 // new packets handed to the network

	// The sender's lag behind its pacing (trackLag): a busy host.
	lagFrom    int64   // start of the current window, ns
	lagAt      int64   // last ACK, ns
	lagMark    int64   // sentAll then
	lagSent    int64   // packets sent in this window's unlimited stretches
	lagBudget  float64 // what pacing allowed in them
	hostBusyAt int64   // end of the latest window that lagged, ns

	// The receiver's arrival rate is not believed once it has claimed
	// far more than was sent (see sampleBandwidth).
	artefacts     int
	recvUntrusted bool

	// Outputs.
	cwnd      float64 // window before the packets behind a hole
	modelCwnd float64 // the model's window, ignoring ProbeRTT and recovery
	hidden    int     // packets behind a known hole taken as no longer in flight
	oldSeq    int32   // oldest packet sent within the last smoothed RTT
	interval  time.Duration

	ring [bbrRingSize]bbrRecord
}

var _ Controller = (*BBR)(nil)

type bbrState uint8

const (
	bbrStartup bbrState = iota
	bbrDrain
	bbrProbeBW
	bbrProbeRTT
)

func (s bbrState) String() string {
	switch s {
	case bbrStartup:
		return "startup"
	case bbrDrain:
		return "drain"
	case bbrProbeBW:
		return "probe-bw"
	case bbrProbeRTT:
		return "probe-rtt"
	}
	return "?"
}

// bbrRecord is what OnSent remembers of a new packet.
type bbrRecord struct {
	sent        int64 // ns
	delivered   int64 // delivered count when it was sent
	deliveredAt int64 // when that count was reached, ns
	firstTx     int64 // send time of the newest packet acknowledged then, ns
	seq         int32
	ackAtSend   int32 // the ACK point when it was sent
	inflight    int32 // packets in the network when it was sent
	flags       uint8
}

const (
	recValid      = 1 << iota
	recRetrans    // retransmitted at least once
	recNAKed      // reported lost (first of a NAK)
	recAppLimited // sent while app-limited
	recProbe      // sent while ProbeBW probed up
)

// bbrDeliveryMark is the delivered count at an ACK that moved the ACK
// point.
type bbrDeliveryMark struct {
	at        int64 // ns (0: empty)
	delivered int64
	sent      int64 // sentAll then
	seen      int64 // seen then
	sentNew   int64 // sentNew then
}

type bbrBwSlot struct {
	round int64
	max   float64
}

const (
	bbrRingBits = 15
	bbrRingSize = 1 << bbrRingBits
	bbrRingMask = bbrRingSize - 1

	bbrStartupPacingGain = 2.77 // 4·ln 2
	bbrStartupCwndGain   = 2.89 // 2/ln 2
	bbrDrainPacingGain   = 1 / bbrStartupCwndGain
	bbrCwndGain          = 2.0
	bbrProbeRTTCwndGain  = 0.5

	bbrBwRounds       = 10 // bandwidth filter window, rounds
	bbrFullBwGrowth   = 1.25
	bbrFullBwRounds   = 3
	bbrMaxDrainRounds = 8

	// bbrMinPhase is the shortest round and ProbeBW phase: the receiver
	// measures its arrival rate over 20 ms or more and ACKs every 10 ms,
	// so a shorter probe (on a path of a few ms) would go unseen.
	bbrMinPhase = 30 * time.Millisecond

	bbrMinRTTWindow     = 10 * time.Second
	bbrMinRTTSlack      = 200 * time.Microsecond // a sample this close (or minRTT/64) confirms minRTT
	bbrProbeRTTDuration = 200 * time.Millisecond
	bbrACKHeadroom      = 4 * synInterval // ACKs come every SYN; a hole adds the NAK hold and a repair

	bbrInitialWindow = 16
	bbrMinWindow     = 4
	// bbrStartupWindow is what Startup paces per minRTT at the least
	// (times its gain) once it has an RTT.
	bbrStartupWindow = 32

	// Loss fractions (each needing at least bbrMinLosses losses): Startup
	// ends on bbrStartupLoss, or on bbrPlateauLoss (above the background)
	// in a round without growth; after Startup, bbrHeavyLoss with a queue
	// means the path got slower.
	bbrStartupLoss = 0.20
	bbrPlateauLoss = 0.05
	bbrHeavyLoss   = 0.20
	bbrMinLosses   = 8
	// bbrProbeRoom is the share of the queue room found by a lossy probe
	// that later probes may use.
	bbrProbeRoom = 0.75
	// bbrLossBeta is the multiplicative decrease on congestion loss
	// (BBRv2's beta, CUBIC's).
	bbrLossBeta = 0.7
	// bbrLossFloor is the least share of btlbw such cuts go down to.
	bbrLossFloor = 0.45
	// bbrFairShare: another flow's congestion cuts a rate above this
	// share of the largest btlbw down to it at once.
	bbrFairShare = 0.5
	// bbrCongestionExcess is the least loss fraction above the
	// background that counts as congestion.
	bbrCongestionExcess = 0.005
	// bbrBgRounds: rounds of background before congestion loss counts.
	bbrBgRounds = 8
	// bbrSelfRounds, bbrRiseRounds and bbrBwRose: see cut.
	bbrSelfRounds     = 4
	bbrRiseRounds     = 16
	bbrBwRose         = 1.01
	bbrSelfCorrection = 0.95
	// bbrSharedWithin: a cut this soon after the one before is on a
	// shared link.
	bbrSharedWithin = 20 * time.Second
	// bbrSharedShare: a probe that begins below this share of linkBw
	// is one on a shared link.
	bbrSharedShare = 0.95
	// bbrQueueRounds: a standing queue that lasts this many minRTTs of
	// cruising is someone else's.
	bbrQueueRounds = 8
	// bbrQueueSpell: after a queue cut, bwLo grows as AIMD this long
	// (growBwLo).
	bbrQueueSpell = 10 * time.Second
	// bbrDrainRounds: a loss cut under a high queue that drains within
	// this many minRTTs is taken for a queue cut (growBwLo).
	bbrDrainRounds = 8
	// cubicC is CUBIC's C (RFC 9438), packets/s³, for bwLo's growth.
	cubicC = 0.4
	// bbrAIMDAlpha is bwLo's growth, packets per RTT each RTT: RFC 9438
	// §4.3's alpha_aimd, 3(1-beta)/(1+beta), with which an AIMD flow of
	// decrease beta is as fair to Reno as Reno itself.
	bbrAIMDAlpha = 3 * (1 - bbrLossBeta) / (1 + bbrLossBeta)
	// bbrProbeWait is the least time between up-phases (plus up to half
	// of it at random).
	bbrProbeWait = 6 * time.Second
	// bbrCruiseDrain is the pacing gain of a cruising phase while the
	// smoothed RTT shows a standing queue.
	bbrCruiseDrain = 0.97
	// A window of at least bbrLagWindow (and a minRTT) whose unlimited
	// stretches sent under bbrLagShare of what pacing allowed (at least
	// bbrLagMin packets) lagged: the host is busy. The window counts as
	// limiting when fewer than bbrLagSlack packets of it are free.
	bbrLagWindow = 100 * time.Millisecond
	bbrLagShare  = 0.9
	bbrLagMin    = 64
	bbrLagSlack  = 16

	// The engine sends the packet after each seq%16 == 0 at once (packet
	// pair) without counting an interval: 16 packets per 15 intervals.
	bbrPairFactor = 16.0 / 15

	// An app-limited silence: longer than this many pacing intervals and
	// than bbrAppGapMin, and not ended by an ACK or NAK within bbrAppGapCtl.
	bbrAppGapIntervals = 4
	bbrAppGapMin       = 4 * time.Millisecond
	bbrAppGapCtl       = time.Millisecond

	// The receiver's arrival rate counts only up to bbrDeliveryCapGain
	// (1.5 pacing gains in Startup) times what the cumulative ACKs delivered over the last two minRTTs
	// (at least bbrDeliveryWindow). libudt's receiver reports up to 10^6
	// packets/s when packets come bunched, and a sender that believed it
	// would flood the path.
	bbrDeliveryMarks   = 128
	bbrDeliveryWindow  = 100 * time.Millisecond
	bbrDeliveryCapGain = 2.0
	// The receiver's arrival rate is an artefact when it is more than
	// bbrArtefactGain times what we sent over that window; after
	// bbrArtefacts of those it is ignored for good.
	bbrArtefactGain = 4.0
	bbrArtefacts    = 3
	// A Received-based figure is limited (it does not reset btlbw) when
	// we sent new packets at under this share of btlbw.
	bbrSeenLimited = 0.8

	bbrMaxRate     = 1e8 // packets/s: beyond any link; keeps products finite
	bbrMaxInterval = time.Second
	bbrMaxRTT      = int64(time.Minute)
	bbrSRTTWarm    = 64 // ACKs before Snapshot.RTT counts as an RTT sample
)

// bbrGainCycle is ProbeBW's pacing-gain cycle.
var bbrGainCycle = [8]float64{1.25, 0.75, 1, 1, 1, 1, 1, 1}

// NewBBR returns a BBR controller in Startup: unpaced, window 16.
func NewBBR(clk Clock) *BBR {
	if clk == nil {
		clk = SystemClock{}
	}
	c := &BBR{clk: clk, epoch: clk.Now(), lastSend: -1, firstSend: -1}
	c.enterStartup()
	c.update()
	return c
}

// tick reads the clock: ns since the controller was made, never less than
// the last reading.
func (c *BBR) tick() int64 {
	if t := int64(c.clk.Now().Sub(c.epoch)); t > c.now {
		c.now = t
	}
	return c.now
}

// anchor sets the sequence state from the first event.
func (c *BBR) anchor(ack, next int32) {
	c.anchored = true
	c.lastAck = ack
	c.nextSeq = next
	c.roundEnd = next
	c.oldSeq = ack
	// ISNs are random: their low bits pick the first ProbeBW phase.
	c.rng = uint64(ack&bbrRingMask)<<32 | 0x9e3779b9
}

// readSnapshot takes the smoothed RTT and the receive rate, sanitized.
func (c *BBR) readSnapshot(s *Snapshot) {
	if s == nil {
		return
	}
	if s.RTT > 0 && int64(s.RTT) <= bbrMaxRTT {
		c.srtt = int64(s.RTT)
	}
	if s.RTTVar >= 0 && int64(s.RTTVar) <= bbrMaxRTT {
		c.rttVar = int64(s.RTTVar)
	}
	if s.Received > c.seen {
		c.seen = s.Received
	}
	c.recvRate = min(rate(s.RecvRate), bbrMaxRate)
	if r := rate(s.ACKRate); r > 0 {
		// The ACK's own figure: the receiver already averages over
		// 16 packets or more, and the 7/8 smoothing per ACK would hide a
		// probe when ACKs are few (the ACK point stuck on holes).
		c.recvRate = min(r, bbrMaxRate)
	}
}

// OnSent records a new packet, or flags a retransmitted one.
func (c *BBR) OnSent(seq int32, bytes int, retransmit bool, s *Snapshot) {
	now := c.tick()
	seq &= seqno.Max
	if !c.anchored {
		if retransmit {
			c.anchor(seq, seqno.Inc(seq))
		} else {
			c.anchor(seq, seq)
		}
	}
	c.sentAll++
	if !retransmit {
		c.sentNew++
	}
	r := &c.ring[seq&bbrRingMask]
	if retransmit {
		known := r.seq == seq && r.flags&recValid != 0
		first := known && r.flags&recRetrans == 0
		if known {
			r.flags |= recRetrans
		}
		// A loss counts against the regime its packet was sent in. A
		// guess (the repair of an overdue ACK, EXP's resend) is not
		// counted: most such packets did arrive (a head repair resends
		// a run of 16 behind the head), and counted they ended Startup
		// in the second round trip on the lab's impaired path.
		if !c.recovering && first && r.sent >= c.lossEpoch && (s == nil || !s.Guess) {
			c.lostRound++
			if r.flags&recProbe != 0 && r.sent >= c.probeAt {
				c.probeLoss(r)
			} else if r.flags&recProbe == 0 && c.state == bbrProbeBW {
				c.npLostAll++
				if r.sent >= c.cutAt && c.standingQueue() {
					c.congestionLoss(now)
				}
			}
			// Startup: the previous round's packets are being reported
			// lost; stop doubling as soon as clearly too many are.
			if c.state == bbrStartup && !c.filled && c.lostRound >= bbrMinLosses && c.measured() &&
				float64(c.lostRound) > bbrStartupLoss*float64(max(c.sentPrev, c.sentRound)) {
				c.filled = true
				c.enterDrain()
				c.update()
			}
		}
		c.updateHidden(now)
		return
	}

	inflight := seqno.Off(c.lastAck, seq) // new packets ahead of this one
	if seqno.Cmp(seq, c.nextSeq) >= 0 {
		c.nextSeq = seqno.Inc(seq)
	}
	if inflight <= 0 {
		// Nothing in flight: the delivery clock starts again here.
		c.firstTx, c.deliveredAt = now, now
		inflight = 0
	}
	if c.lastSend >= 0 {
		gap := now - c.lastSend
		thr := max(int64(bbrAppGapMin), bbrAppGapIntervals*int64(c.interval))
		if gap > thr && now-c.lastCtl > int64(bbrAppGapCtl) {
			c.appLimited = c.delivered + int64(inflight) + 1
		}
	}
	c.lastSend = now
	if c.firstSend < 0 {
		c.firstSend = now
	}
	flags := uint8(recValid)
	if c.appLimited > c.delivered {
		flags |= recAppLimited
	}
	if c.state == bbrProbeBW && (c.pacingGain > 1 || c.cycleIdx == 1 && c.probed) {
		// An up-phase's packets, and those of the draining phase after
		// it: they meet the queue the up-phase built.
		flags |= recProbe
		c.probeSent++
	} else {
		c.npSent++
	}
	*r = bbrRecord{
		sent:        now,
		delivered:   c.delivered,
		deliveredAt: c.deliveredAt,
		firstTx:     c.firstTx,
		seq:         seq,
		ackAtSend:   c.lastAck,
		inflight:    int32(min(max(seqno.Off(c.lastAck, seq)-c.hidden, 0), math.MaxInt32)),
		flags:       flags,
	}
	c.sentRound++
	c.updateHidden(now)
	if c.state == bbrProbeBW && c.advanceCycle(now) {
		// Phases are timed: keep them going while no ACK comes (the ACK
		// point may sit on a hole for a while).
		c.update()
	}
}

// OnACK advances delivery, samples bandwidth and RTT, and runs the state
// machine.
func (c *BBR) OnACK(ack int32, s *Snapshot) {
	now := c.tick()
	c.lastCtl = now
	c.readSnapshot(s)
	ack &= seqno.Max
	if !c.anchored {
		next := ack
		if s != nil && s.MaxSent >= 0 && seqno.Cmp(seqno.Inc(s.MaxSent), ack) > 0 {
			next = seqno.Inc(s.MaxSent)
		}
		c.anchor(ack, next)
		c.update()
		return
	}
	d := seqno.Off(c.lastAck, ack)
	if d < 0 {
		return // reordered: nothing new
	}
	if d == 0 {
		// The ACK point waits on a hole: the receive rate is news.
		if s != nil && s.ACKRate > 0 {
			c.sampleBandwidth(nil, now)
			c.roundStart = false
			c.roundTimeout(now)
			if c.roundStart {
				c.runStates(now)
			}
			c.update()
		}
		return
	}
	if seqno.Off(ack, c.nextSeq) < 0 {
		// Beyond anything we saw sent: believe it only as far as the
		// engine says it sent (we may have missed OnSent calls).
		if s == nil || s.MaxSent < 0 {
			return
		}
		ms := seqno.Inc(s.MaxSent)
		if seqno.Off(ack, ms) < 0 || seqno.Off(c.nextSeq, ms) <= 0 {
			return
		}
		c.nextSeq = ms
	}
	c.lastAck = ack
	c.delivered += int64(d)
	c.deliveredAt = now
	c.markDelivered(now)
	if c.acks < bbrSRTTWarm {
		c.acks++
	} else if c.srtt > 0 {
		// The receiver's ACK/ACK2 RTT: never below the path's RTT, and
		// unlike our own samples not held up by holes; its 100 ms
		// starting value has washed out of both smoothings by now.
		c.updateMinRTT(c.srtt, now)
	}

	p := seqno.Dec(ack)
	if r := &c.ring[p&bbrRingMask]; r.seq == p && r.flags&recValid != 0 {
		c.firstTx = r.sent
		if r.flags&recRetrans == 0 {
			c.updateMinRTT(now-r.sent, now)
		}
		c.sampleBandwidth(r, now)
	} else {
		c.sampleBandwidth(nil, now)
	}

	c.roundStart = false
	if seqno.Off(c.roundEnd, ack) > 0 && now-c.roundAt >= int64(bbrMinPhase) {
		c.startRound(now)
	} else {
		c.roundTimeout(now)
	}
	if c.recovering {
		c.recoveryCwnd += float64(d)
		if seqno.Off(c.recoveryEnd, ack) >= 0 {
			c.recovering = false
			c.lossEpoch = now
		}
	}
	c.updateHidden(now)
	c.trackLag(now, s)
	c.watchQueue(now)
	c.runStates(now)
	c.update()
}

// OnLoss notes the reported hole; loss alone changes neither rate nor
// window.
func (c *BBR) OnLoss(first int32, s *Snapshot) {
	now := c.tick()
	c.lastCtl = now
	c.readSnapshot(s)
	first &= seqno.Max // a loss-list entry may carry the range bit
	if !c.anchored {
		next := seqno.Inc(first)
		if s != nil && s.MaxSent >= 0 && seqno.Cmp(seqno.Inc(s.MaxSent), next) > 0 {
			next = seqno.Inc(s.MaxSent)
		}
		c.anchor(first, next)
	}
	if r := &c.ring[first&bbrRingMask]; r.seq == first && r.flags&recValid != 0 {
		r.flags |= recNAKed
	}
	c.markDelivered(now) // the report moved Received
	c.lossEvents++
	c.roundStart = false
	c.roundTimeout(now)
	c.updateHidden(now)
	if c.roundStart {
		c.runStates(now)
		c.update()
	}
}

// OnTimeout, from the second expiration in a row (the path is silent, not
// just lossy), limits new data to a small window until the ACK passes what
// was in flight; the model (btlbw, minRTT) is kept for a quick recovery. A
// first expiration resends only the likely losses and changes nothing.
func (c *BBR) OnTimeout(s *Snapshot) {
	now := c.tick()
	c.readSnapshot(s)
	if s != nil && s.Timeouts == 1 {
		return
	}
	if !c.anchored {
		next := int32(0)
		if s != nil && s.MaxSent >= 0 {
			next = seqno.Inc(s.MaxSent)
		}
		c.anchor(next, next)
	}
	c.recovering = true
	c.recoveryEnd = c.nextSeq
	c.recoveryCwnd = bbrInitialWindow
	c.updateHidden(now)
	c.update()
}

// OnCongestionWarning (the peer's delay warning) starts ProbeBW's draining
// phase: the queue is given a round trip to empty.
func (c *BBR) OnCongestionWarning() {
	if c.state != bbrProbeBW {
		return
	}
	c.cycleIdx = 1
	c.cycleStart = c.tick()
	c.pacingGain = bbrGainCycle[c.cycleIdx]
	c.update()
}

// PacketInterval is the pacing interval, 0 (unpaced) before the first
// bandwidth sample.
func (c *BBR) PacketInterval() time.Duration { return c.interval }

// Window is the congestion window in packets, counted as the engine counts
// (from the cumulative ACK point).
func (c *BBR) Window() float64 { return c.cwnd + float64(c.hidden) }

// State reports the state machine's state and the model, for diagnostics:
// state name, btlbw (packets/s), minRTT.
func (c *BBR) State() (state string, btlbw float64, minRTT time.Duration) {
	state = c.state.String()
	if c.recvUntrusted {
		state += "(no-recv-rate)"
	}
	if c.bwLo > 0 {
		state += "(bw-lo)"
	}
	return state, c.bw, time.Duration(c.minRTT)
}

// Detail describes the congestion response for traces: the rate limit
// after congestion loss, the cuts so far (of which by the queue watch and
// by shared probes), the self-inflicted corrections (by reason: d not
// drained, a above linkBw, r btlbw rose, p after an up-phase, t after
// ProbeRTT), whether a standing queue shows, linkBw, and the windows in
// which the sender lagged behind its pacing (a busy host).
func (c *BBR) Detail() string {
	w := c.selfWhy
	return fmt.Sprintf("bwlo=%.0f cuts=%d/q%d/p%d/self%d(d%da%dr%dp%dt%d) queue=%v link=%.0f lags=%d",
		c.bwLo, c.cuts, c.queueCuts, c.sharedCuts, c.selfCuts(), w[0], w[1], w[2], w[3], w[4], c.standingQueue(), c.linkBw, c.hostLags)
}

// updateHidden estimates how many packets beyond the ACK point are no longer
// in the network, when the ACK point is a known hole: those sent more than
// one smoothed RTT ago.
func (c *BBR) updateHidden(now int64) {
	c.hidden = 0
	rtt := max(c.srtt, c.minRTT)
	if !c.anchored || c.recovering || rtt <= 0 || !c.holeAtAck(now, rtt) {
		return
	}
	inFlight := seqno.Off(c.lastAck, c.nextSeq)
	if inFlight <= 0 {
		c.oldSeq = c.nextSeq
		return
	}
	// oldSeq only moves forward between lastAck and nextSeq, over records
	// the ring still holds; anything else (an ACK jump, odd sequence
	// numbers) restarts it there. So the walk below is bounded by the ring
	// and amortized O(1) per packet.
	if d := seqno.Off(c.oldSeq, c.nextSeq); d < 0 || d > inFlight || d > bbrRingSize {
		c.oldSeq = c.lastAck
		if inFlight > bbrRingSize {
			c.oldSeq = seqno.Add(c.nextSeq, -bbrRingSize) // older records are gone
		}
	}
	for n := 0; c.oldSeq != c.nextSeq && n < bbrRingSize; n++ {
		r := &c.ring[c.oldSeq&bbrRingMask]
		if r.seq == c.oldSeq && r.flags&recValid != 0 && r.sent > now-rtt {
			break
		}
		c.oldSeq = seqno.Inc(c.oldSeq)
	}
	// Bounded: when the queue grows, the smoothed RTT lags and packets
	// still queued would pass for arrived. Without a sign of a queue, in
	// ProbeBW (paced at the model's rate), the bound is wider: a lost
	// retransmission holds the ACK point for several RTTs.
	limit := c.modelCwnd
	if (c.state == bbrProbeBW || c.state == bbrProbeRTT) && !c.queueing() {
		limit *= 3
	}
	c.hidden = min(max(seqno.Off(c.lastAck, c.oldSeq), 0), int(limit))
}

// holeAtAck reports whether the ACK point is a packet known to be lost:
// reported lost or retransmitted, or (its loss report may have been lost
// too) sent 5/4 RTT and two ACK periods ago while the peer still talks to
// us: ACKs would have passed it by now.
func (c *BBR) holeAtAck(now, rtt int64) bool {
	h := &c.ring[c.lastAck&bbrRingMask]
	if h.seq != c.lastAck || h.flags&recValid == 0 || c.lastAck == c.nextSeq {
		return false
	}
	if h.flags&(recRetrans|recNAKed) != 0 {
		return true
	}
	return now-h.sent > rtt+rtt/4+int64(bbrACKHeadroom) && now-c.lastCtl < rtt
}

// update computes the window and the pacing interval from the model.
func (c *BBR) update() {
	w := float64(bbrInitialWindow)
	if c.bw > 0 && c.minRTT > 0 {
		bdp := c.bdp()
		w = c.cwndGain*bdp + c.bw*bbrACKHeadroom.Seconds()
	}
	if c.state == bbrStartup {
		// (startupBase × minRTT is bbrStartupWindow once there is an RTT.)
		w = max(w, bbrInitialWindow, c.cwndGain*c.startupBase()*float64(c.minRTT)/1e9)
	}
	c.modelCwnd = clampWindow(w)
	if c.state == bbrProbeRTT {
		w = c.probeRTTCwnd
	}
	if c.recovering {
		w = min(w, max(c.recoveryCwnd, bbrInitialWindow))
	}
	c.cwnd = clampWindow(w)

	c.interval = 0
	r := c.pacingGain * c.rateBw()
	if c.state == bbrStartup {
		// As Linux's BBR: until the pipe is full the pacing rate starts
		// from bbrStartupWindow per RTT and never falls. The first
		// samples are the engine's initial receive-rate guess (16
		// packets/s, libudt's) and the key exchange's few app-limited
		// packets, and pacing by them sent one packet per 24 ms.
		r = max(r, c.pacingGain*c.startupBase(), c.startupRate)
		c.startupRate = r
	}
	if c.state == bbrProbeBW && c.pacingGain == 1 && c.standingQueue() {
		// Cruising with a standing queue: btlbw is a little high (or
		// someone else's queue): let it drain slowly rather than
		// overflow a shallow queue until the next probe.
		r *= bbrCruiseDrain
	}
	if r > 0 {
		iv := bbrPairFactor * 1e9 / r
		if !(iv <= float64(bbrMaxInterval)) {
			iv = float64(bbrMaxInterval)
		}
		c.interval = time.Duration(iv)
	}
}

// clampWindow bounds a window to [bbrMinWindow, maxCWnd], NaN to the least.
func clampWindow(w float64) float64 {
	if !(w >= bbrMinWindow) {
		return bbrMinWindow
	}
	return min(w, maxCWnd)
}
