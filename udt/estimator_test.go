package udt

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// Tests of the receiver's arrival-rate estimate (estimator.recvRate), the
// figure every full ACK carries and BBR's sender believes. Time is simulated:
// arrivals are fed in order and recvRate is called as the ACK timer would,
// every SYN.

// estStart is the simulated time of the first tick: well away from 0, which
// the estimator takes for "no arrival yet".
const estStart = int64(time.Second)

// rateReport is one recvRate call: when it was made and what it returned.
type rateReport struct {
	at   int64 // ns
	rate int32 // packets/s
}

// fifoJitterArrivals returns the arrival times (ns) of n packets sent at
// rate packets/s from start, each delayed by base ± jitter (uniform) but
// never delivered before the one sent before it: a FIFO link emulator holds
// a packet behind a more delayed one and then releases both at once.
func fifoJitterArrivals(rng *rand.Rand, rate float64, n int, start int64, base, jitter time.Duration) []int64 {
	arr := make([]int64, n)
	prev := int64(0)
	for i := range arr {
		sent := start + int64(float64(i)*1e9/rate)
		at := sent + int64(base) + int64((2*rng.Float64()-1)*float64(jitter))
		at = max(at, prev)
		arr[i], prev = at, at
	}
	return arr
}

// bunchedArrivals returns the arrival times of batches of size packets,
// one batch every size/rate s from start; within a batch the packets are
// spread ns apart (0: all at the same instant).
func bunchedArrivals(rate float64, batches, size int, start int64, spread time.Duration) []int64 {
	arr := make([]int64, 0, batches*size)
	period := float64(size) * 1e9 / rate
	for b := 0; b < batches; b++ {
		at := start + int64(float64(b)*period)
		for i := 0; i < size; i++ {
			arr = append(arr, at+int64(i)*int64(spread))
		}
	}
	return arr
}

// driveEstimator feeds arrivals (sorted, ns) to a fresh estimator with
// sequence numbers 0, 1, 2, ... and calls recvRate every tick from
// estStart+phase until the last arrival plus tail. With onlyFresh, a tick
// with no arrival since the previous call makes no call (an unchanged,
// already confirmed ACK is not sent: the receiver's full ACK and its
// rate mark only happen while data arrives).
func driveEstimator(arrivals []int64, tick, phase, tail time.Duration, onlyFresh bool) []rateReport {
	return driveEstimatorSpan(arrivals, tick, phase, tail, onlyFresh, rateMinSpan)
}

// driveEstimatorSpan is driveEstimator with recvRate's minimum span.
func driveEstimatorSpan(arrivals []int64, tick, phase, tail time.Duration, onlyFresh bool, span time.Duration) []rateReport {
	var e estimator
	e.init()
	var out []rateReport
	i, fresh := 0, false
	end := arrivals[len(arrivals)-1] + int64(tail)
	for now := estStart + int64(phase); now <= end; now += int64(tick) {
		for i < len(arrivals) && arrivals[i] <= now {
			e.onArrival(int32(i), arrivals[i])
			i++
			fresh = true
		}
		if onlyFresh && !fresh {
			continue
		}
		fresh = false
		out = append(out, rateReport{at: now, rate: e.recvRate(span)})
	}
	return out
}

// checkRates checks the reports made in [from, to): the mean of every k
// consecutive ones (k ACKs, k×10 ms) must be within tol (a fraction) of
// want, and so must the mean of them all. It returns the largest deviation
// of a single report, as a fraction of want.
func checkRates(t *testing.T, what string, reports []rateReport, from, to int64, want float64, k int, tol float64) (worst float64) {
	t.Helper()
	var in []float64
	for _, r := range reports {
		if r.at >= from && r.at < to {
			in = append(in, float64(r.rate))
		}
	}
	if len(in) < k {
		t.Fatalf("%s: %d reports in the checked span, want at least %d", what, len(in), k)
	}
	var sum float64
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range in {
		sum += v
		lo, hi = min(lo, v), max(hi, v)
	}
	mean := sum / float64(len(in))
	worst = max(want-lo, hi-want) / want
	var win float64
	bad := 0
	worstWin := 0.0
	for i, v := range in {
		win += v
		if i >= k {
			win -= in[i-k]
		}
		if i < k-1 {
			continue
		}
		m := win / float64(k)
		worstWin = max(worstWin, math.Abs(m-want)/want)
		if math.Abs(m-want) > tol*want {
			if bad < 3 {
				t.Errorf("%s: mean of reports %d..%d = %.0f packets/s, want %.0f ± %.0f %%", what, i-k+1, i, m, want, 100*tol)
			}
			bad++
		}
	}
	if math.Abs(mean-want) > tol*want {
		t.Errorf("%s: mean of all %d reports = %.1f packets/s, want %.0f ± %.0f %%", what, len(in), mean, want, 100*tol)
	}
	t.Logf("%s: %d reports, mean %.1f (%.1f %% of %.0f), single reports %.0f..%.0f, worst mean of %d %.1f %% off",
		what, len(in), mean, 100*mean/want, want, lo, hi, k, 100*worstWin)
	return worst
}

// TestRecvRateFIFOJitter: 400 packets/s through a FIFO link with ±5 ms of
// jitter (the NAT lab's impaired path) must be reported as 400 packets/s:
// after the first 100 ms, every 100 ms of ACKs (10 reports) averages within
// 10 %, all of them within 3 %, and no single report is 0 or off by more
// than 50 %. (A single report spans only 16 packets or 20 ms, so the jitter
// of its two ends shows: ±20 % at 400 packets/s, up to ±40 % at 1000.)
// libudt's median-band estimator (the code before this one) drops the short
// intervals such a link makes when it releases a held-back packet together
// with those queued behind it: it reports about half of 400 here (and
// often 0), and next to nothing at 1000 packets/s and more.
func TestRecvRateFIFOJitter(t *testing.T) {
	for _, tc := range []struct {
		rate   float64
		jitter time.Duration
	}{
		{400, 5 * time.Millisecond},
		{400, 2 * time.Millisecond},
		{1000, 5 * time.Millisecond},
		{2500, 5 * time.Millisecond},
	} {
		for seed := uint64(1); seed <= 4; seed++ {
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			n := int(3 * tc.rate) // 3 s
			arr := fifoJitterArrivals(rng, tc.rate, n, estStart, 30*time.Millisecond, tc.jitter)
			reports := driveEstimator(arr, synInterval, 0, 0, false)
			what := fmt.Sprintf("rate %.0f jitter %v seed %d", tc.rate, tc.jitter, seed)
			from := arr[0] + int64(100*time.Millisecond)
			checkRates(t, what, reports, from, arr[n-1], tc.rate, 10, 0.10)
			var sum float64
			k, bad := 0, 0
			for _, r := range reports {
				if r.at < from || r.at >= arr[n-1] {
					continue
				}
				sum += float64(r.rate)
				k++
				if r.rate == 0 || math.Abs(float64(r.rate)-tc.rate) > 0.5*tc.rate {
					if bad < 3 {
						t.Errorf("%s: at %v recvRate = %d packets/s, want %.0f ± 50 %%", what, time.Duration(r.at-estStart), r.rate, tc.rate)
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%s: %d of %d reports 0 or off by more than 50 %%", what, bad, k)
			}
			if mean := sum / float64(k); math.Abs(mean-tc.rate) > 0.03*tc.rate {
				t.Errorf("%s: mean recvRate %.1f packets/s, want %.0f ± 3 %%", what, mean, tc.rate)
			}
		}
	}
}

// TestRecvRateBunched: arrivals in batches of 32 (a forwarder that
// releases a queue at once, or recvmmsg) every 32/R s must be reported as
// R, every report within 10 %, not as the rate within a batch (the 10^6 cap
// when the packets are a microsecond apart, or nothing at all when they
// share the instant).
func TestRecvRateBunched(t *testing.T) {
	for _, rate := range []float64{400, 1000, 3200, 20000} {
		for _, spread := range []time.Duration{0, time.Microsecond} {
			arr := bunchedArrivals(rate, int(2*rate/32)+1, 32, estStart+int64(5*time.Millisecond), spread)
			// Ticks 2.5 ms out of phase with the batches: a call never
			// falls inside a batch (one that takes only part of a batch
			// reports less, as the rest of it is counted by the next).
			reports := driveEstimator(arr, synInterval, 2500*time.Microsecond, 0, false)
			what := fmt.Sprintf("rate %.0f spread %v", rate, spread)
			from := arr[0] + int64(max(100*time.Millisecond, 3*time.Duration(32e9/rate)))
			if worst := checkRates(t, what, reports, from, arr[len(arr)-1], rate, 1, 0.10); worst > 0.10 {
				t.Errorf("%s: a report is %.0f %% off", what, 100*worst)
			}
		}
	}
}

// TestRecvRateIdleGap: 500 packets/s for a second, a second of silence,
// then 250 packets/s. Full ACKs (and so rate marks) happen only while data
// arrives. The first stretch is reported as 500 and the second, from 100 ms
// after it starts, as 250 (each report within 10 %); no report ever
// exceeds 500 by more than 10 % (nothing inflated by the gap's edges).
func TestRecvRateIdleGap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	first := fifoJitterArrivals(rng, 500, 500, estStart, 30*time.Millisecond, time.Millisecond)
	resume := first[len(first)-1] + int64(time.Second)
	second := fifoJitterArrivals(rng, 250, 250, resume, 0, 0)
	arr := append(first, second...)
	reports := driveEstimator(arr, synInterval, 0, 500*time.Millisecond, true)

	if w := checkRates(t, "before the gap", reports, first[0]+int64(100*time.Millisecond), first[len(first)-1], 500, 1, 0.10); w > 0.10 {
		t.Errorf("before the gap: a report is %.0f %% off", 100*w)
	}
	if w := checkRates(t, "after the gap", reports, resume+int64(100*time.Millisecond), second[len(second)-1], 250, 1, 0.10); w > 0.10 {
		t.Errorf("after the gap: a report is %.0f %% off", 100*w)
	}
	for _, r := range reports {
		if r.rate > 550 {
			t.Errorf("at %v (gap %v..%v): recvRate = %d packets/s, more than ever arrived",
				time.Duration(r.at-estStart), time.Duration(first[len(first)-1]-estStart), time.Duration(resume-estStart), r.rate)
		}
		if r.at >= resume && r.at < resume+int64(100*time.Millisecond) {
			t.Logf("just after the gap, at %v: %d packets/s", time.Duration(r.at-estStart), r.rate)
		}
	}
}

// TestRecvRateNeedsEnough: no rate (0) until 16 packets and 20 ms lie
// between two marks; then the rate.
func TestRecvRateNeedsEnough(t *testing.T) {
	t.Run("15 packets", func(t *testing.T) {
		// 15 packets 10 ms apart, a call every 10 ms (3 ms later): never
		// enough packets.
		arr := make([]int64, 15)
		for i := range arr {
			arr[i] = estStart + int64(i)*int64(10*time.Millisecond)
		}
		for _, r := range driveEstimator(arr, synInterval, 3*time.Millisecond, 200*time.Millisecond, false) {
			if r.rate != 0 {
				t.Errorf("at %v, after at most 15 packets: recvRate = %d, want 0", time.Duration(r.at-estStart), r.rate)
			}
		}
	})
	t.Run("under 20 ms", func(t *testing.T) {
		// 10000 packets/s, a call every 5 ms: 50 packets between
		// marks but spans under 20 ms until the fifth call.
		arr := make([]int64, 1000)
		for i := range arr {
			arr[i] = estStart + int64(i)*int64(100*time.Microsecond)
		}
		reports := driveEstimator(arr, 5*time.Millisecond, 0, 0, false)
		for _, r := range reports {
			span := r.at - estStart
			switch {
			case span < int64(20*time.Millisecond) && r.rate != 0:
				t.Errorf("at %v: recvRate = %d, want 0 (less than 20 ms of arrivals)", time.Duration(span), r.rate)
			case span >= int64(30*time.Millisecond) && (r.rate < 9900 || r.rate > 10100):
				t.Errorf("at %v: recvRate = %d, want 10000", time.Duration(span), r.rate)
			}
		}
	})
	t.Run("nothing yet", func(t *testing.T) {
		var e estimator
		e.init()
		for i := 0; i < 3; i++ {
			if r := e.recvRate(rateMinSpan); r != 0 {
				t.Errorf("recvRate with no arrival = %d, want 0", r)
			}
		}
	})
}

// TestRecvRateCap: more than 10^6 packets/s (batches of 25000 packets
// 400 ns apart every 20 ms) is reported as 10^6, the most a libudt peer can
// take.
func TestRecvRateCap(t *testing.T) {
	arr := bunchedArrivals(1.25e6, 3, 25000, estStart, 400*time.Nanosecond)
	reports := driveEstimator(arr, synInterval, 2500*time.Microsecond, 0, false)
	seen := false
	for _, r := range reports {
		if r.rate > maxReportedRate {
			t.Errorf("at %v: recvRate = %d, above the cap %d", time.Duration(r.at-estStart), r.rate, maxReportedRate)
		}
		if r.rate == maxReportedRate {
			seen = true
		}
	}
	if !seen {
		t.Errorf("no report at the cap %d: %v", maxReportedRate, reports)
	}
}

// lateReadArrivals returns the times at which a reader stamps n packets
// that arrive at rate packets/s from start: it wakes for the first packet
// not yet read after a delay uniform in [0, maxDelay) (the scheduler, a
// busy core) and stamps up to batch packets that have arrived by then with
// that instant, as a recvmmsg batch is stamped; if more are waiting, the
// next read follows 50 µs later. The backlog left behind a full batch
// makes the count at a read lag the arrivals by up to a batch.
func lateReadArrivals(rng *rand.Rand, rate float64, n, batch int, start int64, maxDelay time.Duration) []int64 {
	arr := make([]int64, n)
	at := func(i int) int64 { return start + int64(float64(i)*1e9/rate) }
	read := int64(0)
	for i := 0; i < n; {
		if at(i) > read {
			read = at(i) + int64(rng.Float64()*float64(maxDelay))
		} else {
			read += int64(50 * time.Microsecond)
		}
		for k := 0; k < batch && i < n && at(i) <= read; k++ {
			arr[i] = read
			i++
		}
	}
	return arr
}

// TestRecvRateLateReads: packets arrive at exactly 8333/s (100 Mbit/s of
// 1500-byte packets) but are stamped when a reader that wakes up to 12 ms
// late gets to them, at most a batch (64) per read. A sender keeps the largest of its recent samples, so
// what matters is the worst report: over an RTT-long span (the receiver
// passes its RTT, here 100 ms) every report is within 2.5 % of the true
// rate; over the shortest span, 20 ms, reports are several times further
// off (which is what made BBR overflow the queue of lab scenario c).
func TestRecvRateLateReads(t *testing.T) {
	const rate = 8333.0
	arr := lateReadArrivals(rand.New(rand.NewPCG(3, 9)), rate, int(5*rate), batchSize, estStart, 12*time.Millisecond)
	from := arr[0] + int64(300*time.Millisecond)
	var worst [2]float64
	for i, span := range []time.Duration{rateMaxSpan, rateMinSpan} {
		reports := driveEstimatorSpan(arr, synInterval, 1300*time.Microsecond, 0, false, span)
		hi := 0.0
		for _, r := range reports {
			if r.at >= from {
				hi = max(hi, math.Abs(float64(r.rate)-rate)/rate)
			}
		}
		worst[i] = hi
		t.Logf("span %v: worst report %.1f %% off", span, 100*hi)
	}
	if worst[0] > 0.025 {
		t.Errorf("span %v: a report is %.1f %% off, want within 2.5 %%", rateMaxSpan, 100*worst[0])
	}
	if worst[1] < 2*worst[0] {
		t.Errorf("span %v errs %.1f %%, span %v %.1f %%: the longer span should err far less", rateMinSpan, 100*worst[1], rateMaxSpan, 100*worst[0])
	}
}

// With Config.LibudtRate the ACK's figure is at least libudt 4.11's: the
// mean of the last 16 intervals within a factor of 8 of their median. For
// packets that arrive in bunches that is far above the arrival rate (what
// a libudt sender needs to open its window); for evenly spaced packets the
// two agree; without the option the bunches change nothing.
func TestRecvRateLibudtFloor(t *testing.T) {
	const rate = 8000.0 // packets/s
	run := func(libudt bool, arrivals []int64) int32 {
		var e estimator
		e.init()
		e.libudt = libudt
		i := 0
		var last int32
		for now := estStart; i < len(arrivals); now += int64(10 * time.Millisecond) {
			for i < len(arrivals) && arrivals[i] <= now {
				e.onArrival(int32(i), arrivals[i])
				i++
			}
			last = e.recvRate(100 * time.Millisecond)
		}
		return last
	}
	// Bunches of 8 packets 10 µs apart, 1 ms per bunch: libudt's median
	// interval is 10 µs and the 1 ms gaps fall outside its band.
	bunched := bunchedArrivals(rate, 400, 8, estStart, 10*time.Microsecond)
	plain, floor := run(false, bunched), run(true, bunched)
	if math.Abs(float64(plain)-rate)/rate > 0.05 {
		t.Errorf("bunched, no floor: %d packets/s, want about %.0f (the arrival rate)", plain, rate)
	}
	if want := int32(1e9 / 10e3); floor < want*95/100 || floor > want*105/100 {
		t.Errorf("bunched, libudt floor: %d packets/s, want about %d (libudt: 1/10 µs)", floor, want)
	}
	even := bunchedArrivals(rate, 3200, 1, estStart, 0)
	if a, b := run(false, even), run(true, even); math.Abs(float64(b-a))/rate > 0.05 {
		t.Errorf("evenly spaced: %d packets/s with the floor, %d without; want the same", b, a)
	}
	// Too scattered for libudt (8 of 16 in the band): its figure is 0, and
	// the span figure stands.
	var e estimator
	e.init()
	e.libudt = true
	at := estStart
	for i := range 16 {
		at += int64(time.Millisecond)
		if i%2 == 1 {
			at += int64(100 * time.Millisecond)
		}
		e.onArrival(int32(i), at)
	}
	if got := e.libudtRate(); got != 0 {
		t.Errorf("scattered intervals: libudt figure %d, want 0", got)
	}
}

// The packet-pair capacity follows 4.11: the mean of the pair gaps within
// 8x of their median, the median counted once more; outliers are dropped.
func TestCapacityMedianBand(t *testing.T) {
	var e estimator
	e.init()
	for i := range e.probes {
		e.probes[i] = 100_000 // 100 µs: 10 000 packets/s
	}
	e.probes[3], e.probes[7] = 10_000_000, 1_000 // far outside the band
	if got := e.capacity(); got != 10_000 {
		t.Errorf("capacity %d packets/s, want 10000", got)
	}
}
