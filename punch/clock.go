package punch

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/beevik/ntp"
)

// DefaultNTPServers are public NTP servers for real users; tests never use
// them.
var DefaultNTPServers = []string{"pool.ntp.org", "time.google.com", "time.cloudflare.com"}

// ErrNoNTP means no NTP server gave a usable answer.
var ErrNoNTP = errors.New("no NTP server answered")

// ClockOffset asks the servers in parallel (each within timeout) and
// returns how far the local clock is behind internet time (add it to
// time.Now), combined robustly as the median of the valid answers, and how
// many servers answered.
func ClockOffset(ctx context.Context, servers []string, timeout time.Duration) (time.Duration, int, error) {
	var (
		mu      sync.Mutex
		offsets []time.Duration
		wg      sync.WaitGroup
	)
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := ntp.QueryWithOptions(s, ntp.QueryOptions{Timeout: timeout})
			if err != nil || r.Validate() != nil {
				return
			}
			mu.Lock()
			offsets = append(offsets, r.ClockOffset)
			mu.Unlock()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	if len(offsets) == 0 {
		return 0, 0, ErrNoNTP
	}
	return median(offsets), len(offsets), nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// NextSlot returns the first multiple of slot (counted from the Unix
// epoch) that is at least lead after now. slot <= 0 means "now".
func NextSlot(now time.Time, slot, lead time.Duration) time.Time {
	if slot <= 0 {
		return now
	}
	t := now.Add(lead)
	ns := t.UnixNano()
	s := ns - ns%int64(slot)
	if s < ns {
		s += int64(slot)
	}
	return time.Unix(0, s)
}
