//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/p2pcat/p2pcat/punch"
)

// The prompt for the peer's token, as the user sees it on the terminal.
const (
	ptyPrompt = "p2pcat: paste your peer's token: "
	ptyRetry  = "p2pcat: that does not look right: "
)

// TestPtyPrompt runs `p2pcat send` with no PEER the way a user does:
// its controlling terminal is a pseudo-terminal, its standard input a
// pipe carrying the data. The peer's token is typed at the prompt on the
// terminal; the data must arrive intact, and the prompt must show on the
// terminal only (never on stdout, which is the data's, nor on stderr).
func TestPtyPrompt(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if m, s, err := pty.Open(); err != nil {
		t.Skipf("cannot open a pseudo-terminal: %v", err)
	} else {
		m.Close()
		s.Close()
	}
	data := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{'p', 't', 'y'}).Read(data)
	want := sha256.Sum256(data)

	// transfer pairs a receiver (@A.tok) with a sender prompting on a
	// pty, and types lines at the prompt ending with enter: first one
	// per mangle, built from B's token and expected to be asked again
	// (a blank line silently, anything else with a refusal), then B's
	// token itself.
	transfer := func(t *testing.T, enter string, mangle ...func(tok string) string) {
		h := newPtyHarness(t, 10*time.Second)
		recv := h.start("recv", nil, "recv", "--stun", "none", "--ntp", "none", "--slot", "0", "--me", "B.tok", "@A.tok")
		send := h.startOnPty("send", bytes.NewReader(data), "send", "--stun", "none", "--ntp", "none", "--slot", "0", "--me", "A.tok")

		tokB := h.waitToken("B.tok")
		refusals := 0
		for i, m := range mangle {
			h.waitScreen(ptyPrompt, i+1)
			line := m(tokB)
			if line != "" {
				if _, err := punch.ParseToken(line); err == nil {
					t.Fatalf("test bug: mangled token %q parses", line)
				}
				refusals++
			}
			h.typeLine(line + enter)
			h.waitScreen(ptyRetry, refusals)
		}
		h.waitScreen(ptyPrompt, len(mangle)+1)
		h.typeLine(tokB + enter)

		if code := h.wait(send); code != 0 {
			h.failf("sender exited with %d, want 0", code)
		}
		if code := h.wait(recv); code != 0 {
			h.failf("receiver exited with %d, want 0", code)
		}
		got, err := os.ReadFile(recv.stdoutFile)
		if err != nil {
			h.failf("%v", err)
		}
		if sha256.Sum256(got) != want {
			h.failf("receiver wrote %d bytes that differ from the %d sent (sha256 %x, want %x)", len(got), len(data), sha256.Sum256(got), want)
		}
		h.checkPromptPlacement(send)
		// The prompt was shown once per line typed, the refusals once per
		// mangled line, and nothing more was asked.
		screen := h.screen.String()
		if n := strings.Count(screen, ptyPrompt); n != len(mangle)+1 {
			h.failf("the terminal showed the prompt %d times, want %d", n, len(mangle)+1)
		}
		if n := strings.Count(screen, ptyRetry); n != refusals {
			h.failf("the terminal showed %d refusals, want %d", n, refusals)
		}
		// Our own token was announced on stderr and is the one in A.tok.
		tokA := strings.TrimSpace(string(h.readFile("A.tok")))
		if !strings.Contains(send.stderr.String(), "p2pcat: tell your peer: "+tokA+"\n") {
			h.failf("the sender's stderr does not announce its token %s", tokA)
		}
	}

	t.Run("token", func(t *testing.T) {
		transfer(t, "\n")
	})

	// A real terminal's Enter key sends CR (the tty turns it into NL); a
	// blank line and mistyped tokens are refused and asked again.
	t.Run("retype", func(t *testing.T) {
		transfer(t, "\r",
			func(tok string) string { return "" },           // Enter alone
			func(tok string) string { return "127.0.0.1/" }, // not an ip:port
			func(tok string) string { // one character of the secret mistyped
				i := strings.Index(tok, "/") + 3
				for _, c := range "abcdefgh" {
					if typo := tok[:i] + string(c) + tok[i+1:]; typo != tok {
						if _, err := punch.ParseToken(typo); err != nil {
							return typo
						}
					}
				}
				return "no typo found"
			},
			func(tok string) string { return tok[:len(tok)-5] }, // cut short
		)
	})

	// End of input at the prompt (Ctrl-D): a usage error on one line,
	// exit status 2, nothing read from stdin or written to stdout.
	t.Run("eof", func(t *testing.T) {
		h := newPtyHarness(t, 5*time.Second)
		send := h.startOnPty("send", bytes.NewReader(data), "send", "--stun", "none", "--ntp", "none", "--slot", "0", "--me", "A.tok")
		h.waitScreen(ptyPrompt, 1)
		h.typeLine("\x04")
		if code := h.wait(send); code != exitUsage {
			h.failf("sender exited with %d, want %d", code, exitUsage)
		}
		var errs []string
		for _, l := range strings.Split(send.stderr.String(), "\n") {
			if strings.HasPrefix(l, "p2pcat: error: ") {
				errs = append(errs, l)
			}
		}
		if len(errs) != 1 || !strings.Contains(errs[0], "peer's token") {
			h.failf("want one error line about the peer's token on stderr, got %q", errs)
		}
		h.checkPromptPlacement(send)
	})
}

// ptyHarness runs p2pcat processes for one subtest, kills them if it
// fails and then shows what each printed.
type ptyHarness struct {
	t        *testing.T
	dir      string
	deadline time.Time
	ctx      context.Context
	procs    []*ptyProc
	term     *os.File   // the pty's master side: what the user sees and types
	screen   syncBuffer // everything the terminal showed
}

type ptyProc struct {
	name       string
	cmd        *exec.Cmd
	stdoutFile string
	stderr     syncBuffer
	done       chan struct{}
	err        error // from Wait, once done is closed
}

// newPtyHarness gives the subtest budget to run (all of them together
// stay well under 30 s, even when each fails by running out of time).
func newPtyHarness(t *testing.T, budget time.Duration) *ptyHarness {
	deadline := time.Now().Add(budget)
	if d, ok := t.Deadline(); ok && d.Add(-2*time.Second).Before(deadline) {
		deadline = d.Add(-2 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	h := &ptyHarness{t: t, dir: t.TempDir(), deadline: deadline, ctx: ctx}
	t.Cleanup(func() {
		failed := t.Failed()
		cancel() // kills whatever still runs
		for _, p := range h.procs {
			<-p.done
			if failed {
				t.Logf("%s: %v\n--- stderr of %s ---\n%s", p.name, p.err, p.name, tail(p.stderr.String()))
			}
		}
		if h.term != nil {
			h.term.Close()
		}
		if failed && h.term != nil {
			t.Logf("--- the terminal showed ---\n%q", tail(h.screen.String()))
		}
	})
	return h
}

// failf reports a failure and stops the subtest; the cleanup shows the
// processes' stderr and the terminal.
func (h *ptyHarness) failf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf(format, args...)
}

func (h *ptyHarness) command(name string, stdin io.Reader, args ...string) *ptyProc {
	h.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		h.t.Fatal(err)
	}
	// The test binary runs as p2pcat when its argv[0] says so (see
	// TestMain), with the loopback-only localCandidates.
	cmd := exec.CommandContext(h.ctx, exe, args...)
	cmd.Args[0] = "p2pcat"
	cmd.Dir = h.dir
	cmd.WaitDelay = 2 * time.Second
	cmd.Stdin = stdin
	p := &ptyProc{name: name, cmd: cmd, stdoutFile: filepath.Join(h.dir, name+".stdout"), done: make(chan struct{})}
	out, err := os.Create(p.stdoutFile)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { out.Close() })
	cmd.Stdout = out
	cmd.Stderr = &p.stderr
	return p
}

func (h *ptyHarness) run(p *ptyProc) {
	h.t.Helper()
	if err := p.cmd.Start(); err != nil {
		h.t.Fatalf("starting %s: %v", p.name, err)
	}
	h.procs = append(h.procs, p)
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
}

// start runs p2pcat with no terminal.
func (h *ptyHarness) start(name string, stdin io.Reader, args ...string) *ptyProc {
	h.t.Helper()
	p := h.command(name, stdin, args...)
	h.run(p)
	return p
}

// startOnPty runs p2pcat in a new session whose controlling terminal is
// a fresh pty, so that its /dev/tty is that pty; stdin, stdout and
// stderr stay what command made them (a pipe, a file, a buffer).
func (h *ptyHarness) startOnPty(name string, stdin io.Reader, args ...string) *ptyProc {
	h.t.Helper()
	master, tty, err := pty.Open()
	if err != nil {
		h.t.Fatalf("opening a pty: %v", err)
	}
	h.term = master
	p := h.command(name, stdin, args...)
	p.cmd.ExtraFiles = []*os.File{tty} // fd 3 in the child
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 3}
	h.run(p)
	tty.Close()
	go io.Copy(&h.screen, master) // ends with EIO once the child is gone
	return p
}

// wait returns p's exit status, or fails if it does not end in time.
func (h *ptyHarness) wait(p *ptyProc) int {
	h.t.Helper()
	select {
	case <-p.done:
	case <-time.After(time.Until(h.deadline) + 3*time.Second):
		h.failf("%s did not end", p.name)
	}
	if h.ctx.Err() != nil {
		h.failf("%s was killed: the test ran out of time", p.name)
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		h.failf("%s: %v", p.name, p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// waitScreen waits until the terminal has shown s at least n times.
func (h *ptyHarness) waitScreen(s string, n int) {
	h.t.Helper()
	for strings.Count(h.screen.String(), s) < n {
		if time.Now().After(h.deadline) {
			h.failf("the terminal did not show %q (%d times)", s, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitToken waits for a --me file to be complete and returns the token.
func (h *ptyHarness) waitToken(name string) string {
	h.t.Helper()
	for {
		b, err := os.ReadFile(filepath.Join(h.dir, name))
		if err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(h.deadline) {
			h.failf("%s was not written", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *ptyHarness) readFile(name string) []byte {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, name))
	if err != nil {
		h.failf("%v", err)
	}
	return b
}

// typeLine types s at the terminal.
func (h *ptyHarness) typeLine(s string) {
	h.t.Helper()
	if _, err := h.term.Write([]byte(s)); err != nil {
		h.failf("typing at the terminal: %v", err)
	}
}

// checkPromptPlacement checks that the prompt went to the terminal and
// nowhere else: stdout carries data only, stderr the messages.
func (h *ptyHarness) checkPromptPlacement(p *ptyProc) {
	h.t.Helper()
	if !strings.Contains(h.screen.String(), ptyPrompt) {
		h.failf("the terminal never showed the prompt %q", ptyPrompt)
	}
	out, err := os.ReadFile(p.stdoutFile)
	if err != nil {
		h.failf("%v", err)
	}
	if len(out) != 0 {
		h.failf("%s wrote %d bytes to stdout, want none: %q", p.name, len(out), out[:min(len(out), 200)])
	}
	if strings.Contains(p.stderr.String(), "paste your peer's token") {
		h.failf("%s printed the prompt on stderr, not only on the terminal", p.name)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tail keeps the end of a long output for a failure message.
func tail(s string) string {
	const limit = 4 << 10
	if len(s) <= limit {
		return s
	}
	return fmt.Sprintf("[... %d bytes ...]", len(s)-limit) + s[len(s)-limit:]
}
