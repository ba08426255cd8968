package udt

import (
	"slices"
	"time"
)

// estimator holds the receiver's two rate estimators (libudt 4.11
// CPktTimeWindow, §9): the packet arrival rate and the link capacity from
// packet pairs. Both feed the full ACK. The capacity follows 4.11 closely
// (including its median over all but the last sample); the arrival rate
// does not (see recvRate).
type estimator struct {
	count   int64 // data packets arrived
	lastArr int64 // ns, arrival of the latest one (0 = none yet)
	marks   [rateMarks]rateMark
	markIdx int

	probes    [64]int64 // ns between the two packets of a pair
	probeIdx  int
	probeTime int64 // arrival of the last seq%16 == 0 packet, ns
	probeSeq  int32
	scratch   [64]int64

	// libudt 4.11's arrival rate as a floor (Config.LibudtRate).
	libudt    bool
	intervals [16]int64 // ns between consecutive arrivals
	ivIdx     int
}

// rateMark is the arrival count and the time of the latest arrival, taken
// at each full ACK.
type rateMark struct {
	count int64
	at    int64
}

const (
	rateMarks      = 32                     // full ACKs remembered: 320 ms at one per SYN
	rateMinPackets = 16                     // a rate spans at least this many packets
	rateMinSpan    = 20 * time.Millisecond  // and at least this long
	rateMaxSpan    = 100 * time.Millisecond // or as long as an RTT, up to this
)

func (e *estimator) init() {
	for i := range e.probes {
		e.probes[i] = 1_000_000
	}
	for i := range e.intervals {
		e.intervals[i] = 1_000_000_000 // as libudt's: a second each
	}
	e.probeSeq = -1
}

// onArrival records a data packet arriving at now (ns).
func (e *estimator) onArrival(seq int32, now int64) {
	if e.libudt && e.lastArr != 0 {
		e.intervals[e.ivIdx] = now - e.lastArr
		e.ivIdx = (e.ivIdx + 1) % len(e.intervals)
	}
	e.count++
	e.lastArr = now
	switch seq % probeModulus {
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

// Samples are kept in nanoseconds (libudt uses microseconds, which
// truncate to 0 at loopback rates); rates come out in packets per second.

// Rates are capped at 10^6 packets/s, the most libudt's microsecond
// arithmetic can report: a libudt sender given more overflows its own
// bandwidth statistics.
func rateFrom(n, sumNS int64) int32 {
	r := (1_000_000_000*n + sumNS - 1) / sumNS
	if r > maxReportedRate {
		r = maxReportedRate
	}
	return int32(r)
}

const maxReportedRate = 1_000_000

// recvRate returns the packet arrival rate in packets/s for the full ACK
// being built, 0 while too few packets have arrived to tell. Each call
// leaves a mark (arrival count, time of the latest arrival).
//
// The rate is the packets that arrived between an earlier mark and now over
// the time between the two arrivals the marks name, from the latest mark
// that is at least rateMinPackets and minSpan back (at least rateMinSpan).
// The receiver passes its RTT, up to rateMaxSpan: arrival times are read
// times, and a reader held up by the scheduler finds a backlog that it
// reads a batch at a time, so the count at a read lags the arrivals by up
// to a batch (7.7 ms of a 100 Mbit/s link) and a short span errs by
// several per cent either way, and a sender that keeps the largest of its recent samples (BBR's
// max filter) then believes in a link some 5 % faster than it is and
// overflows its queue. Over a round trip the error is a fifth of that,
// and a rate probe that lasts a round trip is still seen whole.
// libudt 4.11 instead averages the last 16 packet intervals that lie
// within a factor of 8 of their median. That band drops the short intervals jitter makes (a delayed
// packet releases the ones queued behind it at once) and keeps the long
// ones: under ±5 ms of jitter at a few hundred packets/s it reports a third
// less than arrived, and a sender that believes it (ours does) slows down
// round after round. Sixteen intervals are also too few to see through the
// bunching of batched forwarding (and of recvmmsg): over 20 ms and more,
// bunches average out.
func (e *estimator) recvRate(minSpan time.Duration) int32 {
	minSpan = max(minSpan, rateMinSpan)
	var rate int32
	for i := 1; i < rateMarks; i++ {
		m := &e.marks[(e.markIdx-i+rateMarks)%rateMarks]
		if m.at == 0 {
			break
		}
		n, span := e.count-m.count, e.lastArr-m.at
		if n >= rateMinPackets && span >= int64(minSpan) {
			rate = rateFrom(n, span)
			break
		}
	}
	if e.lastArr != 0 {
		e.marks[e.markIdx] = rateMark{count: e.count, at: e.lastArr}
		e.markIdx = (e.markIdx + 1) % rateMarks
	}
	if e.libudt {
		rate = max(rate, e.libudtRate())
	}
	return rate
}

// libudtRate is libudt 4.11's packet arrival rate (CPktTimeWindow::
// getPktRcvSpeed): the mean of the last 16 arrival intervals that lie
// within a factor of 8 of their median, 0 unless more than 8 of them do.
// Packets that arrive in bunches (batched forwarding, recvmmsg) make short
// intervals, so the figure runs above the arrival rate.
func (e *estimator) libudtRate() int32 {
	_, sum, n := e.medianBand(e.intervals[:])
	if n <= 8 || sum <= 0 {
		return 0
	}
	return rateFrom(n, sum)
}

// capacity returns the link capacity in packets/s from packet pairs.
func (e *estimator) capacity() int32 {
	median, sum, n := e.medianBand(e.probes[:])
	sum, n = sum+median, n+1 // 4.11 counts the median once more
	if sum <= 0 {
		return 0
	}
	return rateFrom(n, sum)
}

// medianBand is libudt 4.11's filter for both estimators: the median of
// all samples but the last (4.11 sorts one fewer), and the sum and count
// of the samples within a factor of 8 of it.
func (e *estimator) medianBand(samples []int64) (median, sum, n int64) {
	s := e.scratch[:len(samples)-1]
	copy(s, samples)
	slices.Sort(s)
	median = s[len(s)/2]
	for _, v := range samples {
		if v > median/8 && v < median*8 {
			sum += v
			n++
		}
	}
	return median, sum, n
}
