package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/p2pcat/p2pcat/stream"
	"github.com/p2pcat/p2pcat/udt"
)

// pipeStreams runs p2pcat's two-way stream over rw (the secured
// connection): our stdin out (send, cat), the peer's stream to our stdout
// (recv, cat). Each direction ends on its own; recv ends its (empty)
// direction only once everything arrived, which is the sender's receipt.
// It returns the exit status.
func pipeStreams(ctx context.Context, opts *options, conn *udt.Conn, rw io.ReadWriter) int {
	sw := stream.NewWriter(rw, opts.compress)
	sr := stream.NewReader(rw)
	if err := sw.Start(); err != nil {
		return exitCode(opts, 0, err)
	}
	sending := opts.mode == "send" || opts.mode == "cat"
	var out io.Writer = io.Discard
	if opts.mode != "send" {
		out = os.Stdout
	}
	inDone := make(chan error, 1)
	go func() {
		_, err := sr.WriteTo(out)
		inDone <- err
	}()
	outDone := make(chan error, 1)
	if sending {
		go func() {
			_, err := sw.ReadFrom(os.Stdin)
			if err == nil {
				err = sw.End()
			}
			outDone <- err
		}()
	}
	var activity atomic.Int64
	stopProgress := startProgress(opts, sw, sr, &activity)
	stopTrace := startTrace(conn)
	defer stopTrace()
	defer stopProgress()
	var idle <-chan time.Time
	if opts.idle > 0 {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		idle = t.C
	}
	start := time.Now()
	lastMoved, lastTotal := time.Now(), int64(-1)
	inOK, outOK := false, !sending
	finish := func(code int) int {
		if code == exitOK {
			closeErr := conn.Close()
			if closeErr != nil && !errors.Is(closeErr, udt.ErrPeerClosed) {
				errorf("closing: %v", closeErr)
				code = exitCut
			}
		} else {
			closeSoon(conn)
		}
		report(opts, conn, sw, sr, time.Since(start))
		return code
	}
	for !(inOK && outOK) {
		select {
		case err := <-inDone:
			var oerr *stream.OutputError
			switch {
			case err == nil:
				inOK = true
				if !sending {
					// Our receipt: everything arrived.
					if err := sw.End(); err != nil {
						return finish(exitCode(opts, sr.Total.Load(), err))
					}
					outOK = true
				}
			case errors.Is(err, stream.ErrPeerStopped):
				errorf("the peer stopped reading after %d bytes", sw.Total.Load())
				return finish(exitStopped)
			case errors.As(err, &oerr) && errors.Is(err, syscall.EPIPE):
				// Our reader went away (| head): tell the sender, end
				// quietly.
				sw.Stop(stream.ReasonReaderGone)
				conn.Close()
				return exitOK
			case errors.As(err, &oerr):
				sw.Abort(stream.ReasonWriteError, oerr.Err.Error())
				errorf("%v (after %d bytes); the peer was told", oerr, sr.Total.Load())
				return finish(exitError)
			default:
				return finish(exitCode(opts, sr.Total.Load(), err))
			}
		case err := <-outDone:
			switch {
			case err == nil:
				outOK = true
			case stream.InputError(err):
				errorf("cannot read input after %d bytes: %v; the peer was told", sw.Total.Load(), errors.Unwrap(err))
				return finish(exitError)
			default:
				if why := peerReason(inDone, err); why != nil {
					err = why
				}
				return finish(exitCode(opts, sw.Total.Load(), err))
			}
		case <-idle:
			if total := sw.Total.Load() + sr.Total.Load(); total != lastTotal {
				lastMoved, lastTotal = time.Now(), total
			} else if time.Since(lastMoved) >= opts.idle {
				sw.Abort(stream.ReasonIdle, "idle timeout")
				errorf("idle for %v: giving up (-w)", opts.idle)
				return finish(exitCut)
			}
		case <-ctx.Done():
			sw.Abort(stream.ReasonInterrupted, "interrupted")
			errorf("interrupted")
			finish(exitInterrupted)
			return exitInterrupted
		}
	}
	return finish(exitOK)
}

// peerReasonWait bounds how long a writer that found the connection closed
// waits for the reason the peer sent before it closed.
const peerReasonWait = 2 * time.Second

// peerReason: when the peer closed the connection under our writer, the
// records it sent first (a stop, an abort) may still be on their way to
// our reader; it returns the error they make (nil if none came). Without
// it a receiver's `| head` raced: its stop record, then its close, and
// our writer's error could win and report a lost connection (exit 4)
// instead of a peer that stopped reading (exit 5).
func peerReason(inDone <-chan error, err error) error {
	if !errors.Is(err, udt.ErrPeerClosed) {
		return nil
	}
	select {
	case ierr := <-inDone:
		var abort *stream.AbortError
		if errors.Is(ierr, stream.ErrPeerStopped) || errors.As(ierr, &abort) {
			return ierr
		}
	case <-time.After(peerReasonWait):
	}
	return nil
}

// closeSoon closes the connection, giving queued control records (abort,
// stop) a moment to reach the peer.
func closeSoon(conn *udt.Conn) {
	done := make(chan struct{})
	go func() { conn.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		conn.Abort()
	}
}

func report(opts *options, conn *udt.Conn, sw *stream.Writer, sr *stream.Reader, elapsed time.Duration) {
	if !opts.verbose {
		return
	}
	st := conn.Stats()
	secs := elapsed.Seconds()
	if n := sw.Total.Load(); n > 0 || opts.mode == "send" {
		ratio := ""
		if opts.compress > 0 && st.PayloadSent > 0 {
			ratio = fmt.Sprintf(", %.2fx compression", float64(n)/float64(st.PayloadSent))
		}
		verbosef(opts, "sent %d bytes in %.3fs (%.1f MB/s); %d bytes on the wire%s", n, secs, float64(n)/secs/1e6, st.PayloadSent, ratio)
	}
	if n := sr.Total.Load(); n > 0 || opts.mode == "recv" {
		verbosef(opts, "received %d bytes in %.3fs (%.1f MB/s); %d bytes on the wire", n, secs, float64(n)/secs/1e6, st.PayloadReceived)
	}
}

// startProgress prints bytes, rate and elapsed time to stderr: one
// updating line on a terminal, a line every 5 s otherwise.
func startProgress(opts *options, sw *stream.Writer, sr *stream.Reader, _ *atomic.Int64) func() {
	if !opts.progress {
		return func() {}
	}
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	every := 5 * time.Second
	if tty {
		every = time.Second
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		var last int64
		for {
			final := false
			select {
			case <-t.C:
			case <-stop:
				final = true
			}
			n := sw.Total.Load() + sr.Total.Load()
			el := time.Since(start)
			rate := float64(n-last) / every.Seconds() / 1e6
			if final {
				rate = float64(n) / el.Seconds() / 1e6
			}
			last = n
			line := fmt.Sprintf("p2pcat: %s, %.1f MB/s, %s", humanBytes(n), rate, el.Round(time.Second))
			if tty {
				fmt.Fprintf(os.Stderr, "\r\x1b[K%s", line)
				if final {
					fmt.Fprintln(os.Stderr)
				}
			} else {
				fmt.Fprintln(os.Stderr, line)
			}
			if final {
				return
			}
		}
	}()
	return func() { close(stop); <-done }
}

func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// traceLogf returns the UDT engine's debug log (connection, timeouts)
// for P2PCAT_TRACE, nil without it.
func traceLogf() func(string, ...any) {
	if os.Getenv("P2PCAT_TRACE") == "" {
		return nil
	}
	start := time.Now()
	return func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "p2pcat: trace %6.1fs %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
}

// startTrace prints the connection's transport state to stderr every
// 500 ms when P2PCAT_TRACE is set, or at the period it names if it is a
// duration of at least 1 ms ("20ms": a diagnostic, see ENVIRONMENT in the
// manual page).
func startTrace(conn *udt.Conn) func() {
	v := os.Getenv("P2PCAT_TRACE")
	if v == "" {
		return func() {}
	}
	period := 500 * time.Millisecond
	if d, err := time.ParseDuration(v); err == nil && d >= time.Millisecond {
		period = d
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		t := time.NewTicker(period)
		defer t.Stop()
		var last udt.Stats
		for {
			select {
			case <-t.C:
			case <-stop:
				return
			}
			st := conn.Stats()
			fmt.Fprintf(os.Stderr, "p2pcat: trace %7.3fs sent %d retx %d recv %d dup %d nak %d/%d head %d rtt %v win %.0f iv %v inflight %d losses %d cap %.0f %s\n",
				time.Since(start).Seconds(), st.PacketsSent-last.PacketsSent, st.PacketsRetransmitted-last.PacketsRetransmitted,
				st.PacketsReceived-last.PacketsReceived, st.PacketsDuplicate-last.PacketsDuplicate,
				st.NAKsSent-last.NAKsSent, st.NAKsReceived-last.NAKsReceived, st.HeadRepairs-last.HeadRepairs,
				st.RTT.Round(100*time.Microsecond), st.Window, st.PacketInterval.Round(time.Microsecond), st.InFlight, st.Losses, st.LinkCapacity, st.Controller)
			last = st
		}
	}()
	return func() { close(stop); <-done }
}
