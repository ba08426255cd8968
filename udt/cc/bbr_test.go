package cc

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/seqno"
)

// bbrPipe drives a BBR controller through an ideal path: every 10 ms it
// sends perTick new packets and acknowledges everything sent at least rtt
// ago, as a receiver ACKing every SYN would.
type bbrPipe struct {
	t       testing.TB
	c       *BBR
	clk     *fakeClock
	next    int32
	acked   int32
	times   []time.Time // send time of packet acked+i
	perTick int
	rtt     func() time.Duration
	snap    Snapshot
}

func newBBRPipe(t testing.TB, first int32, perTick int, rtt time.Duration) *bbrPipe {
	clk := newFakeClock()
	p := &bbrPipe{t: t, c: NewBBR(clk), clk: clk, next: first, acked: first, perTick: perTick}
	p.rtt = func() time.Duration { return rtt }
	p.snap = Snapshot{RTT: rtt, MSS: 1500, FlowWindow: 25600, RecvRate: float64(perTick) * 100}
	return p
}

// tick advances 10 ms, sends and acknowledges.
func (p *bbrPipe) tick() {
	p.t.Helper()
	p.clk.Advance(syn)
	rtt := p.rtt()
	n := 0
	for n < len(p.times) && p.clk.Now().Sub(p.times[n]) >= rtt {
		n++
	}
	if n > 0 {
		p.acked = seqno.Add(p.acked, n)
		p.times = p.times[n:]
		p.snap.Received += int64(n) // no loss: the cumulative ACK tells all
		p.snap.RTT = rtt
		p.snap.MaxSent = seqno.Dec(p.next)
		p.c.OnACK(p.acked, &p.snap)
	}
	for range p.perTick {
		if float64(seqno.Off(p.acked, p.next)) >= p.c.Window() {
			break
		}
		p.c.OnSent(p.next, 1456, false, &p.snap)
		p.times = append(p.times, p.clk.Now())
		p.next = seqno.Inc(p.next)
	}
	checkBBR(p.t, p.c)
}

func (p *bbrPipe) run(d time.Duration) {
	p.t.Helper()
	for range int(d / syn) {
		p.tick()
	}
}

// checkBBR checks the outputs the engine relies on.
func checkBBR(t testing.TB, c *BBR) {
	t.Helper()
	if iv := c.PacketInterval(); iv < 0 || iv > time.Second {
		t.Fatalf("PacketInterval = %v", iv)
	}
	if w := c.Window(); math.IsNaN(w) || math.IsInf(w, 0) || w < bbrMinWindow || w > 4*maxCWnd {
		t.Fatalf("Window = %v", w)
	}
	if math.IsNaN(c.bw) || c.bw < 0 || c.bw > bbrMaxRate || c.minRTT < 0 {
		t.Fatalf("model: bw %v, minRTT %v", c.bw, c.minRTT)
	}
}

func TestBBRByName(t *testing.T) {
	if _, ok := New("bbr", newFakeClock()).(*BBR); !ok {
		t.Error(`New("bbr") is not *BBR`)
	}
	if NewBBR(nil).clk == nil {
		t.Error("NewBBR(nil) has no clock")
	}
}

func TestBBRInitialState(t *testing.T) {
	c := NewBBR(newFakeClock())
	if got := c.PacketInterval(); got != 0 {
		t.Errorf("PacketInterval = %v, want 0 (unpaced until the first sample)", got)
	}
	if got := c.Window(); got != bbrInitialWindow {
		t.Errorf("Window = %v, want %d", got, bbrInitialWindow)
	}
	if st, bw, rtt := c.State(); st != "startup" || bw != 0 || rtt != 0 {
		t.Errorf("State = %s, %v, %v", st, bw, rtt)
	}
}

// The first ACK gives the first delivery-rate sample: 16 packets in one
// RTT. Startup then paces at 2.77 times the larger of that and its floor
// of 32 packets per RTT (stretched by 16/15 for the engine's packet
// pairs) with a window of 2.89 times the larger BDP (plus 40 ms).
func TestBBRFirstSample(t *testing.T) {
	clk := newFakeClock()
	c := NewBBR(clk)
	s := &Snapshot{RTT: 100 * time.Millisecond, RecvRate: 16, MSS: 1500}
	for i := range int32(16) {
		c.OnSent(isn+i, 1456, false, s)
	}
	if c.Window() != 16 || c.PacketInterval() != 0 {
		t.Fatalf("before any ACK: Window %v, PacketInterval %v", c.Window(), c.PacketInterval())
	}
	clk.Advance(100 * time.Millisecond)
	s.MaxSent = isn + 15
	c.OnACK(isn+16, s)
	_, bw, rtt := c.State()
	if !near(bw, 160) || rtt != 100*time.Millisecond {
		t.Fatalf("model after the first ACK: bw %v, minRTT %v; want 160, 100ms", bw, rtt)
	}
	// Startup's floor: 32 packets per minRTT (320 packets/s here), above
	// the sample of 160.
	wantIv := time.Duration(math.Round(16.0 / 15 / (2.77 * 320) * 1e9))
	if got := c.PacketInterval(); got < wantIv-time.Microsecond || got > wantIv+time.Microsecond {
		t.Errorf("PacketInterval = %v, want %v", got, wantIv)
	}
	if got, want := c.Window(), 2.89*32; !near(got, want) {
		t.Errorf("Window = %v, want %v", got, want)
	}
}

// A connection starts with a key exchange: two small packets a round
// trip, acknowledged with the engine's initial receive-rate guess (16
// packets/s). The bulk data that follows must still leave at Startup's
// pace for 16 packets a round trip, not one packet per 24 ms, and that
// pace must not fall while the pipe is not full.
func TestBBRStartupAfterKeyExchange(t *testing.T) {
	clk := newFakeClock()
	c := NewBBR(clk)
	rtt := 100 * time.Millisecond
	s := &Snapshot{RTT: rtt, RecvRate: 16, MSS: 1500}
	seq := int32(isn)
	for range 2 { // key exchange: one packet each way per round trip
		c.OnSent(seq, 48, false, s)
		seq = seqno.Inc(seq)
		clk.Advance(rtt)
		s.MaxSent = seqno.Dec(seq)
		c.OnACK(seq, s)
	}
	floor := time.Duration(bbrPairFactor * 1e9 / (bbrStartupPacingGain * bbrStartupWindow / rtt.Seconds()))
	iv := c.PacketInterval()
	if iv <= 0 || iv > floor+time.Microsecond {
		t.Fatalf("after the key exchange: PacketInterval %v, want (0, %v]: %d packets per RTT at Startup's gain", iv, floor, bbrStartupWindow)
	}
	// A round of bulk data whose ACK still reports a lower rate.
	for range 16 {
		c.OnSent(seq, 1456, false, s)
		seq = seqno.Inc(seq)
	}
	clk.Advance(rtt)
	s.MaxSent = seqno.Dec(seq)
	s.ACKRate = 20
	c.OnACK(seq, s)
	if got := c.PacketInterval(); got > iv {
		t.Errorf("Startup's PacketInterval rose from %v to %v", iv, got)
	}
	if st, _, _ := c.State(); st != "startup" {
		t.Errorf("state %s, want startup", st)
	}
}

// On an ideal path the model converges on the path: bandwidth, RTT, and a
// window of about two BDPs, in ProbeBW.
func TestBBRConverges(t *testing.T) {
	p := newBBRPipe(t, isn, 50, 60*time.Millisecond) // 5000 packets/s
	p.run(5 * time.Second)
	st, bw, rtt := p.c.State()
	if st != "probe-bw" {
		t.Errorf("state %s, want probe-bw", st)
	}
	if bw < 4900 || bw > 5600 {
		t.Errorf("bw %v, want about 5000", bw)
	}
	if rtt < 60*time.Millisecond || rtt > 70*time.Millisecond {
		t.Errorf("minRTT %v, want 60-70 ms", rtt)
	}
	if w := p.c.Window(); w < 2*5000*0.06 || w > 3*5600*0.07 {
		t.Errorf("Window %v", w)
	}
}

// Samples from app-limited stretches do not pull the estimate down, even
// after many rounds: the filter keeps what the path showed it can carry.
func TestBBRAppLimited(t *testing.T) {
	p := newBBRPipe(t, isn, 50, 50*time.Millisecond)
	p.run(3 * time.Second)
	_, before, _ := p.c.State()
	// The application now writes a packet every 20 ms: idle gaps, not
	// ended by ACKs (those come on the 10 ms grid).
	p.perTick = 0
	p.snap.RecvRate = 50
	for i := range 300 {
		p.clk.Advance(syn)
		p.tick()
		if i%2 == 0 {
			p.clk.Advance(3 * time.Millisecond)
			p.c.OnSent(p.next, 1456, false, &p.snap)
			p.times = append(p.times, p.clk.Now())
			p.next = seqno.Inc(p.next)
		}
	}
	if _, after, _ := p.c.State(); after < 0.9*before {
		t.Errorf("bw fell from %v to %v while app-limited", before, after)
	}
}

// Random loss (NAKs and retransmissions at 2 %) does not cut the rate.
func TestBBRRandomLossKeepsRate(t *testing.T) {
	var c *BBR
	cfg := simConfig{rate: 5000, rtt: 40 * time.Millisecond, queue: 200, loss: 0.02, duration: 10 * time.Second, seed: 9}
	runSim(cfg, func(clk Clock) Controller { c = NewBBR(clk); return c })
	if st, bw, _ := c.State(); st != "probe-bw" && st != "probe-rtt" || bw < 0.9*cfg.rate || bw > 1.1*cfg.rate {
		t.Errorf("after 10 s at 2%% random loss: %s, bw %.0f; want ProbeBW at about %.0f", st, bw, cfg.rate)
	}
}

// ACKs that go backwards, repeat, or acknowledge more than was sent change
// nothing; an ACK beyond what we saw sent but within what the engine says
// it sent is believed.
func TestBBRStrangeACKs(t *testing.T) {
	clk := newFakeClock()
	c := NewBBR(clk)
	s := &Snapshot{RTT: 50 * time.Millisecond, RecvRate: 1000, MSS: 1500}
	for i := range int32(100) {
		c.OnSent(isn+i, 1456, false, s)
	}
	s.MaxSent = isn + 99
	clk.Advance(50 * time.Millisecond)
	c.OnACK(isn+50, s)
	type state struct {
		ack, next int32
		delivered int64
		w         float64
		iv        time.Duration
	}
	get := func() state { return state{c.lastAck, c.nextSeq, c.delivered, c.Window(), c.PacketInterval()} }
	want := get()
	if want.delivered != 50 {
		t.Fatalf("delivered %d, want 50", want.delivered)
	}
	for _, ack := range []int32{isn + 40, isn + 50, isn + 101, isn + 500, seqno.Add(isn, 1<<30+7), isn - 1} {
		clk.Advance(syn)
		c.OnACK(ack, s)
		if got := get(); got != want {
			t.Errorf("after ACK %d: %+v, want %+v", ack, got, want)
		}
	}
	// The engine sent up to isn+150 without telling us (say, before
	// switching controllers): an ACK up to isn+151 is real.
	s.MaxSent = isn + 150
	c.OnACK(isn+120, s)
	if c.lastAck != isn+120 || c.nextSeq != isn+151 || c.delivered != 120 {
		t.Errorf("ACK beyond our sends: lastAck %d, nextSeq %d, delivered %d", c.lastAck, c.nextSeq, c.delivered)
	}
	checkBBR(t, c)
}

// Events before anything is known anchor the sequence state without
// breaking anything.
func TestBBRFirstEventNotOnSent(t *testing.T) {
	for _, first := range []func(c *BBR, s *Snapshot){
		func(c *BBR, s *Snapshot) { c.OnACK(isn, s) },
		func(c *BBR, s *Snapshot) { c.OnLoss(isn, s) },
		func(c *BBR, s *Snapshot) { c.OnTimeout(s) },
		func(c *BBR, s *Snapshot) { c.OnSent(isn, 1456, true, s) },
		func(c *BBR, s *Snapshot) { c.OnCongestionWarning() },
	} {
		clk := newFakeClock()
		c := NewBBR(clk)
		s := &Snapshot{MaxSent: isn - 1}
		first(c, s)
		checkBBR(t, c)
		for i := range int32(20) {
			c.OnSent(isn+i, 1456, false, s)
		}
		s.MaxSent = isn + 19
		clk.Advance(30 * time.Millisecond)
		c.OnACK(isn+20, s)
		checkBBR(t, c)
		if c.delivered <= 0 {
			t.Errorf("nothing delivered after the ACK")
		}
	}
}

// A timeout keeps the model (and the pacing rate) but holds new data to a
// small window until the ACK passes what was in flight.
func TestBBRTimeout(t *testing.T) {
	p := newBBRPipe(t, isn, 50, 50*time.Millisecond)
	p.run(3 * time.Second)
	iv, w := p.c.PacketInterval(), p.c.Window()
	end := p.next
	p.c.OnTimeout(&p.snap)
	if got := p.c.Window(); got != bbrInitialWindow {
		t.Errorf("Window after timeout %v, want %d", got, bbrInitialWindow)
	}
	if got := p.c.PacketInterval(); got != iv {
		t.Errorf("PacketInterval after timeout %v, want %v (model kept)", got, iv)
	}
	// The go-back-N retransmissions are not loss in the model's sense.
	for q := p.acked; q != end; q = seqno.Inc(q) {
		p.c.OnSent(q, 1456, true, &p.snap)
	}
	if p.c.lostRound != 0 {
		t.Errorf("retransmissions after a timeout counted as %d losses", p.c.lostRound)
	}
	for i := 0; i < 100 && p.c.recovering; i++ {
		p.tick()
	}
	if p.c.recovering {
		t.Fatal("still recovering after 1 s")
	}
	p.run(time.Second)
	if got := p.c.Window(); got < 0.8*w {
		t.Errorf("Window %v after recovery, was %v", got, w)
	}
}

// Without a fresh minimum for 10 s, ProbeRTT cuts the window to half a
// BDP for at least 200 ms, then returns to ProbeBW.
func TestBBRProbeRTT(t *testing.T) {
	p := newBBRPipe(t, isn, 50, 50*time.Millisecond)
	p.run(2 * time.Second)
	// From now on the RTT creeps up: no sample refreshes the minimum.
	rtt := 50 * time.Millisecond
	p.rtt = func() time.Duration { rtt += 10 * time.Microsecond; return rtt }
	var entered time.Time
	var window float64
	for range 1200 {
		p.tick()
		if p.c.state == bbrProbeRTT && entered.IsZero() {
			entered = p.clk.Now()
			window = p.c.Window()
		} else if p.c.state != bbrProbeRTT && !entered.IsZero() {
			break
		}
	}
	if entered.IsZero() {
		t.Fatal("no ProbeRTT in 12 s")
	}
	if d := p.clk.Now().Sub(entered); d < bbrProbeRTTDuration {
		t.Errorf("ProbeRTT lasted %v", d)
	}
	_, bw, _ := p.c.State()
	if want := max(0.5*bw*0.05, bbrMinWindow); window > 1.2*want {
		t.Errorf("ProbeRTT window %v, want about %v", window, want)
	}
	if p.c.state != bbrProbeBW {
		t.Errorf("after ProbeRTT: %v", p.c.state)
	}
}

// A path whose RTT stays a tenth of a millisecond above its lucky first
// minimum has no queue to drain: no ProbeRTT in 30 s. One whose RTT grew
// by 2 % does get one (TestBBRProbeRTT: a slow creep).
func TestBBRProbeRTTOnlyWithQueue(t *testing.T) {
	for _, tc := range []struct {
		above time.Duration
		want  bool
	}{{100 * time.Microsecond, false}, {time.Millisecond, true}} {
		p := newBBRPipe(t, isn, 50, 50*time.Millisecond)
		p.run(2 * time.Second)
		rtt := 50*time.Millisecond + tc.above
		p.rtt = func() time.Duration { return rtt }
		probed := false
		for range 3000 {
			p.tick()
			if p.c.state == bbrProbeRTT {
				probed = true
				break
			}
		}
		if probed != tc.want {
			t.Errorf("RTT %v above the minimum for 30 s: ProbeRTT %v, want %v", tc.above, probed, tc.want)
		}
	}
}

// Snapshots full of nonsense leave the outputs finite and bounded.
func TestBBRNonsenseSnapshots(t *testing.T) {
	clk := newFakeClock()
	c := NewBBR(clk)
	bad := []Snapshot{
		{RTT: -1, RecvRate: math.NaN(), Bandwidth: math.Inf(1)},
		{RTT: math.MaxInt64, RecvRate: math.Inf(1), Bandwidth: math.NaN()},
		{RTT: 1, RecvRate: 1e300, Bandwidth: -5, MaxSent: -7},
		{RecvRate: -1e300, MaxSent: seqno.Max},
		{RecvRate: 1e-300, RTT: time.Nanosecond},
	}
	seq := int32(seqno.Max - 50)
	for i := range 400 {
		s := &bad[i%len(bad)]
		clk.Advance(time.Duration(i%7) * time.Millisecond)
		c.OnSent(seq, 1456, i%5 == 0, s)
		seq = seqno.Inc(seq)
		switch i % 4 {
		case 0:
			c.OnACK(seqno.Add(seq, -3), s)
		case 1:
			c.OnLoss(seqno.Add(seq, -10), s)
		case 2:
			c.OnACK(seqno.Add(seq, -(i%13)), nil)
		case 3:
			if i%40 == 3 {
				c.OnTimeout(s)
			}
		}
		checkBBR(t, c)
	}
}

// A clock that jumps back is held, not believed.
func TestBBRClockBackwards(t *testing.T) {
	p := newBBRPipe(t, isn, 50, 50*time.Millisecond)
	p.run(time.Second)
	p.clk.Advance(-time.Hour)
	p.run(time.Second)
	checkBBR(t, p.c)
}

// Steady-state events allocate nothing.
func TestBBRNoAllocs(t *testing.T) {
	clk := newFakeClock()
	c := NewBBR(clk)
	var cc Controller = c
	s := &Snapshot{RecvRate: 5000, Bandwidth: 1e5, RTT: 50 * time.Millisecond, MSS: 1500, FlowWindow: 25600}
	seq := int32(seqno.Max - 200) // across the wrap, too
	acked := seq
	allocs := testing.AllocsPerRun(2000, func() {
		for range 50 {
			clk.Advance(200 * time.Microsecond)
			cc.OnSent(seq, 1456, false, s)
			seq = seqno.Inc(seq)
		}
		cc.OnSent(seqno.Add(acked, 3), 1456, true, s)
		cc.OnLoss(seqno.Add(acked, 3), s)
		acked = seqno.Add(seq, -250)
		s.MaxSent = seqno.Dec(seq)
		cc.OnACK(acked, s)
		cc.OnCongestionWarning()
		_ = cc.PacketInterval()
		_ = cc.Window()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per event round, want 0", allocs)
	}
	checkBBR(t, c)
}

func BenchmarkBBROnSent(b *testing.B) {
	clk := newFakeClock()
	c := NewBBR(clk)
	s := &Snapshot{RecvRate: 5000, RTT: 50 * time.Millisecond}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		clk.Advance(10 * time.Microsecond)
		c.OnSent(int32(i&seqno.Max), 1456, false, s)
		if i%100 == 99 {
			c.OnACK(int32((i-500)&seqno.Max), s)
		}
	}
}

func BenchmarkBBRSim(b *testing.B) {
	cfg := simConfig{rate: pktRate(100), rtt: 50 * time.Millisecond, queue: 425, loss: 0.001, duration: 10 * time.Second, seed: 1}
	for b.Loop() {
		runSim(cfg, newBBRController)
	}
}

// FuzzBBR runs an event script against the controller and checks that the
// pacing interval and the window stay sane whatever the events and
// snapshots.
//
// The script is a sequence of 16-byte records: op, clock step (ms), seq
// (4 bytes), RTT ms (2), receive rate (4, float32 bits), bandwidth (4,
// float32 bits).
func FuzzBBR(f *testing.F) {
	rec := func(op, step byte, seq uint32, rtt uint16, rr, bw float32) []byte {
		b := []byte{op, step}
		b = binary.BigEndian.AppendUint32(b, seq)
		b = binary.BigEndian.AppendUint16(b, rtt)
		b = binary.BigEndian.AppendUint32(b, math.Float32bits(rr))
		return binary.BigEndian.AppendUint32(b, math.Float32bits(bw))
	}
	var seed []byte
	for i := range 60 {
		seed = append(seed, rec(4, 1, uint32(seqno.Max-30+i), 20, 1000, 1e5)...)
		if i%3 == 2 {
			seed = append(seed, rec(0, 10, uint32(seqno.Max-40+i), 20, 1000, 1e5)...)
		}
		if i%10 == 5 {
			seed = append(seed, rec(2, 0, uint32(seqno.Max-35+i), 20, 1000, 1e5)...)
			seed = append(seed, rec(5, 0, uint32(seqno.Max-35+i), 20, 1000, 1e5)...)
		}
	}
	f.Add(seed)
	f.Add(append(rec(1, 0, seqno.Max, 0, 0, 0), rec(0, 10, 3, 0, float32(math.NaN()), float32(math.Inf(1)))...))
	f.Add(rec(3, 0, 0, 65535, 1e-30, 1e30))
	f.Add(append(rec(4, 0, 5, 1, 3e38, 0), rec(0, 255, 6, 1, 3e38, 0)...))
	f.Fuzz(func(t *testing.T, script []byte) {
		clk := newFakeClock()
		c := NewBBR(clk)
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
			switch r[0] % 7 {
			case 0, 1:
				c.OnACK(seq, s)
			case 2:
				c.OnLoss(seq, s)
			case 3:
				c.OnTimeout(s)
			case 4:
				c.OnSent(seq, 1456, false, s)
			case 5:
				c.OnSent(seq, 1456, true, s)
			case 6:
				c.OnCongestionWarning()
			}
			checkBBR(t, c)
		}
	})
}

// A libudt receiver reports up to 10^6 packets/s when packets come
// bunched. Without a model the figure counts only up to what was sent per
// second (times the gain); within a round, ACK after ACK, it cannot
// compound beyond the gain times btlbw at the round's start.
func TestBBRDistrustsHugeRecvRate(t *testing.T) {
	clk := newFakeClock()
	c := NewBBR(clk)
	s := &Snapshot{RTT: 100 * time.Millisecond, RecvRate: 1e6, ACKRate: 1e6, MSS: 1500}
	for i := range int32(16) {
		c.OnSent(isn+i, 1456, false, s)
	}
	clk.Advance(100 * time.Millisecond)
	s.MaxSent = isn + 15
	c.OnACK(isn+1, s)
	_, bw0, _ := c.State()
	if lim := 2.77 * bbrStartupWindow / 0.1; bw0 <= 0 || bw0 > lim*1.01 {
		t.Fatalf("first sample: btlbw %v, want at most %v (Startup's %d packets in 100 ms, times 2.77)", bw0, lim, bbrStartupWindow)
	}
	// Ten more ACKs 10 ms apart in the same round, each claiming 10^6.
	for i := int32(2); i <= 11; i++ {
		clk.Advance(10 * time.Millisecond)
		c.OnACK(isn+i, s)
	}
	if _, bw, _ := c.State(); bw > 2.77*bw0*1.01 {
		t.Fatalf("after ten ACKs in one round: btlbw %v, more than 2.77 x %v", bw, bw0)
	}
}

// A libudt receiver, once packets come bunched, keeps reporting 10^6
// packets/s. Capped per ACK and per round, such figures still let btlbw
// grow by the probing gain round after round (measured in the lab: 2.4x
// the link within seconds, then queue overflow and go-back-N timeouts).
// After a few reports far beyond both what was sent and the model, the
// receiver's figure is ignored for good and btlbw follows what the ACKs
// deliver; an honest receiver's figure (the pipe's own rate) never
// trips this.
func TestBBRIgnoresLyingReceiver(t *testing.T) {
	p := newBBRPipe(t, isn, 50, 60*time.Millisecond) // 5000 packets/s
	p.run(5 * time.Second)
	if p.c.recvUntrusted {
		t.Fatal("an honest receiver's rate was taken for an artefact")
	}
	p.snap.RecvRate, p.snap.ACKRate = 1e6, 1e6
	p.run(5 * time.Second)
	st, bw, _ := p.c.State()
	if !p.c.recvUntrusted || !strings.Contains(st, "no-recv-rate") {
		t.Errorf("after 5 s of 10^6 packets/s from a 5000 packets/s path: receiver still believed (state %s)", st)
	}
	if bw > 1.3*5000 {
		t.Errorf("btlbw %.0f packets/s, want at most 1.3 x the 5000 the path delivers", bw)
	}
	if bw < 0.8*5000 {
		t.Errorf("btlbw %.0f packets/s, want about the 5000 the path delivers", bw)
	}
}

// After a congestion cut, bwLo's clock stops while a standing queue shows,
// but for no longer than K in all: on a jittery path (the NAT lab's
// impaired uplinks) the smoothed RTT sits 13 ms above minRTT for good, and
// a clock held for good kept the rate at the cut's floor to the end.
func TestBBRBwLoHoldBounded(t *testing.T) {
	c := NewBBR(newFakeClock())
	ms := int64(time.Millisecond)
	c.state, c.pacingGain = bbrProbeBW, 1
	c.minRTT, c.srtt, c.rttVar = 132*ms, 145*ms, 2*ms
	c.bw, c.peakBw = 1000, 1000
	now := 100_000 * ms
	c.standSince = now - 1000*ms // cruising under the queue for a second
	c.bwRoseAt, c.probeAt, c.probeRTTOut = 1, 1, 1
	if !c.standingQueue() {
		t.Fatal("rig: no standing queue")
	}
	c.cut(now, cutLoss)
	if c.bwLo <= 0 || c.cuts != 1 {
		t.Fatalf("cut: bwLo %.0f, cuts %d; want a congestion cut", c.bwLo, c.cuts)
	}
	lo, k := c.bwLo, c.cutK
	// Rounds of one minRTT with the queue standing throughout. Unheld,
	// the curve is back at btlbw when it has passed its plateau (fast
	// convergence: 0.85 of the cut's rate) by the rest.
	rtt := float64(c.minRTT) / 1e9
	past := math.Cbrt((c.cutBw - c.cutMax) * rtt / cubicC)
	limit := 2*k + past + 1
	end := now + int64(limit*1e9)
	for now < end && c.bwLo > 0 {
		now += c.minRTT
		c.growBwLo(now)
	}
	if c.bwLo > 0 {
		t.Errorf("bwLo %.0f (cut to %.0f, K %.1f s) still holds %.1f s after the cut under a standing queue; want it grown back to btlbw within 2K + %.1f s",
			c.bwLo, lo, k, limit, past+1)
	}
}

// Losses before the model has measured anything end no Startup: after the
// key exchange, the first flight of 16 goes out again whole (a head repair
// on a path longer than the peer's first RTT figure) before any ACK. In
// the lab's impaired path that ended Startup at 16 packets/s, and ProbeBW
// took half a minute to grow from there.
func TestBBRStartupLossBeforeMeasuring(t *testing.T) {
	clk := newFakeClock()
	c := NewBBR(clk)
	rtt := 140 * time.Millisecond
	s := &Snapshot{RTT: 100 * time.Millisecond, RecvRate: 16, MSS: 1500}
	seq := int32(isn)
	for range 2 { // key exchange
		c.OnSent(seq, 48, false, s)
		seq = seqno.Inc(seq)
		clk.Advance(rtt)
		s.MaxSent = seqno.Dec(seq)
		c.OnACK(seq, s)
	}
	first := seq
	for range 16 {
		c.OnSent(seq, 1456, false, s)
		seq = seqno.Inc(seq)
		clk.Advance(time.Millisecond)
	}
	clk.Advance(100 * time.Millisecond)
	for q := first; q != seq; q = seqno.Inc(q) {
		c.OnSent(q, 1456, true, s)
	}
	clk.Advance(rtt)
	s.MaxSent = seqno.Dec(seq)
	c.OnACK(seq, s)
	if st, bw, _ := c.State(); st != "startup" {
		t.Errorf("state %s with btlbw %.0f packets/s after a repaired first flight, want startup", st, bw)
	}
}

// Retransmissions that only guess (Snapshot.Guess: an overdue ACK's
// repair, EXP's resend) are not losses: a head repair resends a run of 16
// that mostly arrived. Reported losses are.
func TestBBRGuessesAreNotLosses(t *testing.T) {
	for _, guess := range []bool{true, false} {
		p := newBBRPipe(t, isn, 200, 100*time.Millisecond)
		p.run(300 * time.Millisecond)
		if st, _, _ := p.c.State(); st != "startup" || !p.c.measured() {
			t.Fatalf("rig: %s, measured %v; want a measured Startup", st, p.c.measured())
		}
		before := p.c.lostRound
		p.snap.Guess = guess
		q := p.acked
		for range 40 {
			p.c.OnSent(q, 1456, true, &p.snap)
			q = seqno.Inc(q)
		}
		p.snap.Guess = false
		lost := p.c.lostRound - before
		switch {
		case guess && lost != 0:
			t.Errorf("40 guessed retransmissions counted as %d losses", lost)
		case !guess && lost != 40:
			t.Errorf("40 retransmissions of reported losses counted as %d", lost)
		}
	}
}

// A probe that overflows the queue from a btlbw clearly below the link's
// (the largest a probe began from) yields: another flow shares the queue.
// In the NAT lab beside TCP CUBIC, our paced packets lost almost nothing
// when CUBIC's bursts overflowed the queue, no loss outside probes ever
// cut, and CUBIC kept 9 % of the link. Alone, the same probe loss only
// limits later probes; and Startup's overshoot (in btlbw for 10 rounds
// after Drain) is no measure of the link.
func TestBBRSharedProbeLossYields(t *testing.T) {
	for _, tc := range []struct {
		bw     float64
		shared bool
		fresh  bool // the earlier probe began within 10 rounds of Drain
	}{{990, false, false}, {900, true, false}, {900, false, true}} {
		c := NewBBR(newFakeClock())
		ms := int64(time.Millisecond)
		c.state, c.cycleIdx = bbrProbeBW, 0
		c.round = 100
		if tc.fresh {
			c.drainRound = 95
		}
		c.minRTT, c.srtt = 100*ms, 104*ms
		c.npRounds = bbrBgRounds
		now := 100_000 * ms
		c.bw, c.peakBw = 1000, 1000
		c.startProbe(now - 10_000*ms) // an earlier probe, alone
		c.bw = tc.bw
		c.startProbe(now)
		c.pacingGain = bbrGainCycle[0]
		c.probeSent = 400
		for range 10 {
			c.probeLoss(&bbrRecord{inflight: 130})
		}
		if !c.probeHit {
			t.Fatalf("btlbw %.0f: rig: the probe's losses did not count", tc.bw)
		}
		switch {
		case tc.shared && (c.bwLo <= 0 || c.bwLo > bbrLossBeta*tc.bw+1):
			t.Errorf("probe from %.0f of a link of 1000 lost: bwLo %.0f, want %.0f (a cut)", tc.bw, c.bwLo, bbrLossBeta*tc.bw)
		case !tc.shared && c.bwLo != 0:
			t.Errorf("probe from %.0f of a link of 1000 lost: bwLo %.0f, want none (alone)", tc.bw, c.bwLo)
		case !tc.shared && c.room <= 0:
			t.Errorf("probe alone lost: room %.0f, want a probing limit", c.room)
		}
	}
}

// Another flow's congestion cuts bwLo to 0.7 of the rate, but a rate
// above half the largest btlbw to that half at once (never below 0.45 of
// it). In the NAT lab's e beside TCP CUBIC, cuts to 0.7 left CUBIC a fifth
// of the link: it started small, inside our Startup's overshoot, and never
// caught up.
func TestBBRCutToFairShare(t *testing.T) {
	for _, tc := range []struct {
		r, want float64 // the rate cut from, bwLo right after the cut
	}{{9000, 5000}, {8000, 5000}, {7000, 4900}, {6000, 4500}} {
		c := NewBBR(newFakeClock())
		ms := int64(time.Millisecond)
		c.state, c.pacingGain = bbrProbeBW, 1
		c.minRTT, c.srtt = 100*ms, 101*ms // no standing queue
		c.bw, c.peakBw = tc.r, 10000
		c.lower(100_000*ms, tc.r, tc.r, cutLoss)
		if math.Abs(c.bwLo-tc.want) > 1 {
			t.Errorf("cut from %.0f of a largest btlbw of 10000: bwLo %.0f, want %.0f", tc.r, c.bwLo, tc.want)
		}
	}
}

// After a cut on a shared link (a shared probe's, one from clearly below
// linkBw, or one within 20 s of the cut before) bwLo grows by 0.53
// packets per RTT each RTT: with the decrease of 0.7, RFC 9438's AIMD as
// fair to Reno. After an isolated cut, as CUBIC's window, which is back
// near the cut's rate within K: cheap if the cut was a mistake (alone,
// the NAT lab's jitter or a busy host can pass for another flow's queue),
// but beside TCP CUBIC it took the room back before CUBIC could grow into
// it. btlbw at the episode's first cut decides whether it began below
// linkBw.
func TestBBRSharedCutGrowsAsAIMD(t *testing.T) {
	aimd := [2]float64{5000 + 150, 5000 + 170}
	// CUBIC's curve towards 0.85 of 8000 (fast convergence on every cut).
	k := math.Cbrt(1800 * 0.1 / cubicC)
	cub := 6800 + cubicC*math.Pow(3-k, 3)/0.1
	cubic := [2]float64{cub - 1, cub + 1}
	for _, tc := range []struct {
		kind   cutKind
		link   float64
		before time.Duration // the cut before, this long ago (0: none)
		want   [2]float64    // bwLo 3 s after the cut
	}{
		{cutShared, 8100, 0, aimd},
		{cutLoss, 10000, 0, aimd}, // btlbw clearly below linkBw
		{cutLoss, 8100, 0, cubic},
		{cutLoss, 8100, 15 * time.Second, aimd},
		{cutLoss, 8100, 25 * time.Second, cubic},
		{cutQueue, 8100, 0, aimd}, // for a spell (TestBBRQueueCutSpell)
	} {
		c := NewBBR(newFakeClock())
		ms := int64(time.Millisecond)
		c.state, c.pacingGain = bbrProbeBW, 1
		c.minRTT, c.srtt = 100*ms, 101*ms // no standing queue
		c.bw, c.peakBw, c.linkBw = 8000, 10000, tc.link
		now := 100_000 * ms
		if tc.before > 0 {
			c.lower(now-int64(tc.before), c.bw, c.bw, cutLoss)
			c.bwLo = 0 // lifted since
		}
		c.lower(now, c.bw, c.bw, tc.kind)
		for range 30 {
			now += c.minRTT
			c.growBwLo(now)
		}
		if c.bwLo < tc.want[0] || c.bwLo > tc.want[1] {
			t.Errorf("cut kind %d, link %.0f, cut before %v: bwLo %.0f 3 s after a cut from 8000 to 5000, want %.0f-%.0f",
				tc.kind, tc.link, tc.before, c.bwLo, tc.want[0], tc.want[1])
		}
		if !c.loShared && (tc.link < 10000 && c.bwLo > 0) {
			// A second cut in the same episode: btlbw has fallen to
			// bwLo, below linkBw, but the episode began at the link;
			// the cut comes soon after the first, though.
			c.bw = c.bwLo
			c.lower(now, c.bw, c.bw, cutLoss)
			if !c.loShared {
				t.Errorf("cut kind %d, link %.0f: a second cut 3 s after the first grows as CUBIC", tc.kind, tc.link)
			}
		}
	}
}

// A queue cut alone on a link grows as AIMD for bbrQueueSpell (room for
// a flow that another loss left small, TestBBRSharedCutGrowsAsAIMD), then
// as CUBIC's window past its W_max: 6 s later well above where AIMD
// would be. A second cut within bbrSharedWithin makes it AIMD for good.
func TestBBRQueueCutSpell(t *testing.T) {
	const spell = int64(bbrQueueSpell)
	for _, again := range []bool{false, true} {
		c := NewBBR(newFakeClock())
		ms := int64(time.Millisecond)
		c.state, c.pacingGain = bbrProbeBW, 1
		c.minRTT, c.srtt = 100*ms, 101*ms // no standing queue
		c.bw, c.peakBw, c.linkBw = 8000, 10000, 8100
		now := 100_000 * ms
		c.lower(now, c.bw, c.bw, cutQueue)
		if !c.loShared || !c.queueSpell {
			t.Fatalf("after a queue cut: loShared %v, queueSpell %v; want both", c.loShared, c.queueSpell)
		}
		grow := func(d int64) {
			for end := now + d; now < end; {
				now += c.minRTT
				c.growBwLo(now)
			}
		}
		grow(spell / 2)
		if again {
			c.lower(now, c.bwLo, c.bw, cutQueue)
		}
		grow(spell / 2)
		atSpell := c.bwLo
		grow(6 * int64(time.Second))
		aimd := atSpell + bbrAIMDAlpha*6/(0.1*0.1)
		if again {
			if !c.loShared || c.queueSpell || c.bwLo > aimd+20 {
				t.Errorf("a second queue cut 5 s after the first: loShared %v, queueSpell %v, bwLo %.0f 6 s after the spell, want AIMD (%.0f)",
					c.loShared, c.queueSpell, c.bwLo, aimd)
			}
			continue
		}
		if c.loShared || c.queueSpell {
			t.Errorf("after the spell: loShared %v, queueSpell %v; want neither", c.loShared, c.queueSpell)
		}
		if want := atSpell + 0.8*cubicC*216/0.1; c.bwLo < want {
			t.Errorf("bwLo %.0f 6 s after the spell (%.0f at its end, AIMD would give %.0f), want >= %.0f", c.bwLo, atSpell, aimd, want)
		}
	}
}

// A loss cut under a high queue that drains within bbrDrainRounds as we
// slow is a queue cut (another flow held the queue: beside TCP CUBIC in the
// NAT lab's e, a loss cut first on CUBIC's curve left CUBIC 28-29 Mbit/s):
// bwLo grows as AIMD for the spell. A high queue that stays (jitter, as in
// the lab's impaired path), one that drains too late, or a loss cut without
// a high queue keeps CUBIC's curve.
func TestBBRLossCutDrainedQueueSpell(t *testing.T) {
	ms := int64(time.Millisecond)
	for _, tc := range []struct {
		name  string
		srtt  int64 // at the cut
		after int64 // from round drain on
		drain int64 // minRTTs after the cut when srtt becomes after
		spell bool
	}{
		{"high queue drains", 112 * ms, 100 * ms, 3, true},
		{"high queue drains late", 112 * ms, 100 * ms, bbrDrainRounds + 2, false},
		{"high queue stays", 112 * ms, 112 * ms, 3, false},
		{"standing queue only", 105 * ms, 100 * ms, 3, false},
	} {
		c := NewBBR(newFakeClock())
		c.state, c.pacingGain = bbrProbeBW, 1
		c.minRTT, c.srtt, c.rttVar = 100*ms, tc.srtt, 1*ms
		c.bw, c.peakBw, c.linkBw = 8000, 8000, 8100
		now := 100_000 * ms
		c.standSince = now - 1000*ms
		c.bwRoseAt, c.probeAt, c.probeRTTOut = 1, 1, 1
		c.cut(now, cutLoss)
		if c.bwLo <= 0 || c.loShared {
			t.Fatalf("%s: bwLo %.0f, loShared %v after the cut; want a cut on CUBIC's curve", tc.name, c.bwLo, c.loShared)
		}
		lo := c.bwLo
		for r := int64(1); r <= 20; r++ {
			now += c.minRTT
			if r >= tc.drain {
				c.srtt = tc.after
			}
			c.growBwLo(now)
		}
		if c.queueSpell != tc.spell || c.loShared != tc.spell {
			t.Errorf("%s: queueSpell %v, loShared %v 2 s after the cut; want %v", tc.name, c.queueSpell, c.loShared, tc.spell)
		}
		aimd := lo + bbrAIMDAlpha*2/(0.1*0.1)
		if tc.spell && c.bwLo > aimd+1 {
			t.Errorf("%s: bwLo %.0f 2 s after a cut to %.0f; want AIMD's %.0f", tc.name, c.bwLo, lo, aimd)
		}
	}
}

// Congestion within 16 minRTTs of a rise of btlbw is ours: alone in the
// NAT lab's e, btlbw rose by 2 % during a cruise (a sample a little above
// the link), 0.97 of it filled the 100-packet queue and overflowed it some
// 10 minRTTs later, and that cut as another flow's. Later congestion is
// another flow's.
func TestBBRCongestionAfterRiseIsOurs(t *testing.T) {
	for _, tc := range []struct {
		rounds int64 // minRTTs since btlbw rose
		cut    bool
	}{{10, false}, {20, true}} {
		c := NewBBR(newFakeClock())
		ms := int64(time.Millisecond)
		c.state, c.pacingGain = bbrProbeBW, 1
		c.minRTT, c.srtt = 100*ms, 100*ms
		c.bw, c.peakBw = 8600, 8600
		now := 100_000 * ms
		c.probeAt, c.probeRTTOut = 1, 1
		c.standSince = now - 1000*ms // cruising under a standing queue for a second
		c.bwRoseAt = now - tc.rounds*c.minRTT
		c.cut(now, cutLoss)
		if got := c.bwLo > 0; got != tc.cut || got == (c.selfCuts() == 1) {
			t.Errorf("congestion %d minRTTs after btlbw rose: bwLo %.0f, self-corrections %d; want a cut %v", tc.rounds, c.bwLo, c.selfCuts(), tc.cut)
		}
		if c.selfWhy[selfRose] != c.selfCuts() {
			t.Errorf("self-corrections by reason %v; want all %d for btlbw's rise", c.selfWhy, c.selfCuts())
		}
	}
}

// Congestion while cruising at 0.97 of a btlbw that is still above linkBw
// is ours: in the NAT lab's d (300 Mbit/s, a queue of 4 ms) btlbw sat 5 %
// above the linkBw a self-correction had left, the cruise overflowed the
// queue, and the cut to the fair half cost a tenth of a 1 GiB run. Below
// linkBw, as beside another flow, it is a cut.
func TestBBRCongestionAboveLinkIsOurs(t *testing.T) {
	for _, tc := range []struct {
		bw  float64
		cut bool
	}{{25290, false}, {24000, true}} {
		c := NewBBR(newFakeClock())
		ms := int64(time.Millisecond)
		c.state, c.pacingGain = bbrProbeBW, 1
		c.minRTT, c.srtt = 100*ms, 105*ms
		c.bw, c.peakBw, c.linkBw = tc.bw, 25600, 24066
		now := 100_000 * ms
		c.probeAt, c.probeRTTOut, c.bwRoseAt = 1, 1, 1
		c.standSince = now - 1000*ms // cruising under a standing queue for a second
		c.cut(now, cutLoss)
		if got := c.bwLo > 0; got != tc.cut || got == (c.selfCuts() == 1) {
			t.Errorf("congestion at btlbw %.0f, linkBw 24066: bwLo %.0f, self-corrections %d; want a cut %v", tc.bw, c.bwLo, c.selfCuts(), tc.cut)
		}
		if c.selfWhy[selfAboveLink] != c.selfCuts() {
			t.Errorf("self-corrections by reason %v; want all %d for pacing above linkBw", c.selfWhy, c.selfCuts())
		}
		if !tc.cut && c.linkBw > tc.bw {
			t.Errorf("self-correction at btlbw %.0f left linkBw %.0f above it", tc.bw, c.linkBw)
		}
	}
}

// At a short RTT bwLo grows at least as CUBIC's Reno-friendly estimate
// (RFC 9438 §4.3), half a packet per RTT: the cubic curve's clock is in
// seconds, and on loopback (minRTT 0.1 ms, the receiver's CPU the
// bottleneck) a cut at 150 000 packets/s took K = 2.2 s to grow back,
// longer than a whole GiB took, so one early cut decided the run's rate.
func TestBBRBwLoRenoFriendlyAtShortRTT(t *testing.T) {
	c := NewBBR(newFakeClock())
	us := int64(time.Microsecond)
	c.state, c.pacingGain = bbrProbeBW, 1
	c.minRTT, c.srtt = 100*us, 110*us // no standing queue
	c.bw, c.peakBw = 150_000, 150_000
	now := int64(100 * time.Second)
	c.lower(now, c.bw, c.bw, cutLoss)
	if c.bwLo <= 0 || c.loShared {
		t.Fatalf("rig: bwLo %.0f, shared %v; want a CUBIC-shaped cut", c.bwLo, c.loShared)
	}
	start := now
	for now-start < int64(100*time.Millisecond) && c.bwLo > 0 {
		now += c.minRTT
		c.growBwLo(now)
	}
	if c.bwLo > 0 {
		t.Errorf("bwLo %.0f packets/s 100 ms (1000 RTTs) after a cut from 150000; want it back at btlbw and lifted", c.bwLo)
	}
	// At 100 ms the estimate adds 53 packets/s a second, the cubic curve
	// far more: the shape there is CUBIC's alone, as before.
	c = NewBBR(newFakeClock())
	ms := int64(time.Millisecond)
	c.state, c.pacingGain = bbrProbeBW, 1
	c.minRTT, c.srtt = 100*ms, 101*ms
	c.bw, c.peakBw = 8000, 8000
	c.lower(now, c.bw, c.bw, cutLoss)
	for range 10 {
		now += c.minRTT
		c.growBwLo(now)
	}
	k := math.Cbrt(2800 * 0.1 / cubicC)
	if want := 6800 + cubicC*math.Pow(1-k, 3)/0.1; math.Abs(c.bwLo-want) > 1 {
		t.Errorf("100 ms RTT: bwLo %.0f 1 s after a cut from 8000 to 4000; want CUBIC's %.0f (towards 6800)", c.bwLo, want)
	}
}

// After an up-phase that overflowed the queue, the next comes 6-9 s later,
// not 2-3 s: in the NAT lab's e each probe into the queue cost TCP CUBIC
// beside us a cut, and it needs seconds to grow back (CUBIC's median
// 16.4 Mbit/s with 2-3 s, 20.7 with 6-9 s; alone 95.4 and 95.7).
func TestBBRProbeWaitAfterOverflow(t *testing.T) {
	for seed := range int32(8) {
		c := NewBBR(newFakeClock())
		ms := int64(time.Millisecond)
		c.rng = uint64(seed)<<32 | 0x9e3779b9
		c.state, c.cycleIdx = bbrProbeBW, 0
		c.minRTT, c.srtt = 100*ms, 101*ms
		c.bw, c.peakBw = 1000, 1000
		c.npRounds = bbrBgRounds
		now := 100_000 * ms
		c.startProbe(now)
		c.cycleStart = now
		c.pacingGain = bbrGainCycle[0]
		c.probeSent = 400
		for range 20 {
			c.probeLoss(&bbrRecord{inflight: 130})
		}
		if !c.probeHit {
			t.Fatalf("seed %d: rig: the probe's losses did not count", seed)
		}
		start := now
		for now-start < 20_000*ms {
			now += 10 * ms
			if c.advanceCycle(now) && c.cycleIdx == 0 {
				break
			}
		}
		if gap := time.Duration(now - start); gap < 6*time.Second || gap > 9*time.Second+200*time.Millisecond {
			t.Errorf("seed %d: next up-phase %v after one that overflowed the queue; want 6-9 s", seed, gap)
		}
	}
}

// A standing queue while the sender lags behind its own pacing is the
// hosts' delay, not another flow's queue. Alone in the NAT lab's e, a
// busy host held the sender at 64-91 % of its pacing rate while the
// smoothed RTT rose by up to 25 ms (more than the path's queue of 12 ms
// can hold), and the queue cut that followed halved the rate for the
// rest of the minute. Beside TCP CUBIC the sender kept pace.
func TestBBRBusyHostQueueIsNotCongestion(t *testing.T) {
	for _, busy := range []bool{false, true} {
		p := newBBRPipe(t, 1000, 85, 100*time.Millisecond)
		p.run(30 * time.Second)
		if p.c.state != bbrProbeBW || p.c.npRounds < bbrBgRounds || p.c.bwLo > 0 {
			t.Fatalf("rig: state %v, %d background rounds, bwLo %.0f", p.c.state, p.c.npRounds, p.c.bwLo)
		}
		// An up-phase overflowed the queue: the next is seconds away,
		// and the cruise before it long enough to tell another flow's
		// queue.
		p.c.probeHit, p.c.probeWait = true, int64(20*time.Second)
		// The RTT rises by 12 ms and stays there. The sender sends what
		// its pacing allows each 10 ms tick; a busy host only 60 % of
		// it every other tick.
		p.rtt = func() time.Duration { return 112 * time.Millisecond }
		lags := p.c.hostLags
		for i := range 300 {
			paced := float64(syn) / float64(p.c.PacketInterval()) * bbrPairFactor
			if busy && i%2 == 0 {
				paced *= 0.6
			}
			p.perTick = int(paced + 0.5)
			p.tick()
		}
		lags = p.c.hostLags - lags
		if busy && (p.c.queueCuts != 0 || lags == 0) {
			t.Errorf("sender lagging its pacing: %d queue cuts, %d lagging windows; want none and some", p.c.queueCuts, lags)
		}
		if !busy && (p.c.queueCuts == 0 || lags != 0) {
			t.Errorf("sender keeping pace: %d queue cuts, %d lagging windows; want a cut and none", p.c.queueCuts, lags)
		}
	}
}

// On a link already found shared (bwLo set by a shared cut), a paced flow
// loses only a packet or so when the queue beside a bursty TCP flow
// overflows: one loss beyond the background, while the queue is high, is
// a cut. Elsewhere the bar stays at two losses and four deviations, and
// random loss at a shared link's rate does not pass the lower one.
func TestBBRSharedOverflowLossCuts(t *testing.T) {
	ms := int64(time.Millisecond)
	for _, tc := range []struct {
		name   string
		shared bool    // bwLo is set by a shared cut
		srtt   int64   // smoothed RTT; minRTT is 100 ms
		bg     float64 // background loss per packet
		lost   int     // losses this round
		want   bool    // a cut
	}{
		{"shared, one loss at a high queue", true, 112 * ms, 0, 1, true},
		{"shared, one loss at a low queue", true, 106 * ms, 0, 1, false},
		{"not shared, one loss at a high queue", false, 112 * ms, 0, 1, false},
		{"not shared, two losses at a high queue", false, 112 * ms, 0, 2, false},
		{"not shared, five losses at a high queue", false, 112 * ms, 0, 5, true},
		{"shared, random loss of 1 %", true, 112 * ms, 0.01, 9, false},
		{"shared, random loss of 1 % and 13 more", true, 112 * ms, 0.01, 21, true},
	} {
		c := NewBBR(newFakeClock())
		c.state, c.pacingGain = bbrProbeBW, 1
		c.minRTT, c.srtt, c.rttVar = 100*ms, tc.srtt, 1*ms
		c.bw, c.peakBw, c.linkBw = 8000, 8300, 8300
		now := 100_000 * ms
		if tc.shared {
			c.lower(now-int64(20*time.Second), c.bw, c.bw, cutShared)
		}
		c.npRounds, c.npBg, c.npSent, c.npPrev = bbrBgRounds, tc.bg, 800, 800
		c.standSince = now - 10*c.minRTT // a cruise under a queue: not ours
		c.cutAt = now - int64(10*time.Second)
		cuts := c.cuts
		for range tc.lost {
			c.congestionLoss(now)
		}
		if got := c.cuts > cuts; got != tc.want {
			t.Errorf("%s: cut %v, want %v", tc.name, got, tc.want)
		}
	}
}

// While cruising under a standing queue, a receive rate above btlbw is the
// figures' noise (we sent no faster than btlbw, and the link is full) and
// does not raise it; an up-phase's does.
func TestBBRCruiseSamplesDoNotRaiseBw(t *testing.T) {
	p := newBBRPipe(t, isn, 80, 100*time.Millisecond) // 8000 packets/s
	p.run(5 * time.Second)
	c := p.c
	cruising := func() bool { return c.state == bbrProbeBW && c.pacingGain == 1 && c.cycleIdx >= 2 }
	for i := 0; !cruising(); i++ {
		if i > 2000 {
			t.Fatalf("not cruising after 20 s more: state %v, gain %v, phase %d", c.state, c.pacingGain, c.cycleIdx)
		}
		p.tick()
	}
	p.rtt = func() time.Duration { return 108 * time.Millisecond } // a standing queue
	for range 5 {
		p.tick()
	}
	if !cruising() || !c.standingQueue() {
		t.Fatalf("cruising %v, standing queue %v; want both", cruising(), c.standingQueue())
	}
	before := c.bw
	p.snap.RecvRate = 1.04 * before
	for i := 0; cruising(); i++ {
		if i > 2000 {
			t.Fatal("no up-phase within 20 s")
		}
		p.tick()
		if c.bw > before {
			t.Fatalf("btlbw rose from %.0f to %.0f while cruising", before, c.bw)
		}
	}
	for range 30 { // the up-phase and the phase after it, when its packets arrive
		p.tick()
	}
	if c.bw < 1.03*before {
		t.Errorf("btlbw %.0f after an up-phase that saw %.0f, want it raised from %.0f", c.bw, p.snap.RecvRate, before)
	}
}
