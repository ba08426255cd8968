package udt

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pcat/p2pcat/udt/cc"
	"github.com/p2pcat/p2pcat/udt/internal/seqno"
	"github.com/p2pcat/p2pcat/udt/internal/wire"
)

// sender is the sending half of a connection: a ring of packet slots that
// Write fills and ACKs free, the loss list (a flag per slot) that NAKs and
// the EXP timer fill, the flow and congestion windows, and pacing.
//
// Write fills it on the application's goroutine, sendLoop drains it on the
// connection's sender goroutine, ACKs and NAKs arrive on the mux's reader
// goroutine and the EXP timer on the timer goroutine. mu guards everything.
type sender struct {
	mu sync.Mutex

	size    int // ring slots (a power of two)
	mask    int
	payload int // payload bytes per packet
	// buf holds each slot as a whole datagram, stride bytes: sendLoop
	// writes the header in front of the payload Write put there and hands
	// the slots themselves to the socket, so consecutive full packets are
	// one GSO run with no copy.
	buf    []byte
	stride int
	lens   []int32
	lost   []bool
	naked  []bool  // reported lost at least once (its retransmission may be lost too)
	sentAt []int64 // when each packet last went out, ns on the connection's clock
	resent []bool  // its last transmission was a retransmission

	now   func() int64 // the connection's clock
	clock batchClock   // the controller's

	seenSeq int32 // one past the newest packet the receiver has shown it holds (see)
	ackSeq  int32 // oldest unacknowledged packet
	// dataAck is the newest full ACK's number: what the receiver has made
	// readable. A light ACK moves ackSeq (the packets are in its buffer)
	// but not this: libudt hands data to its application only when it
	// sends a full ACK, and a Shutdown that arrives first loses the rest.
	dataAck  int32
	ackPos   int   // its ring slot
	nextSeq  int32 // next new packet to send
	endSeq   int32 // one past the last packet holding data
	losses   int   // packets flagged for retransmission
	lossHint int   // offset from ackSeq below which no flag is set
	msgNo    uint32

	flowWindow  int // packets the receiver accepts beyond ackSeq
	lastACK     int32
	peerReady   bool // the peer has shown it is connected
	readyAtomic atomic.Bool

	cc     cc.Controller
	snap   cc.Snapshot
	rtt    int64 // ns, smoothed from the peer's ACKs
	rttVar int64
	// ownRTT and ownVar smooth our own samples (RFC 6298's SRTT and
	// RTTVAR), 0 before the first: from a packet's transmission to the
	// ACK that first covers it, over ACKs that cover no repaired packet.
	// Unlike the peer's figure they do not start from libudt's 100 ms
	// guess, and they carry the path's jitter and the ACK period.
	ownRTT    int64
	ownVar    int64
	recvRate  float64
	bandwidth float64
	rateSeen  bool // recvRate holds a reported rate, not the initial guess

	nextSend int64 // pacing: earliest time for the next packet, ns

	// pinned: sendLoop is writing a batch outside the lock, straight from
	// buf, whose oldest packet is pin. An ACK may free those slots
	// meanwhile; fill must not reuse them until the batch is out.
	pinned bool
	pin    int32

	// Retransmission timeout (EXP as it concerns data): progress is an
	// ACK that moves the ACK point. Keep-alives do not count (an idle
	// receiver would hide a lost tail forever), nor do loss reports (a
	// libudt receiver never repeats a NAK, so a lost retransmission would
	// stall behind a stream of NAKs for newer holes).
	lastProgress int64
	expCount     int
	lastSweep    int64 // repairHead last queued all old reported losses, ns
	run          int   // repairHead's run after an unreported head
	runEnd       int32 // one past that run

	closing bool  // Close was called: no more writes
	err     error // why no more data can be sent
	wake    chan struct{}
	space   chan struct{}
}

func (s *sender) init(isn int32, size, payload, flowWindow, mss int, ctl cc.Controller) {
	s.size = 1
	for s.size < size {
		s.size <<= 1
	}
	s.mask = s.size - 1
	s.payload = payload
	s.stride = wire.HeaderLen + payload
	s.buf = make([]byte, s.size*s.stride)
	s.lens = make([]int32, s.size)
	s.lost = make([]bool, s.size)
	s.naked = make([]bool, s.size)
	s.sentAt = make([]int64, s.size)
	s.resent = make([]bool, s.size)
	s.ackSeq, s.nextSeq, s.endSeq, s.seenSeq, s.dataAck = isn, isn, isn, isn, isn
	s.lastACK = isn
	s.flowWindow = flowWindow
	s.cc = ctl
	s.rtt, s.rttVar = int64(initialRTT), int64(initialRTTVar)
	s.expCount = 1
	s.recvRate, s.bandwidth = 16, 1
	s.snap.MSS = mss
	s.snap.FlowWindow = flowWindow
	s.wake = make(chan struct{}, 1)
	s.space = make(chan struct{}, 1)
}

func (s *sender) pos(seq int32) int { return (s.ackPos + seqno.Off(s.ackSeq, seq)) & s.mask }

func (s *sender) inFlight() int { return seqno.Off(s.ackSeq, s.nextSeq) }

func (s *sender) queued() int { return seqno.Off(s.ackSeq, s.endSeq) }

// used is the number of slots fill may not reuse: the queued packets, and
// those of a batch still being written that an ACK has freed.
func (s *sender) used() int {
	if s.pinned && seqno.Cmp(s.pin, s.ackSeq) < 0 {
		return seqno.Off(s.pin, s.endSeq)
	}
	return s.queued()
}

// payloadAt is slot p's payload area.
func (s *sender) payloadAt(p int) []byte {
	return s.buf[p*s.stride+wire.HeaderLen : (p+1)*s.stride]
}

// undelivered is the number of packets written that no full ACK covers
// yet: Close lingers until it is 0.
func (s *sender) undelivered() int { return seqno.Off(s.dataAck, s.endSeq) }

func (s *sender) snapshot() *cc.Snapshot {
	s.snap.RTT = time.Duration(s.rtt)
	s.snap.RTTVar = time.Duration(s.rttVar)
	s.snap.RecvRate = s.recvRate
	s.snap.Bandwidth = s.bandwidth
	s.snap.MaxSent = seqno.Dec(s.nextSeq)
	s.snap.InFlight = s.inFlight()
	return &s.snap
}

// fill copies as much of p into the buffer as fits and returns how much.
func (s *sender) fill(p []byte) int {
	n := 0
	// Top up the last packet if it has not gone out yet.
	if s.endSeq != s.nextSeq {
		tail := seqno.Dec(s.endSeq)
		if t := s.pos(tail); int(s.lens[t]) < s.payload {
			m := copy(s.payloadAt(t)[s.lens[t]:], p)
			s.lens[t] += int32(m)
			n += m
		}
	}
	for n < len(p) && s.used() < s.size {
		t := s.pos(s.endSeq)
		m := copy(s.payloadAt(t), p[n:])
		s.lens[t] = int32(m)
		s.lost[t] = false
		s.endSeq = seqno.Inc(s.endSeq)
		n += m
	}
	return n
}

// window is the number of packets that may be in flight.
func (s *sender) window() int {
	w := s.flowWindow
	if c := int(s.cc.Window()); c < w {
		w = c
	}
	if w < 2 {
		w = 2
	}
	return w
}

// canSend reports whether sendLoop has a packet to send now.
func (s *sender) canSend() bool {
	if s.losses > 0 {
		return true
	}
	return s.peerReady && s.nextSeq != s.endSeq && s.inFlight() < s.window()
}

// next picks the next packet to send: a retransmission first, else a new
// packet if the windows allow.
func (s *sender) next() (seq int32, retransmit, ok bool) {
	if s.losses > 0 {
		n := s.inFlight()
		for off := s.lossHint; off < n; off++ {
			p := (s.ackPos + off) & s.mask
			if s.lost[p] {
				s.lost[p] = false
				s.losses--
				s.lossHint = off + 1
				return seqno.Add(s.ackSeq, off), true, true
			}
		}
		s.losses, s.lossHint = 0, n // defensive: counter and flags disagreed
	}
	if s.peerReady && s.nextSeq != s.endSeq && s.inFlight() < s.window() {
		seq = s.nextSeq
		s.nextSeq = seqno.Inc(seq)
		return seq, false, true
	}
	return 0, false, false
}

// acknowledge moves the ACK point to ack, freeing buffer slots and any
// retransmission flags below it. It returns the number of packets freed.
func (s *sender) acknowledge(ack int32) int {
	n := seqno.Off(s.ackSeq, ack)
	if n <= 0 || seqno.Off(ack, s.nextSeq) < 0 {
		return 0
	}
	clean := true
	for i := 0; i < n; i++ {
		p := (s.ackPos + i) & s.mask
		clean = clean && !s.naked[p] && !s.resent[p]
		s.naked[p] = false
		if s.lost[p] {
			s.lost[p] = false
			s.losses--
		}
	}
	if clean {
		// No repair held this ACK back: the newest packet it covers
		// gives an RTT sample.
		s.sampleRTT(s.now() - s.sentAt[(s.ackPos+n-1)&s.mask])
	}
	s.see(ack)
	s.ackSeq = ack
	s.ackPos = (s.ackPos + n) & s.mask
	s.progress()
	s.lossHint -= n
	if s.lossHint < 0 {
		s.lossHint = 0
	}
	return n
}

// onACK handles a full or short ACK (the caller has sent the ACK2).
func (s *sender) onACK(a *wire.ACK) {
	if seqno.Off(a.Ack, s.nextSeq) < 0 {
		return // acknowledges data never sent: ignore
	}
	if seqno.Cmp(a.Ack, s.lastACK) >= 0 {
		s.flowWindow = max(int(a.Avail), 2)
		s.lastACK = a.Ack
	}
	if seqno.Cmp(a.Ack, s.dataAck) > 0 {
		s.dataAck = a.Ack
	}
	s.acknowledge(a.Ack)
	if a.RTT > 0 {
		smoothRTT(&s.rtt, &s.rttVar, int64(a.RTT)*1000)
	}
	s.snap.ACKRate = 0
	if a.Fields == 6 {
		s.snap.ACKRate = float64(max(a.RecvRate, 0))
		switch {
		case a.RecvRate > 0 && !s.rateSeen:
			// The first report replaces libudt's initial guess of 16
			// packets/s rather than being smoothed into it.
			s.recvRate, s.rateSeen = float64(a.RecvRate), true
		case a.RecvRate > 0:
			s.recvRate = (7*s.recvRate + float64(a.RecvRate)) / 8
		}
		if a.Capacity > 0 {
			s.bandwidth = (7*s.bandwidth + float64(a.Capacity)) / 8
		}
	}
	s.cc.OnACK(a.Ack, s.snapshot())
	s.snap.ACKRate = 0
}

// onLightACK handles a light ACK: it moves the ACK point and shrinks the
// flow window accordingly, as libudt does.
func (s *sender) onLightACK(ack int32) {
	if seqno.Off(ack, s.nextSeq) < 0 || seqno.Cmp(ack, s.lastACK) < 0 {
		return
	}
	s.flowWindow -= seqno.Off(s.lastACK, ack)
	s.lastACK = ack
	s.acknowledge(ack)
}

// onNAK queues the reported losses for retransmission and then tells the
// congestion controller. It returns false if the report was malformed.
func (s *sender) onNAK(body []byte) bool {
	lr := wire.NewLossReader(body)
	reported, any := int32(0), false
	maxSent := seqno.Dec(s.nextSeq)
	for {
		first, last, ok, err := lr.Next()
		if err != nil {
			return false
		}
		if !ok {
			break
		}
		if seqno.Cmp(first, last) > 0 || seqno.Cmp(last, maxSent) > 0 {
			return false
		}
		if !any {
			reported, any = first, true
		}
		// A gap is seen when a packet beyond it arrives: last+1 did.
		s.see(seqno.Add(last, 2))
		if seqno.Cmp(first, s.ackSeq) < 0 {
			first = s.ackSeq
		}
		if seqno.Cmp(first, last) > 0 {
			continue
		}
		for off, end := seqno.Off(s.ackSeq, first), seqno.Off(s.ackSeq, last); off <= end; off++ {
			p := (s.ackPos + off) & s.mask
			if !s.naked[p] {
				s.naked[p] = true
				s.snap.Received--
			}
			if !s.lost[p] {
				s.lost[p] = true
				s.losses++
			}
			if off < s.lossHint {
				s.lossHint = off
			}
		}
	}
	if any {
		s.cc.OnLoss(reported, s.snapshot())
	}
	return true
}

// see records that the receiver has shown it holds a packet before next
// (an ACK up to next, or a packet beyond a gap it reported): the packets
// between the last such mark and next count as received, less the holes
// its reports name (onNAK takes those off once each). The count is the
// controller's view of delivery that cumulative ACKs stuck on a hole hide.
func (s *sender) see(next int32) {
	if seqno.Cmp(next, s.nextSeq) > 0 {
		next = s.nextSeq
	}
	if d := seqno.Off(s.seenSeq, next); d > 0 {
		s.seenSeq = next
		s.snap.Received += int64(d)
	}
}

// sampleRTT feeds one of our own RTT samples to ownRTT and ownVar.
func (s *sender) sampleRTT(rtt int64) {
	if rtt <= 0 {
		return
	}
	if s.ownRTT == 0 {
		s.ownRTT, s.ownVar = rtt, rtt/2
		return
	}
	smoothRTT(&s.ownRTT, &s.ownVar, rtt)
}

// ackDue is how long after a packet's transmission its ACK is overdue: the
// RTT and four times its variation, by the peer's figures or by ours,
// whichever is longer (the peer's start at libudt's 100 ms and approach a
// longer path slowly; ours include the path's jitter), and two ACK periods.
//
// Before our first sample the peer's figures may be libudt's initial
// guess: then at least EXP's minimum (expMinimum), which would resend the
// head anyway.
func (s *sender) ackDue() int64 {
	if s.ownRTT == 0 {
		return max(s.rtt+4*s.rttVar+2*int64(synInterval), int64(expMinimum))
	}
	return max(s.rtt+4*s.rttVar, s.ownRTT+4*s.ownVar) + 2*int64(synInterval)
}

// progress records that the peer is acting on our data.
func (s *sender) progress() {
	s.lastProgress = s.now()
	s.expCount = 1
}

// rto is the retransmission timeout for the current expiration count, as
// libudt's EXP period: max(N*(RTT+4*RTTVar)+SYN, N*300 ms).
func (s *sender) rto() int64 {
	n := int64(max(s.expCount, 1))
	return max(n*(s.rtt+4*s.rttVar)+int64(synInterval), n*int64(expMinimum))
}

// onTimeout (EXP) puts unacknowledged packets back for retransmission if
// nothing is queued for it already. The first expiration after progress
// resends only what is most likely lost: the packet at the ACK point and
// those reported lost before (their retransmission, or a repeated NAK, went
// missing: a libudt receiver never repeats a NAK), and the newest packet in
// flight, a tail-loss probe: a receiver that lost the tail of a burst saw
// no gap and sent no NAK; the probe shows it one, and it NAKs the rest at
// once instead of one packet per expiration. Random loss thus costs no
// go-back-N of a whole window. A second expiration without progress means
// the path itself is silent: everything goes back (go-back-N, as libudt).
func (s *sender) onTimeout() int {
	n := s.inFlight()
	if n == 0 || s.losses > 0 {
		return 0
	}
	count := max(s.expCount, 1) // 1: the first expiration (also before any ACK)
	resent := 0
	for off := 0; off < n; off++ {
		p := (s.ackPos + off) & s.mask
		if off == 0 || off == n-1 || count > 1 || s.naked[p] {
			s.lost[p] = true
			resent++
		}
	}
	s.losses, s.lossHint = resent, 0
	s.snap.Timeouts = count
	s.cc.OnTimeout(s.snapshot())
	s.snap.Timeouts = 0
	return resent
}

// repairHead takes the oldest unacknowledged packet for lost when it went
// out longer ago than an ACK needs to come back (ackDue: RTT + 4 RTTVar,
// plus the receiver's ACK interval and our timer's granularity), and queues it for
// retransmission with some of the packets after it. It returns how many
// packets it queued.
//
// The ACK point stops at the first hole, and the in-flight count (hence the
// window) runs from there, so a hole that the receiver's report and our
// retransmission do not close stalls the whole flow. A libudt receiver NAKs
// each gap once and never again: with 1 % loss each way a lost NAK or a
// lost retransmission comes about every fifty losses, and waiting for EXP
// (at least 300 ms, the window full long before) cost a third of the
// throughput. Repairing one hole per round trip would crawl after a burst
// of losses (and, each repair being progress, hold off EXP's go-back-N),
// so more goes with the head:
//
//   - a head that was reported lost: its retransmission went missing, and
//     the receiver will not say which others did, so every packet reported
//     lost before and last sent that long ago goes again; not more often
//     than every four RTTs, as most of them did arrive;
//   - a head never reported: the report was lost, or the tail of a burst
//     (no packet behind it showed the gap). The report would have named a
//     run of packets from the head, so the next repairRunMin go along, and
//     twice as many each time the ACK point stops again right where the
//     previous run ended.
//
// A spurious repair (the ACK was only late) costs duplicates.
func (s *sender) repairHead(now int64) int {
	n := s.inFlight()
	if n == 0 || s.lost[s.ackPos] {
		return 0
	}
	cut := now - s.ackDue()
	if s.sentAt[s.ackPos] >= cut {
		return 0
	}
	queue := func(off int) int {
		p := (s.ackPos + off) & s.mask
		if s.lost[p] || s.sentAt[p] >= cut {
			return 0
		}
		s.lost[p] = true
		return 1
	}
	queued := queue(0)
	if s.naked[s.ackPos] {
		if now-s.lastSweep > 4*s.rtt {
			s.lastSweep = now
			for off := 1; off < n; off++ {
				if s.naked[(s.ackPos+off)&s.mask] {
					queued += queue(off)
				}
			}
		}
	} else {
		if s.ackSeq == s.runEnd {
			s.run = min(2*s.run, s.size)
		} else {
			s.run = repairRunMin
		}
		run := min(s.run, n)
		for off := 1; off < run; off++ {
			queued += queue(off)
		}
		s.runEnd = seqno.Add(s.ackSeq, run)
	}
	s.losses += queued
	s.lossHint = 0
	return queued
}

// fail records why nothing more can be sent and wakes everyone.
func (s *sender) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	notify(s.wake)
	notify(s.space)
}

// sendLoop is the sender goroutine: it waits for something to send, paces
// according to the congestion controller, and writes batches of packets.
func (c *Conn) sendLoop() {
	defer c.wg.Done()
	s := &c.snd
	out := make([][]byte, 0, batchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var h wire.DataHeader
	h.Position = wire.PosSolo
	h.DstID = c.peerID
	for {
		s.mu.Lock()
		if s.pinned {
			// The last batch is out: its slots are fill's again.
			s.pinned = false
			if seqno.Cmp(s.pin, s.ackSeq) < 0 {
				notify(s.space)
			}
		}
		for s.err == nil && !s.canSend() {
			s.mu.Unlock()
			select {
			case <-s.wake:
			case <-c.closing:
				return
			}
			s.mu.Lock()
		}
		if s.err != nil {
			s.mu.Unlock()
			return
		}
		wall := time.Now()
		now := c.since(wall)
		interval := int64(s.cc.PacketInterval())
		budget := batchSize
		if interval >= 1000 {
			if s.nextSend < now-int64(maxPacingBurst) {
				s.nextSend = now - int64(maxPacingBurst)
			}
			if now < s.nextSend {
				wait := time.Duration(s.nextSend - now)
				s.mu.Unlock()
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-c.closing:
					return
				}
				continue
			}
			budget = int(min(int64(batchSize), 1+(now-s.nextSend)/interval))
		}
		out = out[:0]
		paced := 0
		payload := 0
		s.clock.hold(wall) // the batch leaves at one instant
		for len(out) < batchSize && paced < budget {
			seq, retrans, ok := s.next()
			if !ok {
				break
			}
			p := s.pos(seq)
			l := int(s.lens[p])
			s.sentAt[p] = now
			s.resent[p] = retrans
			h.Seq = seq
			h.Timestamp = uint32(now / 1000)
			s.msgNo++
			if s.msgNo > wire.MaxMsgNo {
				s.msgNo = 1
			}
			h.MsgNo = s.msgNo
			b := s.buf[p*s.stride : p*s.stride+wire.HeaderLen+l]
			wire.PutDataHeader(b, &h)
			if len(out) == 0 {
				s.pin, s.pinned = seq, true
			}
			out = append(out, b)
			payload += l
			s.snap.Guess = retrans && !s.naked[p]
			s.cc.OnSent(seq, l, retrans, &s.snap)
			s.snap.Guess = false
			if retrans {
				c.stats.retransmitted.Add(1)
			}
			if seq%probeModulus != 0 {
				paced++ // the packet after seq%16 == 0 goes out at once: packet pair
			}
		}
		s.clock.release()
		if interval >= 1000 {
			s.nextSend += int64(paced) * interval
		}
		if len(out) > 0 && s.inFlight() == len(out) {
			s.lastProgress = now // the timeout runs from the first packet after idling
		}
		s.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		sent, err := c.sock.writeBatch(out, &c.peer)
		c.stats.sent.Add(uint64(sent))
		c.stats.payloadSent.Add(uint64(payload))
		c.lastSent.Store(now)
		if err != nil && !isTransient(err) {
			c.fail(err)
			return
		}
	}
}

// batchClock is the controller's clock: the wall clock, except while
// sendLoop hands out a batch, whose packets all leave at the instant it
// read once (their sentAt): then that instant, not one clock read per
// packet. The sender's lock guards it, as it guards every call into the
// controller.
type batchClock struct {
	at time.Time // the held instant; zero when not held
}

// Now returns the held instant, or the wall clock's.
func (b *batchClock) Now() time.Time {
	if !b.at.IsZero() {
		return b.at
	}
	return time.Now()
}

func (b *batchClock) hold(at time.Time) { b.at = at }

func (b *batchClock) release() { b.at = time.Time{} }
