package udt

import "slices"

// estimator holds the receiver's two rate estimators (libudt 4.11
// CPktTimeWindow, §9): the packet arrival rate and the link capacity from
// packet pairs. Both feed the full ACK, and libudt's sender is driven by
// them, so they follow 4.11 closely (including its median over all but the
// last sample).
type estimator struct {
	arrivals  [16]int64 // ns between consecutive data packets
	arrIdx    int
	lastArr   int64     // ns, 0 = none yet
	probes    [64]int64 // ns between the two packets of a pair
	probeIdx  int
	probeTime int64 // arrival of the last seq%16 == 0 packet, ns
	probeSeq  int32
	scratch   [64]int64
}

func (e *estimator) init() {
	for i := range e.arrivals {
		e.arrivals[i] = 1_000_000_000
	}
	for i := range e.probes {
		e.probes[i] = 1_000_000
	}
	e.probeSeq = -1
}

// onArrival records a data packet arriving at now (ns).
func (e *estimator) onArrival(seq int32, now int64) {
	if e.lastArr != 0 {
		e.arrivals[e.arrIdx] = now - e.lastArr
		e.arrIdx = (e.arrIdx + 1) % len(e.arrivals)
	}
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

// recvRate returns the packet arrival rate in packets/s, 0 when the samples
// are too scattered to tell.
func (e *estimator) recvRate() int32 {
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
	return rateFrom(n, sum)
}

// capacity returns the link capacity in packets/s from packet pairs.
func (e *estimator) capacity() int32 {
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
	if sum <= 0 {
		return 0
	}
	return rateFrom(n, sum)
}
