//go:build interop

package interop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/test/internal/suite"
)

// ---- peers -------------------------------------------------------------

// impl says which program plays a side.
type impl int

const (
	implP2pcat  impl = iota // the binary under test
	implUdtpeer             // libudt 4.11 via shared/interop/udtpeer
)

// kind is a program plus how it is asked to speak.
type kind struct {
	impl impl
	raw  bool // p2pcat only: --raw (plain UDT4 stream, required against udtpeer)
}

var (
	p2pcatRaw = kind{impl: implP2pcat, raw: true}
	p2pcatOwn = kind{impl: implP2pcat} // p2pcat's own framing, p2pcat peer only
	udtpeer   = kind{impl: implUdtpeer}
)

func (k kind) String() string {
	switch {
	case k.impl == implUdtpeer:
		return "udtpeer"
	case k.raw:
		return "p2pcat"
	default:
		return "p2pcat-framed"
	}
}

// setupMode is how a side establishes the UDT connection.
type setupMode int

const (
	modeListen setupMode = iota
	modeDial
	modeRendezvous
)

// end is one side of a connection, fully wired.
type end struct {
	kind   kind
	mode   setupMode
	port   int    // local UDP port, 0 = chosen by the OS (dialers only)
	remote string // HOST:PORT, "" for a listener
}

// argv is the command line for role "send" or "recv".
func (e end) argv(role string) []string {
	if e.kind.impl == implUdtpeer || env.selftest {
		a := []string{env.udtpeer, role}
		switch e.mode {
		case modeListen:
			a = append(a, "-L", "-l", strconv.Itoa(e.port))
		case modeDial:
			a = append(a, "-c", e.remote)
			if e.port != 0 {
				a = append(a, "-l", strconv.Itoa(e.port))
			}
		case modeRendezvous:
			a = append(a, "-r", "-l", strconv.Itoa(e.port), "-c", e.remote)
		}
		return a
	}
	a := []string{env.p2pcat, role, "-v"}
	if e.kind.raw {
		a = append(a, "--raw")
	}
	switch e.mode {
	case modeListen:
		a = append(a, "-l", "--localport", strconv.Itoa(e.port))
	case modeDial:
		a = append(a, "--dial")
		if e.port != 0 {
			a = append(a, "--localport", strconv.Itoa(e.port))
		}
		a = append(a, e.remote)
	case modeRendezvous:
		// No STUN, no NTP, no slot wait: tests never contact public
		// servers, and both sides are on this machine's clock.
		a = append(a, "--stun", "none", "--ntp", "none", "--slot", "0",
			"--localport", strconv.Itoa(e.port), e.remote)
	}
	return a
}

// ---- topologies ----------------------------------------------------------

type side int

const (
	sideSender side = iota
	sideReceiver
)

func (s side) String() string {
	if s == sideSender {
		return "sender"
	}
	return "receiver"
}

// plan describes one transfer before ports are chosen.
type plan struct {
	sender, receiver kind
	rendezvous       bool
	listener         side          // client/server: which side listens
	first            side          // rendezvous: which side starts first
	gap              time.Duration // rendezvous: delay between the two starts
	relayArgs        []string      // non-nil: go through udprelay with these impairments
	// drop puts an in-process relay in the path instead of udprelay: a
	// datagram for which it returns true is not forwarded.
	drop func(fromSender bool, p []byte) bool
}

// wired is a plan with ports: both ends and the relay command, if any.
type wired struct {
	snd, rcv   end
	relay      []string // udprelay argv, nil without a relay
	relayPorts []int    // the relay's -a and -b ports
	senderDir  string   // the relay's name for the sender's direction: "A->B" or "B->A"
	waitPort   []int    // ports that must be bound before the second side starts
	// filter: the in-process relay's ports and peers (plan.drop set)
	filter *filterRelay
}

const loop = "127.0.0.1"

func hp(port int) string { return net.JoinHostPort(loop, strconv.Itoa(port)) }

// wire allocates ports and connects the plan. Through the relay, a
// rendezvous has both peers fixed (-A sender, -B receiver) and client/server
// has the client learned on -a and the server fixed with -B (see
// shared/interop/README.md).
func (p plan) wire(t *testing.T) wired {
	ports := allocPorts(t, 4)
	ps, pr, ra, rb := ports[0], ports[1], ports[2], ports[3]
	var w wired
	w.snd.kind, w.rcv.kind = p.sender, p.receiver
	switch {
	case p.rendezvous && p.drop != nil:
		w.snd = end{p.sender, modeRendezvous, ps, hp(ra)}
		w.rcv = end{p.receiver, modeRendezvous, pr, hp(rb)}
		w.filter = &filterRelay{a: ra, b: rb, sender: ps, receiver: pr, drop: p.drop}
	case p.drop != nil:
		// client/server through the in-process relay: the listener talks
		// to relay port a if it sends, b if it receives; the relay learns
		// the client's port from its first datagram.
		server, client := &w.snd, &w.rcv
		sport, cport := ps, rb
		f := &filterRelay{a: ra, b: rb, sender: ps}
		if p.listener == sideReceiver {
			server, client = &w.rcv, &w.snd
			sport, cport = pr, ra
			f = &filterRelay{a: ra, b: rb, receiver: pr}
		}
		f.drop = p.drop
		server.mode, server.port = modeListen, sport
		client.mode, client.remote = modeDial, hp(cport)
		w.waitPort = []int{sport}
		w.filter = f
	case p.rendezvous && p.relayArgs == nil:
		w.snd = end{p.sender, modeRendezvous, ps, hp(pr)}
		w.rcv = end{p.receiver, modeRendezvous, pr, hp(ps)}
	case p.rendezvous:
		w.snd = end{p.sender, modeRendezvous, ps, hp(ra)}
		w.rcv = end{p.receiver, modeRendezvous, pr, hp(rb)}
		w.relay = append([]string{env.udprelay, "-a", strconv.Itoa(ra), "-b", strconv.Itoa(rb),
			"-A", hp(ps), "-B", hp(pr)}, p.relayArgs...)
		w.relayPorts = []int{ra, rb}
		w.senderDir = "A->B"
	default:
		server, client := &w.snd, &w.rcv
		sport := ps
		if p.listener == sideReceiver {
			server, client = &w.rcv, &w.snd
			sport = pr
		}
		server.mode, server.port = modeListen, sport
		client.mode = modeDial
		client.remote = hp(sport)
		w.waitPort = []int{sport}
		if p.relayArgs != nil {
			client.remote = hp(ra)
			w.relay = append([]string{env.udprelay, "-a", strconv.Itoa(ra), "-b", strconv.Itoa(rb),
				"-B", hp(sport)}, p.relayArgs...)
			w.relayPorts = []int{ra, rb}
			w.senderDir = "B->A" // the client talks to -a
			if p.listener == sideReceiver {
				w.senderDir = "A->B"
			}
		}
	}
	return w
}

// ---- ports ---------------------------------------------------------------

var (
	portMu   sync.Mutex
	portNext = 20000 + rand.IntN(30000) // a random base per run of the suite
)

// allocPorts returns n UDP ports, distinct across the whole suite and free
// right now on every address.
func allocPorts(t *testing.T, n int) []int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 1000 {
			t.Fatalf("no free UDP ports found near %d", portNext)
		}
		p := portNext
		portNext++
		if portNext >= 60000 {
			portNext = 20000
		}
		c, err := net.ListenUDP("udp", &net.UDPAddr{Port: p})
		if err != nil {
			continue
		}
		c.Close()
		out = append(out, p)
	}
	return out
}

// waitBound waits until something listens on UDP port; where that cannot be
// seen it just waits a moment.
func waitBound(port int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		bound, ok := udpBound(port)
		if !ok {
			time.Sleep(300 * time.Millisecond)
			return true
		}
		if bound {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- processes -----------------------------------------------------------

// proc is a child process with its stderr in a file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	errPath string
	ctx     context.Context
	started time.Time
	done    chan struct{}
	ended   time.Time
	waitErr error
}

var procSeq atomic.Int64

// startProc starts argv with the given stdin/stdout (nil: /dev/null). The
// process is killed when ctx ends and when the test finishes.
func startProc(t *testing.T, ctx context.Context, name string, argv []string, stdin, stdout *os.File) *proc {
	t.Helper()
	errPath := filepath.Join(env.workDir, fmt.Sprintf("stderr-%03d-%s.txt", procSeq.Add(1), sanitize(name)))
	errFile, err := os.Create(errPath)
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	if stdin == nil {
		stdin = devNull(t, os.O_RDONLY)
	}
	if stdout == nil {
		stdout = devNull(t, os.O_WRONLY)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, errFile
	setProcAttr(cmd)
	p := &proc{name: name, cmd: cmd, errPath: errPath, ctx: ctx, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Logf("%s: started %s", name, strings.Join(shortArgv(argv), " "))
	go func() {
		p.waitErr = cmd.Wait()
		p.ended = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		<-p.done
		os.Remove(errPath)
	})
	return p
}

func devNull(t *testing.T, flag int) *os.File {
	f, err := os.OpenFile(os.DevNull, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func shortArgv(argv []string) []string {
	out := append([]string(nil), argv...)
	out[0] = filepath.Base(out[0])
	return out
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, s)
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

// status describes how the process ended.
func (p *proc) status() string {
	if p.running() {
		return "still running"
	}
	s := p.cmd.ProcessState.String() // "exit status 4", "signal: killed"
	if p.ctx.Err() != nil && p.exitCode() == -1 {
		s += " (run deadline reached)"
	}
	return s
}

func (p *proc) cpu() time.Duration {
	if p.cmd.ProcessState == nil {
		return 0
	}
	return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}

func (p *proc) stderr() string {
	b, _ := os.ReadFile(p.errPath)
	return string(b)
}

// stderrTail is the last n lines of the process's stderr.
func (p *proc) stderrTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.stderr(), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines omitted]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

var rateRE = regexp.MustCompile(`([0-9]+(?:\.[0-9]+)?) MB/s`)

// reportedRate is the last "X MB/s" the program printed on stderr:
// udtpeer's "... = X MB/s (...)" and p2pcat -v's "(X MB/s)".
func (p *proc) reportedRate() string {
	m := rateRE.FindAllStringSubmatch(p.stderr(), -1)
	if len(m) == 0 {
		return "?"
	}
	return m[len(m)-1][1]
}

// dumpStderr logs every process's stderr tail, for a failed run.
func dumpStderr(t *testing.T, procs ...*proc) {
	t.Helper()
	for _, p := range procs {
		if p == nil {
			continue
		}
		t.Logf("---- %s (%s), stderr tail:\n%s", p.name, p.status(), p.stderrTail(25))
	}
}

// waitBoth waits for two processes. When one fails, the other gets grace
// to finish on its own before it is killed, so a broken run does not sit
// until the deadline.
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

// ---- results -------------------------------------------------------------

type result struct {
	name   string
	mbps   float64
	failed bool
	note   string
}

var (
	resultsMu sync.Mutex
	results   []result
)

func record(r result) {
	resultsMu.Lock()
	results = append(results, r)
	resultsMu.Unlock()
}

// speedLog keeps the slowest run of one top-level test and logs it when
// the test ends.
type speedLog struct {
	mu      sync.Mutex
	slowest float64
	which   string
	runs    int
}

func newSpeedLog(t *testing.T) *speedLog {
	s := &speedLog{}
	t.Cleanup(func() {
		if s.runs > 0 {
			t.Logf("slowest run: %.1f MB/s (%s; %d runs)", s.slowest, s.which, s.runs)
		}
	})
	return s
}

func (s *speedLog) add(name string, mbps float64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs == 0 || mbps < s.slowest {
		s.slowest, s.which = mbps, name
	}
	s.runs++
}

// ---- byte-exact transfers ------------------------------------------------

// transfer is one run: a plan, the data, and its limits.
type transfer struct {
	plan
	src     *dataFile
	timeout time.Duration // whole run, both processes
	floor   float64       // MB/s; 0 = no floor
	speeds  *speedLog
}

// loopbackTimeout is the deadline of a loopback run: a run slower than the
// floor is cut short instead of crawling on.
func loopbackTimeout(size int64, gap time.Duration) time.Duration {
	return gap + connectAllowance + time.Duration(float64(size)/(minLoopbackMBps*1e6)*float64(time.Second))
}

// run performs the transfer and checks exit statuses, the received bytes'
// digest and the rate. It reports through t and returns the MB/s measured.
func (tr transfer) run(t *testing.T) float64 {
	t.Helper()
	w := tr.wire(t)
	ctx, cancel := context.WithTimeout(context.Background(), tr.timeout)
	defer cancel()

	var relay *proc
	if w.relay != nil {
		// -x logs every control packet as the relay receives it, before
		// any drop: lostShutdown reads it.
		args := append(w.relay, "-x", "-t", "60", "-T", strconv.Itoa(int(tr.timeout/time.Second)+5))
		relay = startProc(t, ctx, "udprelay", args, nil, nil)
		for _, port := range w.relayPorts {
			if !waitBound(port, 5*time.Second) {
				dumpStderr(t, relay)
				t.Fatalf("udprelay did not bind port %d", port)
			}
		}
	}

	if w.filter != nil {
		if err := w.filter.start(); err != nil {
			t.Fatalf("in-process relay: %v", err)
		}
		defer w.filter.stop()
	}

	in, err := os.Open(tr.src.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	outPath := filepath.Join(env.workDir, fmt.Sprintf("out-%03d.bin", procSeq.Add(1)))
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(outPath)
	defer out.Close()

	startSnd := func() *proc {
		return startProc(t, ctx, "sender("+w.snd.kind.String()+")", w.snd.argv("send"), in, nil)
	}
	startRcv := func() *proc {
		return startProc(t, ctx, "receiver("+w.rcv.kind.String()+")", w.rcv.argv("recv"), nil, out)
	}
	firstSide := tr.first
	if !tr.rendezvous {
		firstSide = tr.listener
	}
	var snd, rcv *proc
	if firstSide == sideSender {
		snd = startSnd()
	} else {
		rcv = startRcv()
	}
	for _, port := range w.waitPort {
		if !waitBound(port, 5*time.Second) {
			t.Logf("warning: listener did not bind UDP port %d within 5 s; starting the client anyway", port)
		}
	}
	if tr.rendezvous && tr.gap > 0 {
		time.Sleep(tr.gap)
	}
	both := time.Now()
	if snd == nil {
		snd = startSnd()
	} else {
		rcv = startRcv()
	}
	waitBoth(snd, rcv, 5*time.Second)
	if relay != nil {
		relay.cmd.Process.Signal(os.Interrupt) // prints its counters
		select {
		case <-relay.done:
		case <-time.After(2 * time.Second):
			relay.kill()
			<-relay.done
		}
	}

	elapsed := rcv.ended.Sub(both)
	var got int64
	if fi, err := os.Stat(outPath); err == nil {
		got = fi.Size()
	}
	mbps := float64(got) / elapsed.Seconds() / 1e6
	if got == tr.src.Size {
		mbps = float64(tr.src.Size) / elapsed.Seconds() / 1e6
	}
	note := fmt.Sprintf("%s reports %s MB/s, %s reports %s MB/s; cpu sender %.2fs receiver %.2fs",
		snd.name, snd.reportedRate(), rcv.name, rcv.reportedRate(), snd.cpu().Seconds(), rcv.cpu().Seconds())

	var problems []string
	exact := false
	if sum, _, err := suite.FileSHA256(outPath); err != nil {
		problems = append(problems, err.Error())
	} else if sum != tr.src.Sum {
		problems = append(problems, fmt.Sprintf("received %d bytes with sha256 %s, want %d bytes with %s%s",
			got, sum, tr.src.Size, tr.src.Sum, firstDiff(tr.src.Path, outPath)))
	} else {
		exact = true
	}
	if snd.exitCode() != 0 {
		problems = append(problems, fmt.Sprintf("%s: %s (want exit 0)", snd.name, snd.status()))
	}
	switch {
	case rcv.exitCode() == 0:
	case exact && snd.exitCode() == 0 && tr.lostShutdown(w, rcv, relay):
		t.Logf("%s: %s after every byte arrived: the relay dropped the sender's only Shutdown, "+
			"and a plain UDT4 stream has no other end marker, so exit 4 is the right answer", rcv.name, rcv.status())
	default:
		problems = append(problems, fmt.Sprintf("%s: %s (want exit 0)", rcv.name, rcv.status()))
	}
	if ctx.Err() != nil {
		problems = append(problems, fmt.Sprintf("run cut at its deadline of %v after %d of %d bytes (%.1f MB/s so far)",
			tr.timeout, got, tr.src.Size, mbps))
	}
	if len(problems) == 0 && tr.floor > 0 && mbps < tr.floor {
		problems = append(problems, fmt.Sprintf("%.1f MB/s is below the floor of %.0f MB/s", mbps, tr.floor))
	}

	t.Logf("%d MiB in %.2fs = %.1f MB/s (wall, second start -> receiver exit); %s",
		tr.src.Size>>20, elapsed.Seconds(), mbps, note)
	if relay != nil {
		for _, l := range strings.Split(relay.stderr(), "\n") {
			if strings.Contains(l, "received=") {
				t.Logf("relay: %s", strings.TrimPrefix(l, "udprelay: "))
			}
		}
	}
	tr.speeds.add(t.Name(), mbps)
	record(result{name: t.Name(), mbps: mbps, failed: len(problems) > 0, note: note})
	if len(problems) > 0 {
		for _, p := range problems {
			t.Error(p)
		}
		dumpStderr(t, snd, rcv, relay)
	}
	return mbps
}

// lostShutdown tells whether a p2pcat --raw receiver's exit 4 is the
// right answer to a Shutdown the relay dropped: libudt sends one Shutdown,
// never repeated, and in a plain UDT4 stream it is the only end marker, so
// a receiver that never gets it cannot tell the end from a dead peer. The
// relay's -x log shows the sender's Shutdown reaching the relay (it logs
// before dropping), and p2pcat's message shows it never saw one (a
// Shutdown ends the stream with io.EOF, not with a timeout).
// The in-process relay counts the Shutdowns it forwards and drops.
func (tr transfer) lostShutdown(w wired, rcv, relay *proc) bool {
	if w.rcv.kind != p2pcatRaw || rcv.exitCode() != 4 ||
		!strings.Contains(rcv.stderr(), "the peer stopped answering") {
		return false
	}
	switch {
	case w.filter != nil:
		return w.filter.shutdownsDropped.Load() > 0 && w.filter.shutdownsPassed.Load() == 0
	case relay != nil:
		return strings.Count(relay.stderr(), w.senderDir+" CTRL SHUTDOWN") == 1
	}
	return false
}

// filterRelay forwards datagrams between two peers, as udprelay -A/-B
// does: what the sender sends to port a goes out of port b to the
// receiver, and back. drop picks the datagrams that are lost.
type filterRelay struct {
	a, b             int                            // relay ports: the sender's side, the receiver's
	sender, receiver int                            // the peers' ports; 0: learned (a client's)
	peer             [2]atomic.Pointer[net.UDPAddr] // sender, receiver
	drop             func(fromSender bool, p []byte) bool

	// the sender's Shutdowns that drop let through, and those it dropped
	shutdownsPassed, shutdownsDropped atomic.Int32

	ca, cb *net.UDPConn
	wg     sync.WaitGroup
}

// relayBuffer is the in-process relay's socket buffer size, as far as
// net.core.rmem_max and wmem_max allow.
const relayBuffer = 8 << 20

func (f *filterRelay) start() error {
	var err error
	if f.ca, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(loop), Port: f.a}); err != nil {
		return err
	}
	if f.cb, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(loop), Port: f.b}); err != nil {
		f.ca.Close()
		return err
	}
	for _, c := range []*net.UDPConn{f.ca, f.cb} {
		// The peers send in bursts of thousands of packets: with the
		// default 208 KiB the relay's own queue overflowed and the runs
		// crawled at 6-20 MB/s, losses the plan never asked for.
		_ = c.SetReadBuffer(relayBuffer)
		_ = c.SetWriteBuffer(relayBuffer)
	}
	for i, port := range []int{f.sender, f.receiver} {
		if port != 0 {
			f.peer[i].Store(&net.UDPAddr{IP: net.ParseIP(loop), Port: port})
		}
	}
	f.wg.Add(2)
	go f.pump(f.ca, f.cb, true)
	go f.pump(f.cb, f.ca, false)
	return nil
}

// pump forwards what arrives on from (from the sender if fromSender) out
// of out to the other peer. A peer without a fixed port is learned from
// the source of its datagrams.
func (f *filterRelay) pump(from, out *net.UDPConn, fromSender bool) {
	defer f.wg.Done()
	src, dst := &f.peer[1], &f.peer[0]
	if fromSender {
		src, dst = dst, src
	}
	buf := make([]byte, 65536)
	for {
		n, addr, err := from.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP port unreachable before the peer binds
		}
		if src.Load() == nil {
			src.Store(addr)
		}
		dropped := f.drop(fromSender, buf[:n])
		if fromSender && isControlType(buf[:n], 5) {
			if dropped {
				f.shutdownsDropped.Add(1)
			} else {
				f.shutdownsPassed.Add(1)
			}
		}
		if to := dst.Load(); !dropped && to != nil {
			out.WriteToUDP(buf[:n], to)
		}
	}
}

func (f *filterRelay) stop() {
	f.ca.Close()
	f.cb.Close()
	f.wg.Wait()
}

// firstDiff says where two files first differ, for a failure message.
func firstDiff(a, b string) string {
	fa, err := os.Open(a)
	if err != nil {
		return ""
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return ""
	}
	defer fb.Close()
	ra, rb := bufio.NewReaderSize(fa, 1<<20), bufio.NewReaderSize(fb, 1<<20)
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	var off int64
	for {
		na, ea := io.ReadFull(ra, ba)
		nb, eb := io.ReadFull(rb, bb)
		n := min(na, nb)
		if i := firstMismatch(ba[:n], bb[:n]); i >= 0 {
			return fmt.Sprintf("; first difference at byte %d", off+int64(i))
		}
		if na != nb {
			return fmt.Sprintf("; identical for the first %d bytes, then one file ends", off+int64(n))
		}
		off += int64(n)
		if ea != nil || eb != nil {
			return ""
		}
	}
}

func firstMismatch(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// ---- kill mid-stream -----------------------------------------------------

// killCase is a transfer from an endless source in which one side is
// SIGKILLed once data flows; the other must notice and exit non-zero.
type killCase struct {
	sender, receiver kind
	victim           side
	wantExit         int // survivor's expected status when it is p2pcat (0: any non-zero)
}

func (kc killCase) run(t *testing.T) {
	t.Helper()
	p := plan{sender: kc.sender, receiver: kc.receiver, rendezvous: true, first: sideReceiver}
	w := p.wire(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	zero, err := os.Open("/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	defer zero.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var received atomic.Int64
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		buf := make([]byte, 256<<10)
		for {
			n, err := pr.Read(buf)
			received.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	defer func() { pr.Close(); <-drained }()

	rcv := startProc(t, ctx, "receiver("+w.rcv.kind.String()+")", w.rcv.argv("recv"), nil, pw)
	pw.Close()
	snd := startProc(t, ctx, "sender("+w.snd.kind.String()+")", w.snd.argv("send"), zero, nil)

	// Wait for the stream to run for about a second.
	flowing := time.Time{}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if !snd.running() || !rcv.running() {
			dumpStderr(t, snd, rcv)
			t.Fatalf("a process ended before the kill (sender %s, receiver %s)", snd.status(), rcv.status())
		}
		if flowing.IsZero() && received.Load() >= 1<<20 {
			flowing = time.Now()
		}
		if !flowing.IsZero() && time.Since(flowing) >= time.Second {
			break
		}
		if time.Now().After(deadline) {
			dumpStderr(t, snd, rcv)
			t.Fatalf("no data flowing 20 s after start (%d bytes received)", received.Load())
		}
	}

	victim, survivor := snd, rcv
	if kc.victim == sideReceiver {
		victim, survivor = rcv, snd
	}
	before := received.Load()
	rate := float64(before) / time.Since(snd.started).Seconds() / 1e6
	victim.kill()
	killed := time.Now()
	<-victim.done

	var problems []string
	select {
	case <-survivor.done:
	case <-time.After(deathNoticeLimit):
		problems = append(problems, fmt.Sprintf("%s still running %v after its peer was killed", survivor.name, deathNoticeLimit))
		survivor.kill()
		<-survivor.done
	}
	took := survivor.ended.Sub(killed)
	t.Logf("%d bytes through before the kill (%.1f MB/s averaged from the sender's start); %s killed, %s ended after %.2fs: %s",
		before, rate, victim.name, survivor.name, took.Seconds(), survivor.status())
	if len(problems) == 0 {
		switch code := survivor.exitCode(); {
		case code == 0:
			problems = append(problems, fmt.Sprintf("%s exited 0 after its peer was killed; want non-zero", survivor.name))
		case kc.wantExit != 0 && !env.selftest && code != kc.wantExit:
			problems = append(problems, fmt.Sprintf("%s: %s; want exit status %d (connection lost)", survivor.name, survivor.status(), kc.wantExit))
		}
	}
	record(result{name: t.Name(), mbps: rate, failed: len(problems) > 0,
		note: fmt.Sprintf("survivor %s after %.2fs", survivor.status(), took.Seconds())})
	if len(problems) > 0 {
		for _, p := range problems {
			t.Error(p)
		}
		dumpStderr(t, survivor, victim)
	}
}
