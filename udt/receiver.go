package udt

import (
	"io"
	"sync"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/seqno"
	"github.com/p2pcat/p2pcat/udt/internal/wire"
)

// receiver is the receiving half of a connection: a reordering ring of
// packet slots indexed by sequence number, the loss bookkeeping that drives
// NAKs, the ACK history that measures RTT through ACK2, and the estimators
// reported in full ACKs.
//
// Data arrives on the mux's reader goroutine (onData, then flush at the end
// of each batch); the application drains it with Read; the ACK and NAK
// timers run on the connection's timer goroutine. mu guards everything.
type receiver struct {
	mu sync.Mutex

	size    int // ring slots (a power of two ≥ window)
	mask    int // size-1
	window  int // packets accepted beyond base: our advertised flight flag size
	payload int // largest payload accepted
	buf     []byte
	lens    []int32
	present []bool
	nakAt   []int64 // when each missing packet is next due for a NAK, ns

	base    int32 // sequence number of the next packet the application reads
	basePos int   // its ring slot
	headOff int   // bytes of that packet already read
	ackSeq  int32 // first sequence number not yet received
	maxSeq  int32 // highest sequence number received
	losses  int   // missing packets between ackSeq and maxSeq

	// ACK state.
	ackNo       int32 // sequence number of the last full ACK sent
	lastAckSent int32 // ACK value of the last full ACK
	lastAckTime int64
	lastAck2    int32 // highest ACK value confirmed by ACK2
	lastAvail   int
	sinceACK    int  // data packets since the last ACK of any kind
	sinceFull   int  // data packets since the last full ACK
	ackNow      bool // a short packet arrived: ACK at the end of the batch
	history     [ackHistoryLen]ackRecord
	rtt, rttVar int64 // ns, from ACK2

	est estimator

	wokeAt int32 // ackSeq when the reader was last woken

	err      error // io.EOF after the peer's Shutdown, or why the connection broke
	readable chan struct{}
}

type ackRecord struct {
	no   int32
	ack  int32
	sent int64
}

func (r *receiver) init(isn int32, window, payload int) {
	r.window = window
	r.size = 1
	for r.size < window {
		r.size <<= 1
	}
	r.mask = r.size - 1
	r.payload = payload
	r.buf = make([]byte, r.size*payload)
	r.lens = make([]int32, r.size)
	r.present = make([]bool, r.size)
	r.nakAt = make([]int64, r.size)
	r.base, r.ackSeq, r.maxSeq = isn, isn, seqno.Dec(isn)
	// Nothing before the ISN needs acknowledging: as in libudt, no ACK
	// goes out before data arrives. (A libudt rendezvous peer still
	// connecting takes any ACK for the end of its connect call and
	// returns from it unconnected.)
	r.lastAckSent, r.lastAck2 = -1, isn
	r.rtt, r.rttVar = int64(initialRTT), int64(initialRTTVar)
	r.lastAvail = window
	r.wokeAt = isn
	r.est.init()
	r.readable = make(chan struct{}, 1)
}

func (r *receiver) pos(off int) int { return (r.basePos + off) & r.mask }

// onData stores one data packet. It reports whether the packet was new.
func (r *receiver) onData(h *wire.DataHeader, payload []byte, now int64) (fresh bool) {
	r.est.onArrival(h.Seq, now)
	off := seqno.Off(r.base, h.Seq)
	if off < 0 || off >= r.window || len(payload) > r.payload {
		return false
	}
	if seqno.Cmp(h.Seq, r.ackSeq) < 0 {
		return false
	}
	p := r.pos(off)
	if r.present[p] {
		return false
	}
	copy(r.buf[p*r.payload:], payload)
	r.lens[p] = int32(len(payload))
	r.present[p] = true
	if seqno.Cmp(h.Seq, r.maxSeq) > 0 {
		if gap := seqno.Off(r.maxSeq, h.Seq) - 1; gap > 0 {
			first := seqno.Inc(r.maxSeq)
			r.losses += gap
			// A fresh gap is reported by the NAK timer once it has lasted
			// reorderHold (libudt NAKs at once): packets merely reordered
			// on the way fill it before then and cost no retransmission,
			// and no rate cut at the sender.
			due := now + int64(reorderHold)
			for i, o := 0, seqno.Off(r.base, first); i < gap; i, o = i+1, o+1 {
				r.nakAt[r.pos(o)] = due
			}
		}
		r.maxSeq = h.Seq
	} else {
		r.losses--
	}
	if h.Seq == r.ackSeq {
		end := seqno.Inc(r.maxSeq)
		for r.ackSeq != end && r.present[r.pos(seqno.Off(r.base, r.ackSeq))] {
			r.ackSeq = seqno.Inc(r.ackSeq)
		}
	}
	if len(payload) < r.payload {
		r.ackNow = true
	}
	r.sinceACK++
	r.sinceFull++
	return true
}

// avail is the free space reported in ACKs: packets the peer may send
// beyond the ACK point. Never below 2, as in libudt.
func (r *receiver) avail() int {
	a := r.window - seqno.Off(r.base, r.ackSeq) - 1
	if a < 2 {
		a = 2
	}
	return a
}

// appendFullACK builds a full ACK if one is due and returns the packet. It
// records the ACK in the history for the RTT measurement through ACK2.
// force sends even an unchanged ACK (window updates).
func (r *receiver) appendFullACK(b []byte, dst uint32, now int64, force bool) []byte {
	ack := r.ackSeq
	// Unlike libudt, an unchanged ACK still goes out every SYN while data
	// arrives: its receive rate and RTT are the sender's only news while
	// the ACK point waits on a hole (with a few % loss, most of the time).
	if !force && r.sinceFull == 0 {
		if ack == r.lastAck2 {
			return b
		}
		if ack == r.lastAckSent && now-r.lastAckTime < r.rtt+4*r.rttVar {
			return b
		}
	}
	r.ackNo++
	if r.ackNo < 0 {
		r.ackNo = 0
	}
	r.history[int(r.ackNo)%ackHistoryLen] = ackRecord{no: r.ackNo, ack: ack, sent: now}
	r.lastAckSent, r.lastAckTime = ack, now
	r.sinceACK, r.sinceFull = 0, 0
	r.ackNow = false
	r.lastAvail = r.avail()
	a := wire.ACK{
		Ack:      ack,
		RTT:      int32(r.rtt / 1000),
		RTTVar:   int32(r.rttVar / 1000),
		Avail:    int32(r.lastAvail),
		RecvRate: r.est.recvRate(min(time.Duration(r.rtt), rateMaxSpan)),
		Capacity: r.est.capacity(),
		Fields:   6,
	}
	b = wire.AppendControlHeader(b, &wire.ControlHeader{Type: wire.TypeACK, Info: uint32(r.ackNo), DstID: dst})
	return a.Append(b)
}

// appendLightACK builds a light ACK (every 64 packets between timer ACKs).
func (r *receiver) appendLightACK(b []byte, dst uint32) []byte {
	if r.ackSeq == r.lastAck2 {
		return b
	}
	r.sinceACK = 0
	a := wire.ACK{Ack: r.ackSeq, Fields: 1}
	b = wire.AppendControlHeader(b, &wire.ControlHeader{Type: wire.TypeACK, DstID: dst})
	return a.Append(b)
}

// onACK2 measures the RTT from the ACK it confirms.
func (r *receiver) onACK2(no int32, now int64) {
	rec := &r.history[int(no)%ackHistoryLen]
	if rec.no != no || rec.sent == 0 {
		return
	}
	sample := now - rec.sent
	rec.sent = 0
	smoothRTT(&r.rtt, &r.rttVar, sample)
	if seqno.Cmp(rec.ack, r.lastAck2) > 0 {
		r.lastAck2 = rec.ack
	}
}

// appendNAKs reports the losses that are due (a fresh gap reorderHold
// after it was seen, an unrepaired one interval after its last report). It returns b unchanged when none are due.
func (r *receiver) appendNAKs(b []byte, dst uint32, now, interval int64, room int) []byte {
	if r.losses <= 0 {
		return b
	}
	start := len(b)
	b = wire.AppendControlHeader(b, &wire.ControlHeader{Type: wire.TypeNAK, DstID: dst})
	body := len(b)
	limit := start + room - 8
	first, run := int32(0), 0
	end := seqno.Inc(r.maxSeq)
	for s := r.ackSeq; s != end && len(b) <= limit; s = seqno.Inc(s) {
		p := r.pos(seqno.Off(r.base, s))
		if !r.present[p] && now >= r.nakAt[p] {
			r.nakAt[p] = now + interval
			if run == 0 {
				first = s
			}
			run++
			continue
		}
		if run > 0 {
			b = wire.AppendLoss(b, first, seqno.Add(first, run-1))
			run = 0
		}
	}
	if run > 0 {
		b = wire.AppendLoss(b, first, seqno.Add(first, run-1))
	}
	if len(b) == body {
		return b[:start]
	}
	return b
}

// read copies contiguous received data into p. (One pass, packet by
// packet: view and consume would walk the packets twice.)
func (r *receiver) read(p []byte) int {
	n := 0
	for n < len(p) && r.base != r.ackSeq {
		slot := r.basePos
		l := int(r.lens[slot])
		m := copy(p[n:], r.buf[slot*r.payload+r.headOff:slot*r.payload+l])
		n += m
		r.pass(m)
	}
	return n
}

// view returns up to max bytes of received data from the read point, as
// the ring holds them: a run of packets laid end to end in buf (each but
// the last full, none past the ring's end). The bytes stay put until
// consume passes them, even with mu released: onData writes only at or
// beyond ackSeq. Empty packets at the read point are skipped.
func (r *receiver) view(max int) []byte {
	for r.base != r.ackSeq && r.lens[r.basePos] == 0 {
		r.advance()
	}
	if r.base == r.ackSeq || max <= 0 {
		return nil
	}
	slot := r.basePos
	start := slot*r.payload + r.headOff
	end := slot*r.payload + int(r.lens[slot])
	for seq := seqno.Inc(r.base); end-start < max && seq != r.ackSeq; seq = seqno.Inc(seq) {
		if int(r.lens[slot]) != r.payload || slot == r.mask {
			break // a short packet, or the ring's end: the run stops
		}
		slot++
		end = slot*r.payload + int(r.lens[slot])
	}
	return r.buf[start:min(end, start+max)]
}

// consume passes n bytes of what view returned.
func (r *receiver) consume(n int) {
	for n > 0 {
		m := min(n, int(r.lens[r.basePos])-r.headOff)
		n -= m
		r.pass(m)
	}
}

// pass moves the read point m bytes on within the packet at it, and
// frees the packet once all of it is read.
func (r *receiver) pass(m int) {
	r.headOff += m
	if r.headOff == int(r.lens[r.basePos]) {
		r.advance()
	}
}

// advance frees the packet at the read point.
func (r *receiver) advance() {
	r.present[r.basePos] = false
	r.headOff = 0
	r.base = seqno.Inc(r.base)
	r.basePos = (r.basePos + 1) & r.mask
}

// fail records why no more data will come; io.EOF for a clean end.
func (r *receiver) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	notify(r.readable)
}

// notify wakes one waiter on a capacity-1 channel without blocking.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

var _ = io.EOF
