package udt

import (
	"context"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/internal/memlink"
)

// With Config.PeerTakesEarlyData the side of a rendezvous that connects
// first (on the peer's -1) sends at once; without it, it waits for a
// first packet from the connected peer, a round trip later. Our receiver
// keeps that early data either way. The link has 100 ms each way and B
// starts 50 ms after A, so A connects first.
func TestEarlyData(t *testing.T) {
	const delay = 100 * time.Millisecond
	for _, early := range []bool{false, true} {
		pa, pb := memlink.Pair(memlink.Config{Delay: delay}, memlink.Config{Delay: delay})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cfg := &Config{PeerTakesEarlyData: early}
		type res struct {
			c   *Conn
			err error
		}
		bc := make(chan res, 1)
		go func() {
			time.Sleep(delay / 2)
			c, err := Rendezvous(ctx, pb, pa.LocalAddr(), cfg)
			bc <- res{c, err}
		}()
		a, err := Rendezvous(ctx, pa, pb.LocalAddr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		connected := time.Now()
		if _, err := a.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		r := <-bc
		if r.err != nil {
			t.Fatal(r.err)
		}
		var buf [1]byte
		if _, err := r.c.Read(buf[:]); err != nil || buf[0] != 'x' {
			t.Fatalf("read %q, %v", buf[:], err)
		}
		took := time.Since(connected)
		t.Logf("PeerTakesEarlyData %v: first byte %v after A connected", early, took.Round(time.Millisecond))
		// Early: one way (100 ms). Late: A waits for B's keep-alive, sent
		// when B connects on A's -1 (150 ms after A connected), then one
		// way: 250 ms.
		if early && took > delay+delay*3/4 {
			t.Errorf("with early data the first byte took %v, want about %v", took, delay)
		}
		if !early && took < 2*delay {
			t.Errorf("without early data the first byte took only %v: the sender did not wait for the peer", took)
		}
		a.Close()
		r.c.Close()
		cancel()
		closeLink(pa, pb)
	}
}
