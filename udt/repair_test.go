package udt

import (
	"slices"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/wire"
)

// Tests of sender.repairHead (the overdue ACK point) and of the Received
// count the congestion controller gets from ACKs and NAKs.

// sendAt is expRig.send with the send times the engine's sendLoop records.
func (r *expRig) sendAt(n int) {
	r.t.Helper()
	from := r.s.inFlight()
	r.send(n)
	for i := from; i < from+n; i++ {
		r.s.sentAt[(r.s.ackPos+i)&r.s.mask] = r.now
		r.s.resent[(r.s.ackPos+i)&r.s.mask] = false
	}
}

// repair runs repairHead at the rig's time and returns what it queued, as
// stream indexes, after sending it (with send times).
func (r *expRig) repair() []int {
	r.t.Helper()
	n := r.s.repairHead(r.now)
	got := r.drain()
	if len(got) != n {
		r.t.Fatalf("repairHead queued %d, drain sent %v", n, got)
	}
	for _, i := range got {
		r.s.sentAt[r.s.pos(r.seq(i))] = r.now
		r.s.resent[r.s.pos(r.seq(i))] = true
	}
	return got
}

// headTimeout is the rig's repairHead timeout after ack.
func (r *expRig) headTimeout() time.Duration {
	return time.Duration(r.s.ackDue())
}

// TestRepairHeadUnreported: the ACK point stops on a packet nobody
// reported lost (its NAK was lost). Before the timeout nothing is resent;
// after it, the head and the 15 packets behind it (the run a lost NAK
// would have named); when the ACK then stops right at the end of that
// run, twice as many; when it stops elsewhere, the run starts over.
func TestRepairHeadUnreported(t *testing.T) {
	r := newExpRig(t, 1<<31-40, 4096) // across the sequence wrap
	r.sendAt(400)
	r.ack(10)
	r.now += int64(r.headTimeout()) - int64(time.Millisecond)
	if got := r.repair(); len(got) != 0 {
		t.Fatalf("before the timeout: resent %v", got)
	}
	r.now += int64(2 * time.Millisecond)
	if got, want := r.repair(), span(10, 26); !slices.Equal(got, want) {
		t.Fatalf("overdue unreported head: resent %v, want %v", got, want)
	}
	if got := r.repair(); len(got) != 0 {
		t.Fatalf("right after a repair: resent %v", got)
	}
	r.ack(26) // the ACK stops where the run ended: the lost report was longer
	r.now += int64(r.headTimeout()) + int64(time.Millisecond)
	if got, want := r.repair(), span(26, 58); !slices.Equal(got, want) {
		t.Fatalf("second run: resent %v, want %v", got, want)
	}
	r.ack(100) // elsewhere: a new hole
	r.now += int64(r.headTimeout()) + int64(time.Millisecond)
	if got, want := r.repair(), span(100, 116); !slices.Equal(got, want) {
		t.Fatalf("new hole: resent %v, want %v", got, want)
	}
	if c := r.c.stats.headRepairs.Load(); c != 0 {
		t.Fatalf("stats counted %d without the timer", c)
	}
}

// TestRepairHeadOwnRTT: the peer's RTT figure (here 50 ms) can be well
// below what an ACK takes (at the start of a connection it still carries
// libudt's 100 ms guess on a 140 ms path, and it is smoothed twice). Our
// own samples say 140 ms: a head sent 100 ms ago is not overdue, one sent
// 180 ms ago is. (By the peer's figure alone the first was repaired: in
// the lab's impaired path such spurious repairs in the first round trips
// ended Startup at a twentieth of the rate.)
func TestRepairHeadOwnRTT(t *testing.T) {
	r := newExpRig(t, 1000, 4096)
	for i := 1; i <= 40; i++ {
		r.sendAt(1)
		r.now += int64(140 * time.Millisecond)
		r.ack(i)
	}
	if peer := time.Duration(r.s.rtt + 4*r.s.rttVar + 2*int64(synInterval)); peer > 80*time.Millisecond {
		t.Fatalf("rig: the peer's figures give %v, want them below 80 ms", peer)
	}
	if got := time.Duration(r.s.ownRTT); got < 139*time.Millisecond || got > 141*time.Millisecond {
		t.Fatalf("own RTT %v after 40 samples of 140 ms", got)
	}
	r.sendAt(20)
	r.now += int64(100 * time.Millisecond)
	if got := r.repair(); len(got) != 0 {
		t.Fatalf("head sent 100 ms ago on a 140 ms path: resent %v", got)
	}
	r.now += int64(80 * time.Millisecond)
	if got, want := r.repair(), span(40, 56); !slices.Equal(got, want) {
		t.Fatalf("head sent 180 ms ago: resent %v, want %v", got, want)
	}
	// A repaired packet's ACK gives no sample (it may answer either copy).
	before := r.s.ownRTT
	r.now += int64(300 * time.Millisecond)
	r.ack(45)
	if r.s.ownRTT != before {
		t.Errorf("an ACK over repaired packets moved the own RTT %v -> %v", time.Duration(before), time.Duration(r.s.ownRTT))
	}
}

// TestRepairHeadBeforeOwnRTT: before any sample of our own, the peer's
// figures may be libudt's initial guess; the head waits for EXP's minimum.
func TestRepairHeadBeforeOwnRTT(t *testing.T) {
	r := newExpRig(t, 1000, 4096)
	for i := 1; i <= 40; i++ {
		r.sendAt(1)
		r.ack(i) // at once: no sample of our own
	}
	if r.s.ownRTT != 0 {
		t.Fatalf("rig: own RTT %v", time.Duration(r.s.ownRTT))
	}
	r.sendAt(20)
	r.now += int64(expMinimum) - int64(10*time.Millisecond)
	if got := r.repair(); len(got) != 0 {
		t.Fatalf("head sent %v ago, no own RTT yet: resent %v", expMinimum-10*time.Millisecond, got)
	}
	r.now += int64(20 * time.Millisecond)
	if got, want := r.repair(), span(40, 56); !slices.Equal(got, want) {
		t.Fatalf("head sent %v ago: resent %v, want %v", expMinimum+10*time.Millisecond, got, want)
	}
}

// TestRepairHeadReported: the ACK point stops on a packet that was
// reported lost and retransmitted: that retransmission went missing, and
// a libudt receiver never says so again. The head goes again together
// with every packet reported before and sent at least a timeout ago (not
// the one reported just now); the sweep comes at most every four RTTs,
// the head alone in between.
func TestRepairHeadReported(t *testing.T) {
	r := newExpRig(t, 1000, 4096)
	r.sendAt(400)
	r.ack(10)
	r.nak(10, 10)
	r.nak(20, 22)
	r.nak(40, 40)
	for _, i := range []int{10, 20, 21, 22, 40} {
		r.s.sentAt[r.s.pos(r.seq(i))] = r.now
	}
	r.now += int64(r.headTimeout()) + int64(time.Millisecond)
	r.nak(50, 50) // fresh: its retransmission is on its way
	r.s.sentAt[r.s.pos(r.seq(50))] = r.now
	if got, want := r.repair(), []int{10, 20, 21, 22, 40}; !slices.Equal(got, want) {
		t.Fatalf("overdue reported head: resent %v, want %v", got, want)
	}
	sweep := r.now
	r.now += int64(r.headTimeout()) + int64(time.Millisecond)
	if r.now-sweep > 4*r.s.rtt {
		t.Fatalf("test needs a timeout under 4 RTTs (rtt %v)", time.Duration(r.s.rtt))
	}
	if got, want := r.repair(), []int{10}; !slices.Equal(got, want) {
		t.Fatalf("within four RTTs of the sweep: resent %v, want %v", got, want)
	}
	r.now = sweep + 4*r.s.rtt + int64(r.headTimeout())
	if got, want := r.repair(), []int{10, 20, 21, 22, 40, 50}; !slices.Equal(got, want) {
		t.Fatalf("four RTTs later: resent %v, want %v", got, want)
	}
}

// TestReceivedCount: Snapshot.Received counts the packets up to the ACK
// point or up to the packet beyond each reported gap, less the reported
// holes, each once however often reported.
func TestReceivedCount(t *testing.T) {
	r := newExpRig(t, 1<<31-5, 4096)
	r.sendAt(100)
	check := func(step string, want int64) {
		t.Helper()
		if got := r.s.snap.Received; got != want {
			t.Fatalf("%s: Received %d, want %d", step, got, want)
		}
	}
	check("start", 0)
	r.nak(10, 12) // 13 arrived: 0..13 less 3
	check("NAK 10..12", 11)
	r.s.onNAK(wire.AppendLoss(nil, r.seq(10), r.seq(12))) // our receiver repeats reports
	check("NAK 10..12 again", 11)
	r.drain()
	r.nak(20, 20)
	check("NAK 20", 18)
	r.ack(15)
	check("ACK 15 (behind what was seen)", 18)
	r.ack(30)
	check("ACK 30", 26)
	r.s.onNAK(wire.AppendLoss(nil, r.seq(99), r.seq(99))) // the newest packet: 100 is not sent yet
	check("NAK of the newest packet", 26+70-1)
}
