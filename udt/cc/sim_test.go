package cc

// A deterministic discrete-event simulation of one UDT connection over a
// bottleneck link, for testing controllers without sockets or sleeping.
//
// Topology: sender → (sender's NIC) → bottleneck (rate R, drop-tail queue
// of Q packets, may change rate once) → random loss p → one-way delay D →
// receiver; the receiver's ACKs and NAKs come back after D with loss p and
// no queueing; the sender's ACK2s go forward behind the queued data.
//
// The sender mirrors udt/sender.go: retransmissions first, then new packets
// while in flight < max(2, min(flow window, int(Window()))); pacing one
// packet per PacketInterval (< 1 µs: unpaced) with at most 2 ms of pacing
// debt and batches of at most 64, the packet after seq%16 == 0 unpaced
// (packet pair); it wakes up late by up to `jitter` after a pacing sleep.
// ACK, light ACK, NAK and EXP handling follow the engine, including its RTT
// and rate smoothing, so the controller sees the Snapshots it would see.
//
// The receiver mirrors udt/receiver.go: full ACK every 10 ms (none if the
// ACK point is confirmed by an ACK2 already, or repeated within RTT+4·RTTVar),
// at once after a short packet; a light ACK every 64 packets; a gap is NAKed
// at the first 10 ms tick at least 3 ms after it was seen and re-NAKed every
// max(40 ms, 2·(RTT+4·RTTVar)) while unrepaired; RTT from ACK2; receive rate
// and link capacity by libudt's estimators. The application reads at once.
//
// Time is an int64 count of nanoseconds driving a fake Clock.

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/seqno"
)

type simConfig struct {
	rate       float64       // bottleneck, packets/s
	rate2      float64       // bottleneck after changeAt (0: no change)
	changeAt   time.Duration //
	rtt        time.Duration // two-way propagation delay
	queue      int           // drop-tail queue, packets (incl. the one in service)
	loss       float64       // random loss each way (data, ACK, NAK, ACK2)
	duration   time.Duration // simulated time
	packets    int           // data to transfer (0: unlimited); the last packet is short
	isn        int32         // initial sequence number
	seed       uint64        //
	nicRate    float64       // sender's own link, packets/s (0: 10·rate)
	jitter     time.Duration // pacing wake-up lateness, uniform in [0, jitter]
	flowWindow int           // receiver buffer, packets (0: 25600)
	trace      func(s *sim)  // called at every 10 ms tick (diagnostics)
	cubic      bool          // a TCP CUBIC flow shares the bottleneck (sim_cubic_test.go)
	cubicStart time.Duration // when it starts
}

type simResult struct {
	delivered  int           // packets delivered in order to the receiving application
	sent       int           // data packets sent, retransmissions included
	retrans    int           // retransmissions
	overflow   int           // dropped by the full queue
	randomLoss int           // data packets lost at random
	timeouts   int           // EXP go-back-N events
	blocked    time.Duration // time the sender had data but no window
	finish     time.Duration // when the last packet was delivered (packets > 0; 0 if never)
	queueLen   []int         // queue length at every 10 ms tick
	progress   []int         // packets delivered by every 10 ms tick
	tcp        simTCPResult  // the competing TCP flow (cfg.cubic)
}

// utilization is the delivered fraction of what the link could carry.
func (r *simResult) utilization(cfg *simConfig) float64 {
	capacity := 0.0
	d := cfg.duration.Seconds()
	if cfg.rate2 > 0 && cfg.changeAt < cfg.duration {
		c := cfg.changeAt.Seconds()
		capacity = cfg.rate*c + cfg.rate2*(d-c)
	} else {
		capacity = cfg.rate * d
	}
	return float64(r.delivered) / capacity
}

// deliveredBetween is the delivery rate in packets/s between two times
// (10 ms resolution).
func (r *simResult) deliveredBetween(from, to time.Duration) float64 {
	i, j := int(from/simTick), int(to/simTick)
	j = min(j, len(r.progress)-1)
	if i >= j {
		return 0
	}
	return float64(r.progress[j]-r.progress[i]) / (to - from).Seconds()
}

const (
	simTick       = 10 * time.Millisecond
	simRingBits   = 17
	simRingMask   = 1<<simRingBits - 1
	simNever      = int64(math.MaxInt64)
	simPacingDebt = int64(2 * time.Millisecond)
	simBatch      = 64
	simReorder    = int64(3 * time.Millisecond)
	simNAKMin     = int64(40 * time.Millisecond)
	simEXPMin     = int64(300 * time.Millisecond)
)

type simClock struct {
	base time.Time
	t    int64
}

func (c *simClock) Now() time.Time { return c.base.Add(time.Duration(c.t)) }

const (
	fwdData = iota
	fwdShortData
	fwdACK2
	revACK
	revLightACK
	revNAK
)

type simMsg struct {
	at       int64
	kind     uint8
	seq      int32 // data seq, ACK number
	no       int32 // ACK sequence number (ACK, ACK2)
	rtt      int64 // ACK: receiver's RTT and variance, ns (µs resolution)
	rttVar   int64
	avail    int
	recvRate float64
	capacity float64
	nak      [2]int // NAK: ranges nakBuf[nak[0]:nak[1]]
}

// simFIFO is a queue of messages in arrival order.
type simFIFO struct {
	q    []simMsg
	head int
}

func (f *simFIFO) push(m simMsg) {
	if f.head == len(f.q) {
		f.q, f.head = f.q[:0], 0
	}
	if n := len(f.q); n > f.head && m.at < f.q[n-1].at {
		m.at = f.q[n-1].at // FIFO: never overtake
	}
	f.q = append(f.q, m)
}

func (f *simFIFO) next() int64 {
	if f.head == len(f.q) {
		return simNever
	}
	return f.q[f.head].at
}

func (f *simFIFO) pop() simMsg {
	m := f.q[f.head]
	f.head++
	return m
}

type sim struct {
	cfg   simConfig
	clk   *simClock
	cc    Controller
	rng   *rand.Rand // losses
	jrng  *rand.Rand // jitter
	res   simResult
	fwd   simFIFO
	rev   simFIFO
	naks  [][2]int32
	end   int64
	nic   int64 // ns per packet on the sender's link
	drain []int64
	dhead int
	last  int64 // departure time of the last packet through the bottleneck

	// Sender (udt/sender.go).
	sAck, sNext, sEnd int32
	unlimited         bool
	lost              []bool
	naked             []bool // reported lost at least once (Snapshot.Received)
	seen              int32  // one past the newest packet the receiver showed it holds
	losses, lossHint  int
	flowWindow        int
	lastACK           int32
	rtt, rttVar       int64
	recvRate, bw      float64
	snap              Snapshot
	nextSend          int64
	nicFree           int64
	senderAt          int64
	blockedAt         int64 // when the window closed (-1: open)
	lastProgress      int64
	expCount          int

	// Receiver (udt/receiver.go).
	present     []int32
	rAck, rMax  int32
	holes       []simHole
	rLosses     int
	lastAckSent int32
	lastAckTime int64
	lastAck2    int32
	ackNo       int32
	history     [1024]simACKRecord
	rRTT, rVar  int64
	sinceACK    int
	window      int
	est         simEstimator

	tcp *simTCP // the competing TCP flow (nil: none)
}

type simHole struct {
	seq int32
	due int64
}

type simACKRecord struct {
	no   int32
	ack  int32
	sent int64
}

// runSim runs one connection with the controller made by mk.
func runSim(cfg simConfig, mk func(Clock) Controller) simResult {
	if cfg.nicRate == 0 {
		cfg.nicRate = 10 * max(cfg.rate, cfg.rate2)
	}
	if cfg.flowWindow == 0 {
		cfg.flowWindow = 25600
	}
	clk := &simClock{base: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := &sim{
		cfg:  cfg,
		clk:  clk,
		rng:  rand.New(rand.NewPCG(cfg.seed, 0x51D1)),
		jrng: rand.New(rand.NewPCG(cfg.seed, 0x717E)),
		end:  int64(cfg.duration),
		nic:  int64(1e9 / cfg.nicRate),
	}
	s.cc = mk(clk)
	isn := cfg.isn & seqno.Max
	s.sAck, s.sNext, s.lastACK, s.seen = isn, isn, isn, isn
	s.unlimited = cfg.packets == 0
	s.sEnd = seqno.Add(isn, cfg.packets)
	s.lost = make([]bool, 1<<simRingBits)
	s.naked = make([]bool, 1<<simRingBits)
	s.flowWindow = cfg.flowWindow
	s.rtt, s.rttVar = int64(100*time.Millisecond), int64(50*time.Millisecond)
	s.recvRate, s.bw = 16, 1
	s.snap.MSS = 1500
	s.snap.FlowWindow = cfg.flowWindow
	s.lastProgress = 0

	s.present = make([]int32, 1<<simRingBits)
	for i := range s.present {
		s.present[i] = -1
	}
	s.rAck, s.rMax = isn, seqno.Dec(isn)
	s.lastAckSent, s.lastAck2 = -1, -1
	s.rRTT, s.rVar = int64(100*time.Millisecond), int64(50*time.Millisecond)
	s.window = cfg.flowWindow
	s.est.init()
	s.drain = make([]int64, 0, cfg.queue+1)
	s.res.queueLen = make([]int, 0, cfg.duration/simTick+1)
	s.res.progress = make([]int, 0, cfg.duration/simTick+1)
	if cfg.cubic {
		s.tcp = newSimTCP(s)
	}

	s.run()
	if s.tcp != nil {
		s.res.tcp = s.tcp.res
	}
	return s.res
}

func (s *sim) run() {
	nextTick := int64(0)
	s.senderAt = 0
	s.blockedAt = -1
	for {
		t, what := s.fwd.next(), 0
		if r := s.rev.next(); r < t {
			t, what = r, 1
		}
		if nextTick < t {
			t, what = nextTick, 2
		}
		if s.senderAt < t {
			t, what = s.senderAt, 3
		}
		if s.tcp != nil {
			if u, k := s.tcp.next(); u < t {
				t, what = u, k
			}
		}
		if t > s.end {
			return
		}
		s.clk.t = t
		switch what {
		case 0:
			s.forwardArrival(s.fwd.pop())
		case 1:
			s.reverseArrival(s.rev.pop())
		case 2:
			s.tick(t)
			nextTick += int64(simTick)
		case 3:
			s.sendStep(t)
		default:
			s.tcp.step(what, t)
		}
		if s.cfg.packets > 0 && s.res.finish > 0 {
			return
		}
	}
}

// ---- sender ----

func (s *sim) inFlight() int { return seqno.Off(s.sAck, s.sNext) }

func (s *sim) slot(seq int32) int { return int(seq) & simRingMask }

func (s *sim) windowSize() int {
	w := s.flowWindow
	if c := s.cc.Window(); c < float64(w) {
		w = int(c)
	}
	return max(w, 2)
}

func (s *sim) hasNew() bool { return s.unlimited || s.sNext != s.sEnd }

func (s *sim) canSend() bool {
	return s.losses > 0 || s.hasNew() && s.inFlight() < s.windowSize()
}

func (s *sim) wake(now int64) {
	if s.senderAt == simNever {
		s.senderAt = now
	}
	if s.blockedAt >= 0 && s.canSend() {
		s.res.blocked += time.Duration(now - s.blockedAt)
		s.blockedAt = -1
	}
}

func (s *sim) snapshot() *Snapshot {
	s.snap.RTT = time.Duration(s.rtt)
	s.snap.RTTVar = time.Duration(s.rttVar)
	s.snap.RecvRate = s.recvRate
	s.snap.Bandwidth = s.bw
	s.snap.MaxSent = seqno.Dec(s.sNext)
	s.snap.InFlight = s.inFlight()
	return &s.snap
}

func (s *sim) nextPacket() (seq int32, retrans, ok bool) {
	if s.losses > 0 {
		n := s.inFlight()
		for off := s.lossHint; off < n; off++ {
			q := seqno.Add(s.sAck, off)
			if s.lost[s.slot(q)] {
				s.lost[s.slot(q)] = false
				s.losses--
				s.lossHint = off + 1
				return q, true, true
			}
		}
		s.losses, s.lossHint = 0, n
	}
	if s.hasNew() && s.inFlight() < s.windowSize() {
		seq = s.sNext
		s.sNext = seqno.Inc(seq)
		return seq, false, true
	}
	return 0, false, false
}

// sendStep is one pass of the engine's sendLoop.
func (s *sim) sendStep(now int64) {
	if !s.canSend() {
		s.senderAt = simNever
		if s.hasNew() && s.blockedAt < 0 {
			s.blockedAt = now
		}
		return
	}
	if now < s.nicFree {
		s.senderAt = s.nicFree
		return
	}
	interval := int64(s.cc.PacketInterval())
	budget := simBatch
	if interval >= 1000 {
		if s.nextSend < now-simPacingDebt {
			s.nextSend = now - simPacingDebt
		}
		if now < s.nextSend {
			s.senderAt = s.nextSend
			if s.cfg.jitter > 0 {
				s.senderAt += s.jrng.Int64N(int64(s.cfg.jitter) + 1)
			}
			return
		}
		budget = int(min(int64(simBatch), 1+(now-s.nextSend)/interval))
	}
	sent, paced := 0, 0
	for sent < simBatch && paced < budget {
		seq, retrans, ok := s.nextPacket()
		if !ok {
			break
		}
		short := !s.unlimited && seqno.Inc(seq) == s.sEnd
		s.cc.OnSent(seq, 1456, retrans, &s.snap)
		s.res.sent++
		if retrans {
			s.res.retrans++
		}
		s.transmit(now, seq, short)
		sent++
		if seq%16 != 0 {
			paced++
		}
	}
	if interval >= 1000 {
		s.nextSend += int64(paced) * interval
	}
	if sent > 0 && s.inFlight() == sent {
		s.lastProgress = now
	}
	if sent == 0 {
		s.senderAt = simNever
		return
	}
	s.senderAt = now
}

// transmit puts a data packet on the sender's link and through the
// bottleneck.
func (s *sim) transmit(now int64, seq int32, short bool) {
	tx := max(now, s.nicFree)
	s.nicFree = tx + s.nic
	dep, ok := s.enqueue(tx)
	if !ok {
		s.res.overflow++
		return
	}
	if s.rng.Float64() < s.cfg.loss {
		s.res.randomLoss++
		return
	}
	kind := uint8(fwdData)
	if short {
		kind = fwdShortData
	}
	s.fwd.push(simMsg{at: dep + int64(s.cfg.rtt/2), kind: kind, seq: seq})
}

// enqueue puts a packet that reaches the bottleneck at tx into its
// drop-tail queue and returns when it leaves, or ok false if the queue is
// full. Both flows share it.
func (s *sim) enqueue(tx int64) (dep int64, ok bool) {
	for s.dhead < len(s.drain) && s.drain[s.dhead] <= tx {
		s.dhead++
	}
	if s.dhead == len(s.drain) {
		s.drain, s.dhead = s.drain[:0], 0
	}
	if len(s.drain)-s.dhead >= s.cfg.queue {
		return 0, false
	}
	start := max(tx, s.last)
	rate := s.cfg.rate
	if s.cfg.rate2 > 0 && start >= int64(s.cfg.changeAt) {
		rate = s.cfg.rate2
	}
	dep = start + int64(1e9/rate)
	s.last = dep
	if s.dhead > 0 && len(s.drain) == cap(s.drain) {
		s.drain = append(s.drain[:0], s.drain[s.dhead:]...)
		s.dhead = 0
	}
	s.drain = append(s.drain, dep)
	return dep, true
}

func (s *sim) queueLen(now int64) int {
	for s.dhead < len(s.drain) && s.drain[s.dhead] <= now {
		s.dhead++
	}
	return len(s.drain) - s.dhead
}

func (s *sim) acknowledge(ack int32, now int64) {
	n := seqno.Off(s.sAck, ack)
	if n <= 0 || seqno.Off(ack, s.sNext) < 0 {
		return
	}
	for i := 0; i < n; i++ {
		q := seqno.Add(s.sAck, i)
		s.naked[s.slot(q)] = false
		if s.lost[s.slot(q)] {
			s.lost[s.slot(q)] = false
			s.losses--
		}
	}
	s.see(ack)
	s.sAck = ack
	s.progress(now)
	s.lossHint = max(s.lossHint-n, 0)
}

// see counts packets as received up to next, as the engine's sender.see.
func (s *sim) see(next int32) {
	if seqno.Cmp(next, s.sNext) > 0 {
		next = s.sNext
	}
	if d := seqno.Off(s.seen, next); d > 0 {
		s.seen = next
		s.snap.Received += int64(d)
	}
}

func (s *sim) progress(now int64) {
	s.lastProgress = now
	s.expCount = 1
}

func (s *sim) reverseArrival(m simMsg) {
	now := m.at
	switch m.kind {
	case revLightACK:
		if seqno.Off(m.seq, s.sNext) < 0 || seqno.Cmp(m.seq, s.lastACK) < 0 {
			break
		}
		s.flowWindow -= seqno.Off(s.lastACK, m.seq)
		s.lastACK = m.seq
		s.acknowledge(m.seq, now)
	case revACK:
		// ACK2 first, as the engine does.
		if s.rng.Float64() >= s.cfg.loss {
			s.fwd.push(simMsg{at: max(now, s.last) + int64(s.cfg.rtt/2), kind: fwdACK2, no: m.no})
		}
		if seqno.Off(m.seq, s.sNext) < 0 {
			break
		}
		if seqno.Cmp(m.seq, s.lastACK) >= 0 {
			s.flowWindow = max(m.avail, 2)
			s.lastACK = m.seq
		}
		s.acknowledge(m.seq, now)
		if m.rtt > 0 {
			d := m.rtt - s.rtt
			if d < 0 {
				d = -d
			}
			s.rttVar = (3*s.rttVar + d) / 4
			s.rtt = (7*s.rtt + m.rtt) / 8
		}
		if m.recvRate > 0 {
			s.recvRate = (7*s.recvRate + m.recvRate) / 8
		}
		if m.capacity > 0 {
			s.bw = (7*s.bw + m.capacity) / 8
		}
		s.cc.OnACK(m.seq, s.snapshot())
	case revNAK:
		s.onNAK(s.naks[m.nak[0]:m.nak[1]], now)
	}
	s.wake(now)
}

func (s *sim) onNAK(ranges [][2]int32, now int64) {
	maxSent := seqno.Dec(s.sNext)
	var reported int32
	any := false
	for _, r := range ranges {
		first, last := r[0], r[1]
		if seqno.Cmp(first, last) > 0 || seqno.Cmp(last, maxSent) > 0 {
			return
		}
		if !any {
			reported, any = first, true
		}
		s.see(seqno.Add(last, 2))
		if seqno.Cmp(first, s.sAck) < 0 {
			first = s.sAck
		}
		if seqno.Cmp(first, last) > 0 {
			continue
		}
		for off, end := seqno.Off(s.sAck, first), seqno.Off(s.sAck, last); off <= end; off++ {
			q := seqno.Add(s.sAck, off)
			if !s.naked[s.slot(q)] {
				s.naked[s.slot(q)] = true
				s.snap.Received--
			}
			if !s.lost[s.slot(q)] {
				s.lost[s.slot(q)] = true
				s.losses++
			}
			if off < s.lossHint {
				s.lossHint = off
			}
		}
	}
	if any {
		s.cc.OnLoss(reported, s.snapshot())
		s.progress(now)
	}
}

func (s *sim) rto() int64 {
	n := int64(max(s.expCount, 1))
	return max(n*(s.rtt+4*s.rttVar)+int64(simTick), n*simEXPMin)
}

func (s *sim) expTimer(now int64) {
	if s.inFlight() > 0 && now-s.lastProgress > s.rto() {
		if n := s.inFlight(); s.losses == 0 {
			for off := 0; off < n; off++ {
				s.lost[s.slot(seqno.Add(s.sAck, off))] = true
			}
			s.losses, s.lossHint = n, 0
			s.res.timeouts++
			s.cc.OnTimeout(s.snapshot())
			s.wake(now)
		}
		s.expCount++
		s.lastProgress = now
	}
}

// ---- receiver ----

func (s *sim) forwardArrival(m simMsg) {
	now := m.at
	switch m.kind {
	case fwdACK2:
		s.onACK2(m.no, now)
		return
	}
	seq := m.seq
	s.est.onArrival(seq, now)
	off := seqno.Off(s.rAck, seq)
	if off < 0 || off >= s.window || s.present[s.slot(seq)] == seq {
		return
	}
	s.present[s.slot(seq)] = seq
	if seqno.Cmp(seq, s.rMax) > 0 {
		if gap := seqno.Off(s.rMax, seq) - 1; gap > 0 {
			s.rLosses += gap
			for q := seqno.Inc(s.rMax); q != seq; q = seqno.Inc(q) {
				s.holes = append(s.holes, simHole{seq: q, due: now + simReorder})
			}
		}
		s.rMax = seq
	} else {
		s.rLosses--
	}
	if seq == s.rAck {
		end := seqno.Inc(s.rMax)
		for s.rAck != end && s.present[s.slot(s.rAck)] == s.rAck {
			s.rAck = seqno.Inc(s.rAck)
		}
		s.res.delivered = seqno.Off(s.cfg.isn&seqno.Max, s.rAck)
		if s.cfg.packets > 0 && s.res.delivered >= s.cfg.packets && s.res.finish == 0 {
			s.res.finish = time.Duration(now)
		}
	}
	s.sinceACK++
	if m.kind == fwdShortData {
		s.fullACK(now)
	} else if s.sinceACK >= 64 {
		s.lightACK(now)
	}
}

func (s *sim) onACK2(no int32, now int64) {
	rec := &s.history[int(no)%len(s.history)]
	if rec.no != no || rec.sent == 0 {
		return
	}
	sample := now - rec.sent
	rec.sent = 0
	d := sample - s.rRTT
	if d < 0 {
		d = -d
	}
	s.rVar = (3*s.rVar + d) / 4
	s.rRTT = (7*s.rRTT + sample) / 8
	if seqno.Cmp(rec.ack, s.lastAck2) > 0 || s.lastAck2 < 0 {
		s.lastAck2 = rec.ack
	}
}

func (s *sim) sendRev(m simMsg) {
	if s.rng.Float64() < s.cfg.loss {
		return
	}
	m.at += int64(s.cfg.rtt / 2)
	s.rev.push(m)
}

func (s *sim) fullACK(now int64) {
	ack := s.rAck
	if ack == s.lastAck2 {
		return
	}
	if ack == s.lastAckSent && now-s.lastAckTime < s.rRTT+4*s.rVar {
		return
	}
	s.ackNo++
	if s.ackNo < 0 {
		s.ackNo = 0
	}
	s.history[int(s.ackNo)%len(s.history)] = simACKRecord{no: s.ackNo, ack: ack, sent: now}
	s.lastAckSent, s.lastAckTime = ack, now
	s.sinceACK = 0
	s.sendRev(simMsg{
		at:       now,
		kind:     revACK,
		seq:      ack,
		no:       s.ackNo,
		rtt:      s.rRTT / 1000 * 1000,
		rttVar:   s.rVar / 1000 * 1000,
		avail:    max(s.window-1, 2),
		recvRate: float64(s.est.recvRate()),
		capacity: float64(s.est.capacity()),
	})
}

func (s *sim) lightACK(now int64) {
	if s.rAck == s.lastAck2 {
		return
	}
	s.sinceACK = 0
	s.sendRev(simMsg{at: now, kind: revLightACK, seq: s.rAck})
}

func (s *sim) sendNAKs(now int64) {
	// Forget repaired holes.
	k := 0
	for _, h := range s.holes {
		if seqno.Cmp(h.seq, s.rAck) >= 0 && s.present[s.slot(h.seq)] != h.seq {
			s.holes[k] = h
			k++
		}
	}
	s.holes = s.holes[:k]
	interval := max(2*(s.rRTT+4*s.rVar), simNAKMin)
	from := len(s.naks)
	for i := 0; i < len(s.holes) && len(s.naks)-from < 180; i++ {
		h := &s.holes[i]
		if now < h.due {
			continue
		}
		h.due = now + interval
		if n := len(s.naks); n > from && s.naks[n-1][1] == seqno.Dec(h.seq) {
			s.naks[n-1][1] = h.seq
		} else {
			s.naks = append(s.naks, [2]int32{h.seq, h.seq})
		}
	}
	if len(s.naks) > from {
		s.sendRev(simMsg{at: now, kind: revNAK, nak: [2]int{from, len(s.naks)}})
	}
}

func (s *sim) tick(now int64) {
	s.fullACK(now)
	s.sendNAKs(now)
	s.expTimer(now)
	if s.tcp != nil {
		s.tcp.tick(now)
	}
	s.res.queueLen = append(s.res.queueLen, s.queueLen(now))
	s.res.progress = append(s.res.progress, s.res.delivered)
	if s.cfg.trace != nil {
		s.cfg.trace(s)
	}
}

// simEstimator is libudt 4.11's CPktTimeWindow (a libudt receiver: our own
// reports the arrival rate with less bias under jitter).
type simEstimator struct {
	arrivals  [16]int64
	arrIdx    int
	lastArr   int64
	probes    [64]int64
	probeIdx  int
	probeTime int64
	probeSeq  int32
	scratch   [64]int64
}

func (e *simEstimator) init() {
	for i := range e.arrivals {
		e.arrivals[i] = 1_000_000_000
	}
	for i := range e.probes {
		e.probes[i] = 1_000_000
	}
	e.probeSeq = -1
	e.lastArr = -1
}

func (e *simEstimator) onArrival(seq int32, now int64) {
	if e.lastArr >= 0 {
		e.arrivals[e.arrIdx] = now - e.lastArr
		e.arrIdx = (e.arrIdx + 1) % len(e.arrivals)
	}
	e.lastArr = now
	switch seq % 16 {
	case 0:
		e.probeTime, e.probeSeq = now, seq
	case 1:
		if e.probeSeq >= 0 && seq == e.probeSeq+1 {
			e.probes[e.probeIdx] = now - e.probeTime
			e.probeIdx = (e.probeIdx + 1) % len(e.probes)
		}
		e.probeSeq = -1
	}
}

func simRateFrom(n, sum int64) int32 {
	if sum <= 0 {
		return 1_000_000
	}
	return int32(min((1_000_000_000*n+sum-1)/sum, 1_000_000))
}

func (e *simEstimator) recvRate() int32 {
	s := e.scratch[:len(e.arrivals)-1]
	copy(s, e.arrivals[:len(s)])
	slices.Sort(s)
	median := s[len(s)/2]
	var sum, n int64
	for _, v := range e.arrivals {
		if v > median/8 && v < median*8 {
			sum += v
			n++
		}
	}
	if n <= 8 || sum <= 0 {
		return 0
	}
	return simRateFrom(n, sum)
}

func (e *simEstimator) capacity() int32 {
	s := e.scratch[:len(e.probes)-1]
	copy(s, e.probes[:len(s)])
	slices.Sort(s)
	median := s[len(s)/2]
	sum, n := median, int64(1)
	for _, v := range e.probes {
		if v > median/8 && v < median*8 {
			sum += v
			n++
		}
	}
	return simRateFrom(n, sum)
}

// ---- scenarios ----

// Packets per second of a link of mbps megabits per second carrying
// 1472-byte UDP payloads.
func pktRate(mbps float64) float64 { return mbps * 1e6 / 8 / 1472 }

func newBBRController(c Clock) Controller    { return NewBBR(c) }
func newNativeController(c Clock) Controller { return NewNative(c) }

// compareSim runs cfg with BBR and with UDT's native controller and logs
// both (go test -v shows the table).
func compareSim(t *testing.T, name string, cfg simConfig) (bbr, native simResult) {
	t.Helper()
	bbr = runSim(cfg, newBBRController)
	native = runSim(cfg, newNativeController)
	for _, r := range []struct {
		alg string
		res *simResult
	}{{"bbr", &bbr}, {"udt", &native}} {
		t.Logf("%-22s %s: utilization %5.1f%%, sent %7d, retransmitted %6d, overflow %5.2f%%, timeouts %d, window-blocked %v",
			name, r.alg, 100*r.res.utilization(&cfg), r.res.sent, r.res.retrans,
			100*float64(r.res.overflow)/float64(max(r.res.sent, 1)), r.res.timeouts, r.res.blocked.Round(time.Millisecond))
	}
	return bbr, native
}

// Test 1: a long path with 1 % random loss each way. Loss is not
// congestion here: BBR must keep the link nearly full, where UDT's native
// controller (which cuts its rate on every loss epoch) cannot.
func TestSimLossyLongPath(t *testing.T) {
	cfg := simConfig{
		rate:     pktRate(100),
		rtt:      100 * time.Millisecond,
		queue:    850, // one BDP
		loss:     0.01,
		duration: 30 * time.Second,
		seed:     1,
		jitter:   200 * time.Microsecond,
	}
	bbr, native := compareSim(t, "100Mbit 100ms 1%", cfg)
	if u := bbr.utilization(&cfg); u < 0.90 {
		t.Errorf("BBR goodput %.1f%% of the link, want >= 90%%", 100*u)
	}
	if bbr.utilization(&cfg) < 3*native.utilization(&cfg) {
		t.Errorf("BBR (%.1f%%) not well ahead of native (%.1f%%)", 100*bbr.utilization(&cfg), 100*native.utilization(&cfg))
	}
}

// Test 2: a fast path with rare loss.
func TestSimFastPath(t *testing.T) {
	cfg := simConfig{
		rate:     pktRate(300),
		rtt:      50 * time.Millisecond,
		queue:    1275, // one BDP
		loss:     0.0005,
		duration: 20 * time.Second,
		seed:     2,
		jitter:   200 * time.Microsecond,
	}
	bbr, _ := compareSim(t, "300Mbit 50ms 0.05%", cfg)
	if u := bbr.utilization(&cfg); u < 0.85 {
		t.Errorf("BBR goodput %.1f%% of the link, want >= 85%%", 100*u)
	}
}

// Test 3: a shallow drop-tail queue (a quarter of the BDP) and no random
// loss: the link stays full and the queue overflows rarely (no slow-start
// style overshoot, no probing beyond what the queue holds).
func TestSimShallowQueue(t *testing.T) {
	cfg := simConfig{
		rate:     pktRate(100),
		rtt:      50 * time.Millisecond,
		queue:    100,
		duration: 30 * time.Second,
		seed:     3,
		jitter:   200 * time.Microsecond,
	}
	bbr, _ := compareSim(t, "100Mbit 50ms q=100", cfg)
	if u := bbr.utilization(&cfg); u < 0.95 {
		t.Errorf("BBR utilization %.1f%%, want >= 95%%", 100*u)
	}
	if f := float64(bbr.overflow) / float64(bbr.sent); f >= 0.01 {
		t.Errorf("BBR lost %.2f%% of its packets to queue overflow, want < 1%%", 100*f)
	}
}

// Test 4: start-up. A 1 MiB transfer over test 1's link finishes within
// 10 RTTs, whatever the random losses (20 seeds).
func TestSimStartup(t *testing.T) {
	const rtts = 10
	var worst, total time.Duration
	for seed := uint64(1); seed <= 20; seed++ {
		cfg := simConfig{
			rate:     pktRate(100),
			rtt:      100 * time.Millisecond,
			queue:    850,
			loss:     0.01,
			duration: 10 * time.Second,
			packets:  (1<<20 + 1455) / 1456,
			seed:     seed,
			jitter:   200 * time.Microsecond,
		}
		bbr := runSim(cfg, newBBRController)
		native := runSim(cfg, newNativeController)
		if seed <= 3 {
			t.Logf("1MiB, 100Mbit 100ms 1%%, seed %d: bbr %v, udt %v", seed, bbr.finish, native.finish)
		}
		if bbr.finish == 0 || bbr.finish > rtts*cfg.rtt {
			t.Errorf("seed %d: 1 MiB took %v (%d packets delivered), want <= %v", seed, bbr.finish, bbr.delivered, rtts*cfg.rtt)
		}
		worst = max(worst, bbr.finish)
		total += bbr.finish
	}
	t.Logf("1MiB: bbr mean %v, worst %v", total/20, worst)
}

// Test 5: a loss-free link whose rate halves mid-run. The bandwidth filter
// must not hold the old rate for long: within 2 s the queue no longer sits
// full and the new rate is used.
func TestSimRateHalves(t *testing.T) {
	cfg := simConfig{
		rate:     pktRate(100),
		rate2:    pktRate(50),
		changeAt: 10 * time.Second,
		rtt:      50 * time.Millisecond,
		queue:    425, // one BDP at the first rate
		duration: 20 * time.Second,
		seed:     5,
		jitter:   200 * time.Microsecond,
	}
	bbr, _ := compareSim(t, "100->50Mbit 50ms", cfg)
	if r := bbr.deliveredBetween(5*time.Second, 10*time.Second); r < 0.9*cfg.rate {
		t.Errorf("before the change: %.0f packets/s, want >= 90%% of %.0f", r, cfg.rate)
	}
	from := cfg.changeAt + 2*time.Second
	full, n := 0, 0
	for i := int(from / simTick); i < len(bbr.queueLen); i++ {
		n++
		if bbr.queueLen[i] >= cfg.queue*9/10 {
			full++
		}
	}
	if f := float64(full) / float64(n); f > 0.02 {
		t.Errorf("the queue was nearly full at %.0f%% of the ticks from 2 s after the change on", 100*f)
	}
	if r := bbr.deliveredBetween(from, cfg.duration); r < 0.9*cfg.rate2 {
		t.Errorf("after the change: %.0f packets/s, want >= 90%% of %.0f", r, cfg.rate2)
	}
	for s := cfg.changeAt; s < cfg.changeAt+4*time.Second; s += time.Second {
		q := 0
		for i := int(s / simTick); i < int((s+time.Second)/simTick); i++ {
			q = max(q, bbr.queueLen[i])
		}
		t.Logf("  %v..%v after the change: %.0f packets/s, max queue %d", s-cfg.changeAt, s-cfg.changeAt+time.Second,
			bbr.deliveredBetween(s, s+time.Second), q)
	}
}

// Heavier random loss (5 %): no congestion anywhere, so BBR must not
// collapse the way a loss-driven controller does.
func TestSimHeavyRandomLoss(t *testing.T) {
	cfg := simConfig{
		rate:     pktRate(100),
		rtt:      50 * time.Millisecond,
		queue:    425,
		loss:     0.05,
		duration: 20 * time.Second,
		seed:     1,
		jitter:   200 * time.Microsecond,
	}
	bbr, native := compareSim(t, "100Mbit 50ms 5%", cfg)
	if u := bbr.utilization(&cfg); u < 0.40 || u < 5*native.utilization(&cfg) {
		t.Errorf("BBR goodput %.1f%% (native %.1f%%), want >= 40%% and 5x native", 100*u, 100*native.utilization(&cfg))
	}
}

// The same connection with sequence numbers starting 2^15 below 2^31 (so
// that packet pairs and the low bits that seed BBR's first phase fall
// alike) must behave exactly as one starting at 0: every sequence
// computation wraps.
func TestSimSequenceWrap(t *testing.T) {
	for _, loss := range []float64{0, 0.01} {
		cfg := simConfig{
			rate:     pktRate(100),
			rtt:      50 * time.Millisecond,
			queue:    200,
			loss:     loss,
			duration: 6 * time.Second, // some 40 000 packets: across the wrap
			seed:     7,
			jitter:   200 * time.Microsecond,
		}
		a := runSim(cfg, newBBRController)
		const below = 1 << 15
		cfg.isn = seqno.Max + 1 - below
		b := runSim(cfg, newBBRController)
		if a.delivered != b.delivered || a.sent != b.sent || a.retrans != b.retrans || a.overflow != b.overflow {
			t.Errorf("loss %v: from 0: %+v\nacross the wrap: %+v", loss,
				[4]int{a.delivered, a.sent, a.retrans, a.overflow}, [4]int{b.delivered, b.sent, b.retrans, b.overflow})
		}
		if a.sent < below+1000 {
			t.Errorf("loss %v: only %d packets sent: the wrap was not crossed", loss, a.sent)
		}
	}
}
