package cc

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/seqno"
)

// fakeClock is a Clock that moves only when told to.
type fakeClock struct{ now time.Time }

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (f *fakeClock) Now() time.Time          { return f.now }
func (f *fakeClock) Advance(d time.Duration) { f.now = f.now.Add(d) }

const syn = 10 * time.Millisecond

// isn is the initial sequence number of most tests; the first OnSent
// anchors the controller at isn-1 as 4.11's init() does.
const isn = 1000

func newNative(t testing.TB) (*Native, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	c := NewNative(clk)
	c.OnSent(isn, 1456, false, &Snapshot{MaxSent: isn})
	return c, clk
}

// period returns P in µs as the sender sees it (sub-µs precision kept).
func period(c *Native) float64 {
	return float64(c.PacketInterval()) / float64(time.Microsecond)
}

func near(got, want float64) bool {
	return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want))
}

func wantPeriod(t *testing.T, c *Native, want float64) {
	t.Helper()
	if !near(c.period, want) {
		t.Fatalf("P = %.12g µs, want %.12g", c.period, want)
	}
	if got, w := c.PacketInterval(), time.Duration(math.Round(want*1e3)); got != w {
		t.Fatalf("PacketInterval = %v, want %v", got, w)
	}
}

// afterSlowStart ends slow start with a loss report while a receive rate
// is known: P = 1e6/recvRate, no loss flag, lastDecPeriod still 1, and the
// first epoch not yet started.
func afterSlowStart(t *testing.T, recvRate float64) (*Native, *fakeClock) {
	t.Helper()
	c, clk := newNative(t)
	c.OnLoss(isn+5, &Snapshot{RecvRate: recvRate, MaxSent: isn + 10, MSS: 1500, RTT: 90 * time.Millisecond})
	if c.slowStart {
		t.Fatal("slow start survived a loss")
	}
	wantPeriod(t, c, 1e6/recvRate)
	return c, clk
}

func TestNewByName(t *testing.T) {
	clk := newFakeClock()
	for _, name := range []string{"udt", ""} {
		if _, ok := New(name, clk).(*Native); !ok {
			t.Errorf("New(%q) is not *Native", name)
		}
	}
	if New("cubic", clk) != nil {
		t.Error(`New("cubic") != nil`)
	}
}

func TestNativeInitialState(t *testing.T) {
	c := NewNative(newFakeClock())
	if got := c.PacketInterval(); got != time.Microsecond {
		t.Errorf("PacketInterval = %v, want 1µs", got)
	}
	if got := c.Window(); got != 16 {
		t.Errorf("Window = %v, want 16", got)
	}
	if !c.slowStart {
		t.Error("not in slow start")
	}
	if NewNative(nil).clk == nil {
		t.Error("NewNative(nil) has no clock")
	}
}

func TestNativeSlowStartGrowth(t *testing.T) {
	c, clk := newNative(t)
	s := &Snapshot{RecvRate: 5000, Bandwidth: 1e5, RTT: 20 * time.Millisecond, MSS: 1500, FlowWindow: 8192, MaxSent: isn + 100}
	// lastAck starts at isn-1; W grows by seqlen(lastAck, ack), inclusive,
	// at most once per SYN (timed from creation, then from the last step).
	steps := []struct {
		advance time.Duration
		ack     int32
		wantW   float64
	}{
		{syn, isn + 10, 28},                     // seqlen(999, 1010) = 12
		{5 * time.Millisecond, isn + 20, 28},    // 5 ms after the step: ignored
		{5 * time.Millisecond, isn + 20, 39},    // 10 ms: seqlen(1010, 1020) = 11
		{9999 * time.Microsecond, isn + 25, 39}, // 1 µs short of a SYN: ignored
		{time.Microsecond, isn + 25, 45},        // exactly a SYN: seqlen(1020, 1025) = 6
		{syn, isn + 25, 46},                     // same ACK again: seqlen = 1, as 4.11
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		c.OnACK(st.ack, s)
		if got := c.Window(); got != st.wantW {
			t.Fatalf("step %d: W = %v, want %v", i, got, st.wantW)
		}
		if !c.slowStart {
			t.Fatalf("step %d: slow start ended", i)
		}
		if got := c.PacketInterval(); got != time.Microsecond {
			t.Fatalf("step %d: P = %v during slow start, want 1µs", i, got)
		}
	}
}

func TestNativeFirstStepNeedsOneSYN(t *testing.T) {
	// 4.11 starts the rate-control clock in init(): an ACK in the first
	// SYN after creation is ignored.
	c, clk := newNative(t)
	clk.Advance(syn - time.Nanosecond)
	c.OnACK(isn+10, &Snapshot{MaxSent: isn + 20})
	if c.Window() != 16 {
		t.Fatalf("W = %v, want 16", c.Window())
	}
}

func TestNativeAnchorFromSnapshot(t *testing.T) {
	// Without OnSent, the first event anchors lastAck at MaxSent.
	clk := newFakeClock()
	c := NewNative(clk)
	clk.Advance(syn)
	c.OnACK(2011, &Snapshot{MaxSent: 2010})
	if got := c.Window(); got != 16+2 { // seqlen(2010, 2011)
		t.Fatalf("W = %v, want 18", got)
	}
}

func TestNativeReorderedACKInSlowStart(t *testing.T) {
	// 4.11 would add seqlen(1100, 1050) ≈ 2^31 here.
	c, clk := newNative(t)
	s := &Snapshot{MaxSent: isn + 200}
	clk.Advance(syn)
	c.OnACK(isn+100, s)
	w := c.Window()
	clk.Advance(syn)
	c.OnACK(isn+50, s)
	if c.Window() != w || !c.slowStart {
		t.Fatalf("old ACK: W = %v (was %v), slow start %v", c.Window(), w, c.slowStart)
	}
	clk.Advance(syn)
	c.OnACK(isn+101, s) // counted from 1100, not from 1050
	if got := c.Window(); got != w+2 {
		t.Fatalf("W = %v, want %v", got, w+2)
	}
}

func TestNativeSlowStartExitOnACK(t *testing.T) {
	// lastAck = 999; ack 1107 gives W = 16 + 109 = 125 > flow window 100.
	// The exit step goes on to the increase; with B = 0 spare <= 0 so
	// inc = 0.01: P' = P*10000/(P*0.01 + 10000).
	tests := []struct {
		name     string
		recvRate float64
		rtt      time.Duration
		wantP    float64
	}{
		// P = 1e6/1000 = 1000; 1000*10000/10010
		{"receive rate known", 1000, 90 * time.Millisecond, 999.000999000999},
		// P = (90000+10000)/125 = 800; 800*10000/10008
		{"no receive rate", 0, 90 * time.Millisecond, 799.3605115907275},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newNative(t)
			s := &Snapshot{RecvRate: tt.recvRate, RTT: tt.rtt, MSS: 1500, FlowWindow: 100, MaxSent: isn + 200}
			clk.Advance(syn)
			c.OnACK(isn+107, s)
			if c.slowStart {
				t.Fatal("still in slow start")
			}
			if c.Window() != 125 {
				t.Fatalf("W = %v, want 125 (kept from slow start)", c.Window())
			}
			wantPeriod(t, c, tt.wantP)
		})
	}
}

func TestNativeSlowStartExitNeedsMoreThanFlowWindow(t *testing.T) {
	c, clk := newNative(t)
	clk.Advance(syn)
	c.OnACK(isn+82, &Snapshot{FlowWindow: 100, RecvRate: 1000}) // W = 16 + 84 = 100
	if c.Window() != 100 || !c.slowStart {
		t.Fatalf("W = %v, slow start %v; want 100, true", c.Window(), c.slowStart)
	}
}

func TestNativeUnknownFlowWindow(t *testing.T) {
	c, clk := newNative(t)
	clk.Advance(syn)
	c.OnACK(isn+8000, &Snapshot{FlowWindow: 0}) // W = 16 + 8002 = 8018 <= 8192
	if !c.slowStart {
		t.Fatal("slow start ended at W = 8018 with the default window 8192")
	}
	clk.Advance(syn)
	c.OnACK(isn+8200, &Snapshot{FlowWindow: 0})
	if c.slowStart {
		t.Fatalf("slow start still on at W = %v", c.Window())
	}
}

func TestNativeLossInSlowStart(t *testing.T) {
	tests := []struct {
		name     string
		recvRate float64
		wantP    float64
		wantLoss bool
	}{
		// P = 1e6/500; returns before the epoch logic.
		{"receive rate known", 500, 2000, false},
		// Our fix of 4.11's units bug: P = (RTT+SYN)/W = 100000/16 = 6250,
		// then a new-epoch decrease: ceil(6250*1.125) = ceil(7031.25).
		{"no receive rate", 0, 7032, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newNative(t)
			c.OnLoss(isn+3, &Snapshot{RecvRate: tt.recvRate, RTT: 90 * time.Millisecond, MaxSent: isn + 10})
			if c.slowStart {
				t.Fatal("still in slow start")
			}
			wantPeriod(t, c, tt.wantP)
			if c.loss != tt.wantLoss {
				t.Fatalf("loss flag = %v, want %v", c.loss, tt.wantLoss)
			}
		})
	}
}

func TestNativeNewEpochDecrease(t *testing.T) {
	c, _ := afterSlowStart(t, 500) // P = 2000
	c.OnLoss(isn+20, &Snapshot{MaxSent: isn + 40})
	wantPeriod(t, c, 2250) // ceil(2000*1.125): rate ×8/9
	if c.lastDecPeriod != 2000 || c.lastDecSeq != isn+40 {
		t.Fatalf("lastDecPeriod = %v, lastDecSeq = %v; want 2000, %v", c.lastDecPeriod, c.lastDecSeq, isn+40)
	}
}

func TestNativeDecreasesPerEpoch(t *testing.T) {
	// First epoch: AvgNAKNum = ceil(0) = 0, so DecRandom = 1 and every NAK
	// decreases until DecCount reaches 5. From P = 2000:
	// 2250, ceil(2531.25) = 2532, ceil(2848.5) = 2849, ceil(3205.125) = 3206,
	// ceil(3606.75) = 3607.
	seq := []float64{2250, 2532, 2849, 3206, 3607}
	for naks := 1; naks <= 8; naks++ {
		c, _ := afterSlowStart(t, 500)
		s := &Snapshot{MaxSent: isn + 40}
		c.OnLoss(isn+20, s) // new epoch, lastDecSeq = 1040
		for i := 1; i < naks; i++ {
			c.OnLoss(isn+21+int32(i), s) // <= lastDecSeq: same epoch
		}
		want := seq[min(naks, 5)-1]
		if !near(c.period, want) {
			t.Errorf("%d NAKs: P = %v, want %v", naks, c.period, want)
		}
	}
}

func TestNativeSameEpochDecreaseMovesLastDecSeq(t *testing.T) {
	c, _ := afterSlowStart(t, 500)
	c.OnLoss(isn+20, &Snapshot{MaxSent: isn + 40}) // new epoch, lastDecSeq = 1040
	// Four same-epoch NAKs; the last one is sent when MaxSent is 1080 and
	// its decrease moves lastDecSeq there.
	for i := range 4 {
		c.OnLoss(isn+21+int32(i), &Snapshot{MaxSent: isn + 40 + 40*int32(i/3)})
	}
	if c.lastDecSeq != isn+80 {
		t.Fatalf("lastDecSeq = %d, want %d", c.lastDecSeq, isn+80)
	}
	p := c.period
	c.OnLoss(isn+60, &Snapshot{MaxSent: isn + 90}) // same epoch, exhausted
	if c.period != p {
		t.Fatalf("loss at 1060 after lastDecSeq moved to 1080 decreased P: %v -> %v", p, c.period)
	}
}

func TestNativeNoIncreaseRightAfterLoss(t *testing.T) {
	c, clk := afterSlowStart(t, 1000) // P = 1000
	s := &Snapshot{RecvRate: 1000, Bandwidth: 1e5, RTT: 90 * time.Millisecond, MSS: 1500, MaxSent: isn + 40}
	c.OnLoss(isn+20, s) // P = 1125
	clk.Advance(syn)
	c.OnACK(isn+15, s)
	wantPeriod(t, c, 1125)
	if got := c.Window(); got != 1000*0.1+16 { // A*(RTT+SYN)/1e6 + 16
		t.Fatalf("W = %v, want 116", got)
	}
	clk.Advance(syn)
	c.OnACK(isn+16, s)
	if c.period >= 1125 {
		t.Fatalf("second ACK after loss did not increase: P = %v", c.period)
	}
}

func TestNativeIncreaseFormula(t *testing.T) {
	// After afterSlowStart: P = 1e6/A, lastDecPeriod = 1, no loss flag.
	// spare = trunc(B - 1e6/P); if P > lastDecPeriod && floor(B/9) < spare
	// then spare = floor(B/9); inc = max(0.01, 10^ceil(log10(spare*MSS*8))
	// * 1.5e-6 / MSS) or 0.01 if spare <= 0; P' = P*10000/(P*inc + 10000).
	tests := []struct {
		name     string
		recvRate float64 // sets P = 1e6/recvRate
		bw       float64
		mss      int
		wantP    float64
	}{
		// spare = 500-1000 < 0: inc = 0.01; 1000*10000/10010
		{"no spare", 1000, 500, 1500, 999.000999000999},
		// spare = 50 (B/9 = 116 does not cap): 50*12000 = 6e5 -> 1e6,
		// 1e6*1.5e-6/1500 = 0.001 < 0.01: inc = 0.01
		{"increase below minimum", 1000, 1050, 1500, 999.000999000999},
		// spare = 19000 capped to 2222: 26,664,000 -> 1e8: inc = 0.1;
		// 1e7/(100+10000)
		{"capped at B/9, inc 0.1", 1000, 20000, 1500, 990.0990099009902},
		// spare = 99000 capped to 11111: 133,332,000 -> 1e9: inc = 1;
		// 1e7/(1000+10000)
		{"capped at B/9, inc 1", 1000, 1e5, 1500, 909.0909090909091},
		// spare = 89000 capped to 10000: 10000*1250*8 = 1e8 exactly ->
		// 1e8 (not 1e9): inc = 150/1250 = 0.12; 1e7/(120+10000)
		{"exact power of ten", 1000, 90000, 1250, 988.1422924901186},
		// P = 1 = lastDecPeriod: no cap. spare = 2e7-1e6 = 1.9e7:
		// 2.28e11 -> 1e12: inc = 1e12*1.5e-6/1500 = 1000; 10000/(1000+10000)
		// (capped it would be 2222222 -> 1e11, inc 100, 10000/10100)
		{"uncapped when P <= lastDecPeriod", 1e6, 2e7, 1500, 0.9090909090909091},
		// P = 1 = lastDecPeriod: no cap. spare = trunc(83333.5) = 83333 as
		// 4.11's int64: 999,996,000 -> 1e9: inc = 1; 10000/(1+10000).
		// (Untruncated, 1,000,002,000 -> 1e10, inc 10, 10000/10010.)
		{"spare truncated", 1e6, 1e6 + 83333.5, 1500, 0.9999000099990001},
		// MSS unknown: 1500 assumed
		{"zero MSS", 1000, 1e5, 0, 909.0909090909091},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := afterSlowStart(t, tt.recvRate)
			clk.Advance(syn)
			c.OnACK(isn+3, &Snapshot{RecvRate: tt.recvRate, Bandwidth: tt.bw, MSS: tt.mss, RTT: 90 * time.Millisecond, MaxSent: isn + 10})
			wantPeriod(t, c, tt.wantP)
		})
	}
}

func TestNativeSubMicrosecondInterval(t *testing.T) {
	c, clk := afterSlowStart(t, 1e6)
	clk.Advance(syn)
	c.OnACK(isn+3, &Snapshot{RecvRate: 1e6, Bandwidth: 2e7, MSS: 1500, MaxSent: isn + 10})
	if got := c.PacketInterval(); got != 909*time.Nanosecond { // 0.90909 µs
		t.Fatalf("PacketInterval = %v, want 909ns", got)
	}
}

func TestNativeIncreasesWithoutLoss(t *testing.T) {
	c, clk := afterSlowStart(t, 100)
	s := &Snapshot{RecvRate: 100, Bandwidth: 1e5, RTT: 10 * time.Millisecond, MSS: 1500, MaxSent: isn + 10}
	prev := c.period
	for i := range 200 {
		clk.Advance(syn)
		c.OnACK(isn+3, s)
		if c.period >= prev {
			t.Fatalf("step %d: P = %v, not below %v", i, c.period, prev)
		}
		prev = c.period
	}
	// After 200 steps the rate is well above the start (100 packets/s).
	if 1e6/prev < 1000 {
		t.Fatalf("rate only %v packets/s after 200 increases", 1e6/prev)
	}
}

func TestNativeRateControlOncePerSYN(t *testing.T) {
	c, clk := afterSlowStart(t, 1000)
	s := &Snapshot{RecvRate: 1000, Bandwidth: 1e5, MSS: 1500, MaxSent: isn + 10}
	clk.Advance(syn)
	c.OnACK(isn+3, s)
	p := c.period
	for range 9 {
		clk.Advance(time.Millisecond)
		c.OnACK(isn+4, s)
	}
	if c.period != p {
		t.Fatalf("P changed within a SYN: %v -> %v", p, c.period)
	}
	clk.Advance(time.Millisecond)
	c.OnACK(isn+4, s)
	if c.period >= p {
		t.Fatalf("P did not change after a SYN: %v", c.period)
	}
}

func TestNativeOnTimeout(t *testing.T) {
	tests := []struct {
		name     string
		recvRate float64
		wantP    float64
	}{
		{"receive rate known", 250, 4000}, // 1e6/250
		// our fix of 4.11's W/(RTT+SYN): (90000+10000)/16
		{"no receive rate", 0, 6250},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newNative(t)
			s := &Snapshot{RecvRate: tt.recvRate, RTT: 90 * time.Millisecond, MaxSent: isn + 10}
			c.OnTimeout(s)
			if c.slowStart {
				t.Fatal("still in slow start")
			}
			wantPeriod(t, c, tt.wantP)
			if c.loss {
				t.Fatal("timeout set the loss flag")
			}
			// After slow start a timeout changes nothing.
			c.OnTimeout(&Snapshot{RecvRate: 7, MaxSent: isn + 10})
			wantPeriod(t, c, tt.wantP)
			if c.Window() != 16 {
				t.Fatalf("W = %v, want 16", c.Window())
			}
		})
	}
}

func TestNativeCongestionWarning(t *testing.T) {
	c := NewNative(newFakeClock())
	c.OnCongestionWarning()
	wantPeriod(t, c, 1.125)
	c, _ = afterSlowStart(t, 500)
	c.OnCongestionWarning()
	wantPeriod(t, c, 2250)
	c.OnCongestionWarning()
	wantPeriod(t, c, 2531.25)
}

func TestNativePeriodClamp(t *testing.T) {
	c, _ := newNative(t)
	s := &Snapshot{RecvRate: 0.5, MaxSent: isn + 10} // 1e6/0.5 = 2 s
	c.OnTimeout(s)
	wantPeriod(t, c, 1e6)
	for i := range 10 {
		c.OnLoss(isn+11+int32(i), &Snapshot{MaxSent: isn + 11 + int32(i)})
		c.OnCongestionWarning()
	}
	if c.PacketInterval() != time.Second {
		t.Fatalf("PacketInterval = %v, want 1s", c.PacketInterval())
	}
}

func TestNativeZeroSnapshot(t *testing.T) {
	// Nothing known: zero RTT, zero rates, zero MSS and flow window, and
	// nonsense rates. No panics, P in [0, 1 s], W finite.
	snaps := []Snapshot{
		{},
		{RecvRate: math.NaN(), Bandwidth: math.NaN()},
		{RecvRate: math.Inf(1), Bandwidth: math.Inf(1)},
		{RecvRate: -5, Bandwidth: -5, RTT: -time.Second, MSS: -1, FlowWindow: -1},
		{RecvRate: math.MaxFloat64, Bandwidth: math.MaxFloat64, RTT: time.Hour},
	}
	for i, s := range snaps {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			clk := newFakeClock()
			c := NewNative(clk)
			for j := range 50 {
				clk.Advance(syn)
				switch j % 5 {
				case 0, 1, 2:
					c.OnACK(int32(j), &s)
				case 3:
					c.OnLoss(int32(j), &s)
				case 4:
					c.OnTimeout(&s)
				}
				checkInvariants(t, c)
			}
		})
	}
}

func TestNativeEpochAcrossWrap(t *testing.T) {
	const max = seqno.Max
	tests := []struct {
		name    string
		first   int32
		newEpoc bool
	}{
		{"before lastDecSeq", max - 10, false},
		{"at lastDecSeq", max - 1, false},
		{"just after", max, true},
		{"after the wrap", 0, true},
		{"well after the wrap", 2, true},
		{"range bit set", int32(-1<<31 | 2), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			c := NewNative(clk)
			c.OnSent(max-20, 1456, false, &Snapshot{MaxSent: max - 20})
			c.OnTimeout(&Snapshot{RecvRate: 1000, MaxSent: max - 20}) // P = 1000
			s := &Snapshot{MaxSent: max - 1}
			// Five decreases in one epoch (DecRandom = 1) exhaust it.
			for i := range 5 {
				c.OnLoss(max-15+int32(i), s)
			}
			if c.lastDecSeq != max-1 {
				t.Fatalf("lastDecSeq = %d, want %d", c.lastDecSeq, max-1)
			}
			p := c.period
			c.OnLoss(tt.first, &Snapshot{MaxSent: 5})
			if decreased := c.period > p; decreased != tt.newEpoc {
				t.Fatalf("loss at %d: decreased = %v, want %v (P %v -> %v)", tt.first, decreased, tt.newEpoc, p, c.period)
			}
			if tt.newEpoc && c.lastDecSeq != 5 {
				t.Fatalf("lastDecSeq = %d, want 5", c.lastDecSeq)
			}
		})
	}
}

func TestNativeDecRandom(t *testing.T) {
	// Epochs of 8 NAKs each, of which the first five count (NAKCount
	// ends each epoch at 5): AvgNAKNum climbs 0, 1, 2, 3, 4, 5 and stays
	// at 5. Each epoch decreases once at its start and then on every
	// DecRandom-th NAK count among 2..5.
	run := func() []int {
		c, _ := afterSlowStart(t, 1e5)
		var got []int
		for e := range 20 {
			base := int32(isn + 100*(e+1))
			s := &Snapshot{MaxSent: base + 50}
			c.OnLoss(base, s) // new epoch
			// AvgNAKNum = ceil(0.875*avg + 0.125*5) from 0: 0, 1, 2, 3, 4, 5, 5, …
			if want := min(e, 5); c.avgNAKNum != want {
				t.Fatalf("epoch %d: AvgNAKNum = %d, want %d", e, c.avgNAKNum, want)
			}
			d := c.decRandom
			if d < 1 || d > max(1, c.avgNAKNum) {
				t.Fatalf("epoch %d: DecRandom = %d, AvgNAKNum = %d", e, d, c.avgNAKNum)
			}
			got = append(got, d)
			decreases := 1
			for i := range 7 {
				p := c.period
				c.OnLoss(base+1+int32(i), s)
				if c.period > p {
					decreases++
				}
			}
			want := 1
			for n := 2; n <= 5; n++ {
				if n%d == 0 {
					want++
				}
			}
			if decreases != want {
				t.Fatalf("epoch %d: %d decreases with DecRandom %d, want %d", e, decreases, d, want)
			}
			c.period = 10 // keep P away from the 1 s clamp
		}
		return got
	}
	a, b := run(), run()
	distinct := map[int]bool{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("DecRandom not deterministic: %v vs %v", a, b)
		}
		distinct[a[i]] = true
	}
	if len(distinct) < 3 {
		t.Fatalf("DecRandom hardly random: %v", a)
	}
}

func TestPow10Ceil(t *testing.T) {
	tests := []struct{ x, want float64 }{
		{8, 10},
		{10, 10},
		{10.000001, 100},
		{12000, 1e5},
		{1e8, 1e8},
		{99999999, 1e8},
		{100000001, 1e9},
		{2.28e11, 1e12},
		{1e300, 1e300},
		{0.1, 0.1},   // math.Log10(0.1) = -0.9999999999999999
		{1e-4, 1e-4}, // math.Log10(1e-4) = -3.9999999999999996
		{0.00011, 0.001},
		{math.MaxFloat64, math.Inf(1)},
		{math.Inf(1), math.Inf(1)},
	}
	for _, tt := range tests {
		if got := pow10Ceil(tt.x); got != tt.want {
			t.Errorf("pow10Ceil(%g) = %g, want %g", tt.x, got, tt.want)
		}
	}
}

func checkInvariants(t testing.TB, c *Native) {
	t.Helper()
	if !(c.period >= 0 && c.period <= 1e6) {
		t.Fatalf("P = %v outside [0, 1e6]", c.period)
	}
	if d := c.PacketInterval(); d < 0 || d > time.Second {
		t.Fatalf("PacketInterval = %v", d)
	}
	if w := c.Window(); math.IsNaN(w) || math.IsInf(w, 0) || w < 16 {
		t.Fatalf("W = %v", w)
	}
	if c.decRandom < 1 || c.decCount > 5 {
		t.Fatalf("DecRandom = %d, DecCount = %d", c.decRandom, c.decCount)
	}
}

func TestNativeNoAllocs(t *testing.T) {
	clk := newFakeClock()
	c := NewNative(clk)
	var cc Controller = c
	s := &Snapshot{RecvRate: 1000, Bandwidth: 1e5, RTT: 20 * time.Millisecond, MSS: 1500, FlowWindow: 8192}
	seq := int32(0)
	allocs := testing.AllocsPerRun(1000, func() {
		seq = seqno.Add(seq, 100)
		s.MaxSent = seq
		clk.Advance(syn)
		cc.OnSent(seq, 1456, false, s)
		cc.OnACK(seqno.Add(seq, -50), s)
		cc.OnLoss(seqno.Add(seq, -10), s)
		cc.OnLoss(seqno.Add(seq, -20), s)
		cc.OnTimeout(s)
		cc.OnCongestionWarning()
		_ = cc.PacketInterval()
		_ = cc.Window()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per event round, want 0", allocs)
	}
}

func BenchmarkNativeOnACK(b *testing.B) {
	clk := newFakeClock()
	c := NewNative(clk)
	s := &Snapshot{RecvRate: 1000, Bandwidth: 1e5, RTT: 20 * time.Millisecond, MSS: 1500, FlowWindow: 8192}
	c.OnTimeout(s)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		clk.Advance(syn)
		c.OnACK(int32(i&seqno.Max), s)
		if c.period < 1 {
			c.period = 1000
		}
	}
}

func BenchmarkNativeOnLoss(b *testing.B) {
	c := NewNative(newFakeClock())
	s := &Snapshot{RecvRate: 1000, Bandwidth: 1e5, RTT: 20 * time.Millisecond, MSS: 1500, FlowWindow: 8192}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.MaxSent = int32((i + 10) & seqno.Max)
		c.OnLoss(int32(i&seqno.Max), s)
		if c.period > 1e5 {
			c.period = 1000
		}
	}
}

// FuzzNative runs an event script against the controller and checks that
// P and W stay sane whatever the events and snapshots.
//
// The script is a sequence of 16-byte records: op, clock step (ms), seq
// (4 bytes), RTT ms (2), receive rate (4, float32 bits), bandwidth (4,
// float32 bits).
func FuzzNative(f *testing.F) {
	rec := func(op, step byte, seq uint32, rtt uint16, rr, bw float32) []byte {
		b := []byte{op, step}
		b = binary.BigEndian.AppendUint32(b, seq)
		b = binary.BigEndian.AppendUint16(b, rtt)
		b = binary.BigEndian.AppendUint32(b, math.Float32bits(rr))
		return binary.BigEndian.AppendUint32(b, math.Float32bits(bw))
	}
	var seed []byte
	for i := range 40 {
		seed = append(seed, rec(byte(i%5), 10, uint32(1000+10*i), 20, 1000, 1e5)...)
	}
	f.Add(seed)
	f.Add(append(rec(1, 0, seqno.Max, 0, 0, 0), rec(0, 10, 3, 0, float32(math.NaN()), float32(math.Inf(1)))...))
	f.Add(rec(2, 0, 0, 65535, 1e-30, 1e30))
	f.Fuzz(func(t *testing.T, script []byte) {
		clk := newFakeClock()
		c := NewNative(clk)
		for len(script) >= 16 {
			r := script[:16]
			script = script[16:]
			clk.Advance(time.Duration(r[1]) * time.Millisecond)
			seq := int32(binary.BigEndian.Uint32(r[2:]) & seqno.Max)
			s := &Snapshot{
				RTT:        time.Duration(binary.BigEndian.Uint16(r[6:])) * time.Millisecond,
				RecvRate:   float64(math.Float32frombits(binary.BigEndian.Uint32(r[8:]))),
				Bandwidth:  float64(math.Float32frombits(binary.BigEndian.Uint32(r[12:]))),
				MaxSent:    seqno.Add(seq, int(r[1])),
				MSS:        1500,
				FlowWindow: 64 * int(r[0]>>4),
			}
			switch r[0] % 6 {
			case 0, 1:
				c.OnACK(seq, s)
			case 2:
				c.OnLoss(seq, s)
			case 3:
				c.OnTimeout(s)
			case 4:
				c.OnSent(seq, 1456, r[1]&1 == 1, s)
			case 5:
				c.OnCongestionWarning()
			}
			checkInvariants(t, c)
		}
	})
}
