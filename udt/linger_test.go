package udt

import (
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/udt/internal/seqno"
)

// TestLingerWaitsForFullACK: Close must not send Shutdown on a light ACK.
// A libudt receiver makes data readable only when it sends a full ACK and,
// once packets stop arriving, sends that ACK up to 100 ms later; a
// Shutdown that arrives first leaves the tail unreadable while both sides
// report success (seen through a lossy relay: 6 MB of 64 MiB cut off).
func TestLingerWaitsForFullACK(t *testing.T) {
	for _, isn := range []int32{0, seqno.Max - 40} {
		r := newExpRig(t, isn, 256)
		r.c.cfg.Linger = 60 * time.Millisecond
		r.send(100)

		r.s.onLightACK(r.seq(100))
		if q, u := r.s.queued(), r.s.undelivered(); q != 0 || u != 100 {
			t.Fatalf("isn %d: after a light ACK of everything: queued %d undelivered %d, want 0 and 100", isn, q, u)
		}
		if err := r.c.linger(); err == nil {
			t.Fatalf("isn %d: linger returned nil with only a light ACK covering the data", isn)
		}

		// A full ACK of part of it, then of all of it while linger waits.
		r.ack(60)
		if u := r.s.undelivered(); u != 40 {
			t.Fatalf("isn %d: after a full ACK of 60: undelivered %d, want 40", isn, u)
		}
		r.c.cfg.Linger = 5 * time.Second
		done := make(chan error, 1)
		go func() { done <- r.c.linger() }()
		time.Sleep(10 * time.Millisecond)
		r.s.mu.Lock()
		r.ack(100)
		r.s.mu.Unlock()
		notify(r.s.space)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("isn %d: linger after the full ACK: %v", isn, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("isn %d: linger still waiting 2 s after a full ACK of everything", isn)
		}
	}
}
