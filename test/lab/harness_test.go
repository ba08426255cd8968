//go:build lab && linux

package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/test/internal/suite"
)

// ---- the lab -------------------------------------------------------------

// netlabMu serialises netlab.sh runs; the guard takes it for good before
// its last teardown, so that no test cleanup races with it.
var netlabMu sync.Mutex

// netlab runs netlab.sh with the suite's prefix, state dir and tools.
func netlab(ctx context.Context, args ...string) (string, error) {
	netlabMu.Lock()
	defer netlabMu.Unlock()
	return netlabLocked(ctx, args...)
}

func netlabLocked(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.netlab, args...)
	cmd.Env = append(os.Environ(),
		"NETLAB_PREFIX="+env.prefix,
		"NETLAB_RUN="+env.run,
		"NETLAB_BIN="+filepath.Join(env.labDir, "bin"))
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// lab is a running lab: its options and address plan.
type lab struct {
	args  []string
	addrs map[string]string // netlab.sh addrs: PEER_A_IP, WAN_A, ...
}

// ns is the namespace name of a lab node (peerA, peerB, srv, natA, ...).
func ns(node string) string { return env.prefix + node }

// labUp brings a lab up with netlab.sh options and tears it down (down
// --force: also any p2pcat left inside) when the test ends, pass or fail.
func labUp(t *testing.T, args ...string) *lab {
	t.Helper()
	if out, err := netlab(context.Background(), "down", "--force"); err != nil {
		t.Fatalf("netlab down before up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := netlab(context.Background(), "status"); err == nil {
				t.Logf("lab status at failure:\n%s", out)
			}
		}
		t0 := time.Now()
		out, err := netlab(context.Background(), "down", "--force")
		if err != nil {
			t.Errorf("netlab down --force: %v\n%s", err, out)
			return
		}
		if strings.Contains(out, "--force: killing") {
			t.Logf("netlab down had to kill leftover processes:\n%s", out)
		}
		t.Logf("lab down in %.1fs", time.Since(t0).Seconds())
	})
	t0 := time.Now()
	out, err := netlab(context.Background(), append([]string{"up"}, args...)...)
	if err != nil {
		t.Fatalf("netlab up %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	l := &lab{args: args, addrs: map[string]string{}}
	b, err := os.ReadFile(filepath.Join(env.run, "addrs"))
	if err != nil {
		t.Fatalf("lab addrs: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			l.addrs[k] = v
		}
	}
	t.Logf("lab up in %.1fs: %s", time.Since(t0).Seconds(), strings.Join(args, " "))
	waitNTP(t)
	return l
}

// waitNTP waits (up to 5 s) until the lab's chronyd answers from peerA:
// `up` returns once it has started it, and a netcheck run 1.2 s after
// `up` once found no NTP server answering (CI at 40b7c00).
func waitNTP(t *testing.T) {
	t.Helper()
	probe := filepath.Join(env.labDir, "bin", "probe")
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := nodeOutput("peerA", probe, "ntp", "-server", ntpGood, "-tries", "1")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("NTP server %s not answering 5 s after up: %v\n%s", ntpGood, err, out)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// nodeOutput runs a short command in a lab node and returns its output.
func nodeOutput(node string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns(node)}, argv...)...).CombinedOutput()
	return string(out), err
}

// ---- processes -----------------------------------------------------------

// proc is a child process in a lab node, with its stderr in a file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	errPath string
	ctx     context.Context
	started time.Time
	done    chan struct{}
	ended   time.Time
}

var (
	procSeq  atomic.Int64
	liveMu   sync.Mutex
	liveProc = map[*proc]bool{}
)

// startProc starts argv inside node (ip netns exec) with the given
// stdin/stdout (nil: /dev/null) and extra environment. The process dies
// when ctx ends, when the test finishes, and with the suite (Pdeathsig:
// `ip netns exec` execs the command, so the signal reaches it).
func startProc(t *testing.T, ctx context.Context, name, node string, argv []string, stdin, stdout *os.File, extraEnv ...string) *proc {
	t.Helper()
	p, err := tryStartProc(t, ctx, name, node, argv, stdin, stdout, extraEnv...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tryStartProc is startProc for goroutines other than the test's own
// (which must not call t.Fatal).
func tryStartProc(t *testing.T, ctx context.Context, name, node string, argv []string, stdin, stdout *os.File, extraEnv ...string) (*proc, error) {
	t.Helper()
	errPath := filepath.Join(env.workDir, fmt.Sprintf("stderr-%03d-%s.txt", procSeq.Add(1), sanitize(name)))
	errFile, err := os.Create(errPath)
	if err != nil {
		return nil, err
	}
	defer errFile.Close()
	if stdin == nil || stdout == nil {
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		defer null.Close() // the child has its own copy once started
		if stdin == nil {
			stdin = null
		}
		if stdout == nil {
			stdout = null
		}
	}
	full := append([]string{"netns", "exec", ns(node)}, argv...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, errFile
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, errPath: errPath, ctx: ctx, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %v", name, err)
	}
	liveMu.Lock()
	liveProc[p] = true
	liveMu.Unlock()
	t.Logf("%s: started in %s: %s", name, node, strings.Join(shortArgv(argv), " "))
	go func() {
		cmd.Wait()
		p.ended = time.Now()
		liveMu.Lock()
		delete(liveProc, p)
		liveMu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		<-p.done
	})
	return p, nil
}

// killAllProcs kills every process the suite started (the guard's last act).
func killAllProcs() {
	liveMu.Lock()
	defer liveMu.Unlock()
	for p := range liveProc {
		p.kill()
	}
}

func shortArgv(argv []string) []string {
	out := append([]string(nil), argv...)
	out[0] = filepath.Base(out[0])
	for i, a := range out {
		if strings.HasPrefix(a, env.workDir) {
			out[i] = "…" + strings.TrimPrefix(a, env.workDir)
		} else if strings.HasPrefix(a, "@"+env.workDir) {
			out[i] = "@…" + strings.TrimPrefix(a, "@"+env.workDir)
		}
	}
	return out
}

func (p *proc) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
	}
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// exitCode is the exit status, -1 when killed by a signal (only valid after done).
func (p *proc) exitCode() int { return p.cmd.ProcessState.ExitCode() }

func (p *proc) status() string {
	if p.running() {
		return "still running"
	}
	s := p.cmd.ProcessState.String()
	if p.ctx.Err() != nil && p.exitCode() == -1 {
		s += " (run deadline reached)"
	}
	return s
}

func (p *proc) stderr() string {
	b, _ := os.ReadFile(p.errPath)
	return string(b)
}

// lastLine is the last non-empty line of its stderr, for a one-line
// reason.
func (p *proc) lastLine() string {
	s := strings.TrimRight(p.stderr(), "\n")
	if s == "" {
		return "(nothing)"
	}
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// dropLine is what p2pcat -v prints for each probe that fails
// authentication; a flood of them is summarised in dumps.
const dropLine = "punch: dropped an unauthenticated probe from "

// stderrForLog is p2pcat's stderr with runs of drop lines folded.
func (p *proc) stderrForLog() string {
	var b strings.Builder
	n := 0
	flush := func() {
		if n > 0 {
			fmt.Fprintf(&b, "    [%d × %s…]\n", n, dropLine)
			n = 0
		}
	}
	for _, l := range strings.Split(strings.TrimRight(p.stderr(), "\n"), "\n") {
		if strings.Contains(l, dropLine) {
			n++
			continue
		}
		flush()
		b.WriteString("    " + l + "\n")
	}
	flush()
	return b.String()
}

// dumpStderr logs the whole stderr of each process.
func dumpStderr(t *testing.T, procs ...*proc) {
	t.Helper()
	for _, p := range procs {
		if p == nil {
			continue
		}
		t.Logf("---- %s (%s), stderr:\n%s", p.name, p.status(), p.stderrForLog())
	}
}

// ---- one meeting of two p2pcats -----------------------------------------

// peerSpec is how one side is run.
type peerSpec struct {
	stun  string   // default stund
	ntp   string   // default ntpGood
	extra []string // more p2pcat flags
}

// meeting is p2pcat send in peerA -> p2pcat recv in peerB, tokens through
// files (--me FILE and PEER @FILE), default slots.
type meeting struct {
	src    *dataFile
	a, b   peerSpec
	bAfter time.Duration // B starts this long after A
	// aPaste > 0: A is given B's token only this long after B wrote it
	// (a user who pastes late; B has A's token at once).
	aPaste   time.Duration
	timeout  time.Duration // whole run
	wantFail bool          // both must give up with exit status 3
	// hooks, called from the watcher (must not block long)
	beforeB     func(r *meetRun) // right before B starts (after bAfter)
	onTokens    func(r *meetRun) // both token files are complete
	onConnected func(r *meetRun) // both sides printed "connected to"
}

// Deadlines of a meeting, from A's start (plus bAfter): at most 12 s + NTP
// of slot wait and the punch, then the transfer. A run that has not ended
// by then is cut and fails: the suite must stay inside its CI budget, and
// a transfer that slow is a failure in its own right.
const (
	defaultRunTimeout  = 60 * time.Second // 16 MiB unimpaired (~0.1 s), or 64 MiB
	impairedRunTimeout = 75 * time.Second // 16 MiB impaired (~3 s when healthy)
)

// side is one p2pcat of a meeting.
type side struct {
	label   string // "A" or "B"
	node    string // peerA / peerB
	tokPath string
	token   string // as written by p2pcat
	proc    *proc
	connAt  time.Time // when the suite saw "connected to" (zero: never)
	conn    connLine
}

// connLine is p2pcat's "connected to ADDR (KIND path, X.Xs after both
// tokens were known)".
type connLine struct {
	ok   bool
	addr string
	kind string
	secs float64
}

var connRE = regexp.MustCompile(`p2pcat: connected to (\S+) \(([a-z-]+) path, ([0-9.]+)s after both tokens were known\)`)

func parseConn(stderr string) connLine {
	m := connRE.FindStringSubmatch(stderr)
	if m == nil {
		return connLine{}
	}
	s, _ := strconv.ParseFloat(m[3], 64)
	return connLine{ok: true, addr: m[1], kind: m[2], secs: s}
}

var (
	recvRE  = regexp.MustCompile(`p2pcat: received ([0-9]+) bytes in ([0-9.]+)s \(([0-9.]+) MB/s\)`)
	tokenRE = regexp.MustCompile(`p2pcat: tell your peer: (\S+)`)
)

// publicOf is the public address in a token "PUBLIC,LOCAL.../SECRET".
func publicOf(token string) string {
	s, _, _ := strings.Cut(strings.TrimSpace(token), "/")
	s, _, _ = strings.Cut(s, ",")
	return s
}

// meetRun is a meeting as it ran.
type meetRun struct {
	t        *testing.T
	dir      string
	A, B     *side
	outPath  string
	tokensAt time.Time    // the later token file's mtime: both sides can know both tokens
	pastedAt atomic.Int64 // meeting.aPaste: when A was given B's token, ns (0: never)
	bothAt   time.Time    // both sides printed "connected to"
	problems []string
	rate     string // receiver's MB/s
	note     string // for the summary
}

// connectSecs is p2pcat's own figure, the slower side's; ok is false if
// either side did not connect.
func (r *meetRun) connectSecs() (float64, bool) {
	if !r.A.conn.ok || !r.B.conn.ok {
		return 0, false
	}
	return max(r.A.conn.secs, r.B.conn.secs), true
}

// externalSecs is the suite's own measurement of the same interval.
func (r *meetRun) externalSecs() (float64, bool) {
	if r.tokensAt.IsZero() || r.bothAt.IsZero() {
		return 0, false
	}
	return r.bothAt.Sub(r.tokensAt).Seconds(), true
}

func (r *meetRun) fail(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// run performs the meeting and checks exit statuses, the "connected"
// lines and the received bytes. Problems are reported through t (with
// both stderrs); the run is returned for further checks.
func (m meeting) run(t *testing.T) *meetRun {
	t.Helper()
	if m.timeout == 0 {
		m.timeout = defaultRunTimeout
	}
	dir, err := os.MkdirTemp(env.workDir, "meet-")
	if err != nil {
		t.Fatal(err)
	}
	r := &meetRun{
		t:   t,
		dir: dir,
		A:   &side{label: "A", node: "peerA", tokPath: filepath.Join(dir, "a.tok")},
		B:   &side{label: "B", node: "peerB", tokPath: filepath.Join(dir, "b.tok")},
	}
	r.outPath = filepath.Join(dir, "out.bin")
	defer os.Remove(r.outPath)
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout+m.bAfter+m.aPaste)
	defer cancel()

	// What A reads as B's token: B's own file, or a copy made aPaste later.
	aPeerPath := r.B.tokPath
	if m.aPaste > 0 {
		aPeerPath = filepath.Join(dir, "b.pasted")
		go func() {
			for ctx.Err() == nil {
				b, err := readFileNow(r.B.tokPath)
				if err == nil && strings.HasSuffix(string(b), "\n") {
					select {
					case <-time.After(m.aPaste):
					case <-ctx.Done():
						return
					}
					tmp := aPeerPath + ".tmp"
					if os.WriteFile(tmp, []byte(b), 0o644) == nil && os.Rename(tmp, aPeerPath) == nil {
						r.pastedAt.Store(time.Now().UnixNano())
					}
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}

	argv := func(role string, ps peerSpec, me *side, peerPath string) []string {
		stun, ntp := ps.stun, ps.ntp
		if stun == "" {
			stun = stund
		}
		if ntp == "" {
			ntp = ntpGood
		}
		a := []string{env.p2pcat, role, "-v", "--stun", stun, "--ntp", ntp, "--me", me.tokPath}
		a = append(a, ps.extra...)
		return append(a, "@"+peerPath)
	}
	in, err := os.Open(m.src.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(r.outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()

	r.A.proc = startProc(t, ctx, "A: p2pcat send", r.A.node, argv("send", m.a, r.A, aPeerPath), in, nil)
	if m.bAfter > 0 {
		t.Logf("B starts %v after A", m.bAfter)
		select {
		case <-time.After(m.bAfter):
		case <-r.A.proc.done:
		}
	}
	if m.beforeB != nil {
		m.beforeB(r)
	}
	r.B.proc = startProc(t, ctx, "B: p2pcat recv", r.B.node, argv("recv", m.b, r.B, r.A.tokPath), nil, out)

	// The watcher: token files and "connected" lines, as they happen.
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if r.tokensAt.IsZero() {
				if at, ok := tokensReady(r.A.tokPath, r.B.tokPath); ok {
					r.tokensAt = at
					if m.onTokens != nil {
						m.onTokens(r)
					}
				}
			}
			for _, s := range []*side{r.A, r.B} {
				if s.connAt.IsZero() && strings.Contains(s.proc.stderr(), "p2pcat: connected to ") {
					s.connAt = time.Now()
				}
			}
			if r.bothAt.IsZero() && !r.A.connAt.IsZero() && !r.B.connAt.IsZero() {
				r.bothAt = later(r.A.connAt, r.B.connAt)
				if m.onConnected != nil {
					m.onConnected(r)
				}
			}
			if !r.A.proc.running() && !r.B.proc.running() {
				return
			}
			<-tick.C
		}
	}()
	waitBoth(r.A.proc, r.B.proc, 10*time.Second)
	<-watchDone

	for _, s := range []*side{r.A, r.B} {
		e := s.proc.stderr()
		s.conn = parseConn(e)
		if b, err := os.ReadFile(s.tokPath); err == nil {
			s.token = strings.TrimSpace(string(b))
		} else if mm := tokenRE.FindStringSubmatch(e); mm != nil {
			s.token = mm[1]
		}
	}
	if mm := recvRE.FindStringSubmatch(r.B.proc.stderr()); mm != nil {
		r.rate = mm[3]
	}

	if m.wantFail {
		for _, s := range []*side{r.A, r.B} {
			if code := s.proc.exitCode(); code != 3 {
				r.fail("%s: %s; want exit status 3 (could not connect)", s.proc.name, s.proc.status())
			}
		}
	} else {
		for _, s := range []*side{r.A, r.B} {
			if s.proc.exitCode() != 0 {
				r.fail("%s: %s (want exit 0); its last words: %s", s.proc.name, s.proc.status(), s.proc.lastLine())
			}
			if !s.conn.ok {
				r.fail("%s never printed \"connected to ... after both tokens were known\"", s.proc.name)
			}
		}
		sum, n, err := suite.FileSHA256(r.outPath)
		switch {
		case err != nil:
			r.fail("%v", err)
		case sum != m.src.Sum:
			r.fail("received %d bytes with sha256 %s, want %d bytes with %s", n, sum, m.src.Size, m.src.Sum)
		}
	}
	if ctx.Err() != nil {
		var got int64
		if fi, err := os.Stat(r.outPath); err == nil {
			got = fi.Size()
		}
		msg := fmt.Sprintf("run cut at its deadline of %v with %d of %d bytes received", m.timeout+m.bAfter, got, m.src.Size)
		if !r.B.connAt.IsZero() {
			secs := time.Since(r.B.connAt).Seconds()
			msg += fmt.Sprintf(" (%.2f MB/s over the %.0fs since B connected)", float64(got)/secs/1e6, secs)
			r.note = fmt.Sprintf("cut: %.1f of %.1f MB in %.0fs", float64(got)/1e6, float64(m.src.Size)/1e6, secs)
		}
		r.fail("%s", msg)
	}
	ext := "-"
	if e, ok := r.externalSecs(); ok {
		ext = fmt.Sprintf("%.1fs", e)
	}
	own, path := "-", "-"
	if c, ok := r.connectSecs(); ok {
		own = fmt.Sprintf("%.1fs", c)
		path = r.A.conn.kind
		if r.B.conn.kind != r.A.conn.kind {
			path += "/" + r.B.conn.kind
		}
	}
	t.Logf("A connected: %s; B connected: %s; both tokens known -> connected: p2pcat %s, measured %s; receiver %s MB/s",
		r.A.conn.describe(), r.B.conn.describe(), own, ext, orDash(r.rate))
	for _, p := range r.problems {
		t.Error(p)
	}
	if len(r.problems) > 0 {
		dumpStderr(t, r.A.proc, r.B.proc)
	}
	record(result{test: t.Name(), failed: t.Failed(), connect: own, external: ext, path: path, mbps: orDash(r.rate), note: r.note, problems: r.problems})
	return r
}

func (c connLine) describe() string {
	if !c.ok {
		return "no"
	}
	return fmt.Sprintf("%s (%s path, %.1fs)", c.addr, c.kind, c.secs)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// tokensReady reports whether both token files are complete (p2pcat
// writes the token and a newline) and when the later one was written.
func tokensReady(a, b string) (time.Time, bool) {
	var at time.Time
	for _, p := range []string{a, b} {
		fi, err := os.Stat(p)
		if err != nil {
			return at, false
		}
		data, err := os.ReadFile(p)
		if err != nil || !bytes.HasSuffix(data, []byte("\n")) {
			return at, false
		}
		at = later(at, fi.ModTime())
	}
	return at, true
}

// waitBoth waits for two processes. When one fails, the other gets grace
// to finish on its own before it is killed.
func waitBoth(a, b *proc, grace time.Duration) {
	var first, other *proc
	select {
	case <-a.done:
		first, other = a, b
	case <-b.done:
		first, other = b, a
	}
	if first.exitCode() != 0 {
		select {
		case <-other.done:
		case <-time.After(grace):
			other.kill()
		}
	}
	<-other.done
}
