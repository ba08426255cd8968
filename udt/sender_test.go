package udt

import (
	"bytes"
	"testing"

	"github.com/p2pcat/p2pcat/udt/cc"
	"github.com/p2pcat/p2pcat/udt/internal/seqno"
)

// sendLoop hands the socket slices of the send buffer itself, outside the
// lock. An ACK that arrives meanwhile frees those slots; fill must leave
// them alone until the batch is out, or the socket would send new bytes
// under old headers.
func TestFillKeepsPinnedSlots(t *testing.T) {
	const size, payload = 8, 4
	var s sender
	s.init(100, size, payload, size, payload+44, cc.NewNative(cc.SystemClock{}))
	s.now = func() int64 { return 0 }
	s.peerReady = true
	first := bytes.Repeat([]byte{'a'}, size*payload)
	if n := s.fill(first); n != len(first) {
		t.Fatalf("fill took %d of %d bytes into an empty buffer", n, len(first))
	}
	// sendLoop takes every packet into one batch, as it does under the lock.
	var batch [][]byte
	for {
		seq, _, ok := s.next()
		if !ok {
			break
		}
		p := s.pos(seq)
		if len(batch) == 0 {
			s.pin, s.pinned = seq, true
		}
		batch = append(batch, s.payloadAt(p)[:s.lens[p]])
	}
	if len(batch) != size {
		t.Fatalf("batch of %d packets, want %d", len(batch), size)
	}
	// The receiver acknowledges half of them while the batch is written.
	if n := s.acknowledge(seqno.Add(100, size/2)); n != size/2 {
		t.Fatalf("acknowledge freed %d slots, want %d", n, size/2)
	}
	if n := s.fill(bytes.Repeat([]byte{'b'}, payload)); n != 0 {
		t.Fatalf("fill reused %d bytes of a batch still being written", n)
	}
	for i, b := range batch {
		if !bytes.Equal(b, first[:payload]) {
			t.Fatalf("packet %d of the batch now holds %q", i, b)
		}
	}
	// Once the batch is out, the freed slots are fill's again.
	s.pinned = false
	if n := s.fill(bytes.Repeat([]byte{'b'}, size*payload)); n != size/2*payload {
		t.Fatalf("fill took %d bytes after the batch, want %d", n, size/2*payload)
	}
}
