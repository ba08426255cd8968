package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"syscall"

	"github.com/p2pcat/p2pcat/stream"
	"github.com/p2pcat/p2pcat/udt"
)

// This file owns standard error and exit statuses. Messages are one line,
// lowercase: "p2pcat: error: …", "p2pcat: warning: …", "p2pcat: hint: …".
// Standard output carries data only.

// Exit statuses (kept in step with usage, README.md and man/p2pcat.1).
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitConnect     = 3
	exitCut         = 4
	exitStopped     = 5
	exitAuth        = 6
	exitInterrupted = 130
)

func errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "p2pcat: error: "+format+"\n", args...)
}

func warningf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "p2pcat: warning: "+format+"\n", args...)
}

func hintf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "p2pcat: hint: "+format+"\n", args...)
}

// infof reports progress the user needs (token, NAT type, slots); it is
// not an error and not only for -v.
func infof(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "p2pcat: "+format+"\n", args...)
}

func verbosef(opts *options, format string, args ...any) {
	if opts.verbose {
		fmt.Fprintf(os.Stderr, "p2pcat: "+format+"\n", args...)
	}
}

// exitCode reports the outcome of a transfer of n bytes and returns its
// exit status.
func exitCode(opts *options, n int64, err error) int {
	var cut *stream.CutError
	var abort *stream.AbortError
	switch {
	case err == nil:
		return exitOK
	// Authentication and integrity first: a tampered record also ends
	// the stream, but "cut" would hide what happened.
	case errors.Is(err, stream.ErrAuth):
		errorf("authentication failed: %v", err)
		hintf("check that each side was given the other's token exactly as printed")
		return exitAuth
	case errors.Is(err, stream.ErrIntegrity):
		errorf("integrity check failed after %d bytes: %v", n, err)
		return exitAuth
	case errors.As(err, &abort):
		errorf("peer aborted the stream after %d bytes: %s", abort.Bytes, abort.Message)
		return exitCut
	case errors.As(err, &cut):
		errorf("stream cut after %d bytes: %v", cut.Bytes, describe(cut.Err))
		return exitCut
	case errors.Is(err, stream.ErrPeerStopped):
		errorf("the peer stopped reading after %d bytes", n)
		return exitStopped
	case errors.Is(err, stream.ErrNotP2pcat):
		errorf("%v", err)
		return exitError
	case errors.Is(err, udt.ErrPeerTimeout), errors.Is(err, udt.ErrPeerClosed), errors.Is(err, io.ErrUnexpectedEOF):
		errorf("connection lost after %d bytes: %v", n, describe(err))
		return exitCut
	case errors.Is(err, syscall.EPIPE):
		errorf("output closed after %d bytes", n)
		return exitError
	default:
		errorf("after %d bytes: %v", n, err)
		return exitError
	}
}

func describe(err error) string {
	switch {
	case errors.Is(err, udt.ErrPeerTimeout):
		return "the peer stopped answering"
	case errors.Is(err, udt.ErrPeerClosed), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the peer closed the connection before the end of the stream"
	}
	return err.Error()
}

// version is the module version when built with go install, else "devel"
// plus the VCS revision if known.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}
