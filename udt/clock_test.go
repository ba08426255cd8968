package udt

import (
	"bytes"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/internal/memlink"
	"github.com/p2pcat/p2pcat/udt/cc"
)

// clockSpy wraps a controller and records, per packet sent, the time
// the controller's clock told it and the batch the packet left in (a
// batch: packets sent with no other controller event in between).
type clockSpy struct {
	cc.Controller
	clk cc.Clock

	mu      sync.Mutex
	batches [][]time.Time
	inBatch bool
	acks    []time.Time
}

func (s *clockSpy) OnSent(seq int32, n int, retrans bool, snap *cc.Snapshot) {
	s.mu.Lock()
	if !s.inBatch {
		s.batches = append(s.batches, nil)
		s.inBatch = true
	}
	b := &s.batches[len(s.batches)-1]
	*b = append(*b, s.clk.Now())
	s.mu.Unlock()
	s.Controller.OnSent(seq, n, retrans, snap)
}

func (s *clockSpy) OnACK(ack int32, snap *cc.Snapshot) {
	s.mu.Lock()
	s.inBatch = false
	s.acks = append(s.acks, s.clk.Now())
	s.mu.Unlock()
	s.Controller.OnACK(ack, snap)
}

// PacketInterval marks the start of each of sendLoop's batches: it asks
// for the pacing interval first.
func (s *clockSpy) PacketInterval() time.Duration {
	s.mu.Lock()
	s.inBatch = false
	s.mu.Unlock()
	return s.Controller.PacketInterval()
}

// The controller's clock stands still while sendLoop hands out a batch
// (its packets share one sentAt), and runs between batches and for the
// other events.
func TestControllerClockPerBatch(t *testing.T) {
	spy := new(clockSpy)
	cfgA := &Config{CC: func(clk cc.Clock) cc.Controller {
		spy.clk, spy.Controller = clk, cc.NewBBR(clk)
		return spy
	}}
	a, b, _, _ := pairOver(t, memlink.Config{}, memlink.Config{}, false, cfgA, nil)
	want := testData(2 << 20)
	go func() {
		a.Write(want)
		a.Close()
	}()
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadAll: %d bytes, %v", len(got), err)
	}
	spy.mu.Lock()
	defer spy.mu.Unlock()
	multi, distinct := 0, map[time.Time]bool{}
	for i, batch := range spy.batches {
		for _, at := range batch {
			if !at.Equal(batch[0]) {
				t.Fatalf("batch %d: the clock moved from %v to %v within it", i, batch[0], at)
			}
		}
		if len(batch) > 1 {
			multi++
		}
		distinct[batch[0]] = true
	}
	if multi == 0 || len(distinct) < 2 {
		t.Fatalf("%d batches of more than one packet, %d distinct instants: nothing to check", multi, len(distinct))
	}
	if len(spy.acks) < 2 || !spy.acks[len(spy.acks)-1].After(spy.acks[0]) {
		t.Fatalf("the clock did not run for ACKs: %v", spy.acks)
	}
}
