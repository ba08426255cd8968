package main

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/p2pcat/p2pcat/stream"
	"github.com/p2pcat/p2pcat/udt"
)

// A writer that finds the connection closed reports why the peer closed
// it when the peer said so first (a stop after `| head`, an abort): in CI
// the writer's "peer closed" once won that race and the sender exited 4
// instead of 5 (testdata/script/stopped.txtar).
func TestPeerReason(t *testing.T) {
	closed := fmt.Errorf("write: %w", udt.ErrPeerClosed)
	abort := &stream.AbortError{Reason: stream.ReasonWriteError, Message: "disk full"}
	for _, tc := range []struct {
		name   string
		writer error
		reader error
		want   error
	}{
		{"stop", closed, stream.ErrPeerStopped, stream.ErrPeerStopped},
		{"abort", closed, abort, abort},
		{"plain close", closed, &stream.CutError{Err: io.ErrUnexpectedEOF}, nil},
		{"not a close", errors.New("no route"), stream.ErrPeerStopped, nil},
	} {
		in := make(chan error, 1)
		in <- tc.reader
		if got := peerReason(in, tc.writer); got != tc.want {
			t.Errorf("%s: peerReason = %v, want %v", tc.name, got, tc.want)
		}
	}
	in := make(chan error, 1)
	in <- stream.ErrPeerStopped
	if got := exitCode(&options{}, 5, peerReason(in, closed)); got != exitStopped {
		t.Errorf("exit status %d for a stop that came before the close, want %d", got, exitStopped)
	}
}
