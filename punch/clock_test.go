package punch

import (
	"context"
	"testing"
	"time"
)

func TestNextSlot(t *testing.T) {
	base := time.Unix(1_700_000_000, 0) // a multiple of 10 s
	cases := []struct {
		now        time.Duration
		slot, lead time.Duration
		want       time.Duration
	}{
		{0, 10 * time.Second, 2 * time.Second, 10 * time.Second},
		{7 * time.Second, 10 * time.Second, 2 * time.Second, 10 * time.Second},
		{8*time.Second + 1, 10 * time.Second, 2 * time.Second, 20 * time.Second},
		{8 * time.Second, 10 * time.Second, 2 * time.Second, 10 * time.Second},
		{3 * time.Second, 0, 2 * time.Second, 3 * time.Second},
		{3 * time.Second, 5 * time.Second, 0, 5 * time.Second},
	}
	for _, c := range cases {
		got := NextSlot(base.Add(c.now), c.slot, c.lead).Sub(base)
		if got != c.want {
			t.Errorf("NextSlot(+%v, %v, %v) = +%v, want +%v", c.now, c.slot, c.lead, got, c.want)
		}
	}
}

// Two peers whose clocks differ by up to 3 s, deciding within the same
// second, land on the same slot or neighbouring ones, never further apart.
func TestNextSlotSkew(t *testing.T) {
	base := time.Unix(1_700_000_000, 0)
	for ms := 0; ms < 10_000; ms += 137 {
		for _, skew := range []time.Duration{-3 * time.Second, 0, 3 * time.Second} {
			a := NextSlot(base.Add(time.Duration(ms)*time.Millisecond), 10*time.Second, 2*time.Second)
			b := NextSlot(base.Add(time.Duration(ms)*time.Millisecond+skew), 10*time.Second, 2*time.Second)
			if d := a.Sub(b); d > 10*time.Second || d < -10*time.Second {
				t.Fatalf("slots %v apart", d)
			}
		}
	}
}

func TestMedian(t *testing.T) {
	if m := median([]time.Duration{5, 1, 100, 3, 2}); m != 3 {
		t.Fatalf("median = %v", m)
	}
	if m := median([]time.Duration{1, 3}); m != 2 {
		t.Fatalf("median = %v", m)
	}
}

// An unreachable server (a closed loopback port) gives ErrNoNTP quickly.
func TestClockOffsetNoServer(t *testing.T) {
	start := time.Now()
	_, n, err := ClockOffset(context.Background(), []string{"127.0.0.1:9"}, 300*time.Millisecond)
	if err == nil || n != 0 {
		t.Fatalf("err = %v, n = %d", err, n)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
}
