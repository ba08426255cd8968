// Command p2pcat copies a byte stream straight between two machines over
// UDT, the way nc copies one over TCP. See usage below and man/p2pcat.1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/p2pcat/p2pcat/punch"
	"github.com/p2pcat/p2pcat/stream"
	"github.com/p2pcat/p2pcat/udt"
	"github.com/p2pcat/p2pcat/udt/cc"
)

const usage = `Usage:
    p2pcat send [options] [PEER]   send standard input to the peer
    p2pcat recv [options] [PEER]   write what the peer sends to standard output
    p2pcat cat [options] [PEER]    both at once, like nc: each direction ends
                                   on its own
    p2pcat netcheck [options]      show your public address, NAT type and clock
    p2pcat selftest [--size SIZE]  move SIZE bytes to ourselves over loopback
                                   UDT, encrypted, and report MB/s and CPU

Each side prints a token ("tell your peer: ...") to give the other side by
chat, and takes the peer's token as PEER, as @FILE, or from a prompt on the
terminal. Both then start on the next shared 10-second slot (internet time
from NTP), punch through their NATs and meet in UDT rendezvous. The stream
is encrypted and authenticated with keys bound to the two tokens. A bare
ip:port is accepted as PEER too (then the peer cannot be authenticated by
token: compare the code p2pcat shows).

Options:
    --localport N     Local UDP port (default: random). Reuse one that worked.
    --stun HOST:PORT  STUN server, repeatable; "none" skips STUN (default:
                      a list of public servers).
    --ntp HOST        NTP server, repeatable; "none" uses the local clock
                      (default: a list of public servers).
    --slot DURATION   Start on multiples of DURATION of internet time
                      (default 10s); 0 starts at once.
    --retries N       Connection attempts once the peer has been heard
                      from, one per slot (default 6).
    --wait DURATION   Keep trying this long while nothing at all comes
                      from the peer: it may not have your token yet
                      (default 5m; 0: such attempts count as retries).
    --me FILE         Also write our token to FILE (for scripts).
    -l, --listen      Wait for one UDT client on --localport instead (no
                      tokens, no punching: libudt peers, plain networks).
    --dial            Connect to PEER (ip:port) as a UDT client.
    --raw             Plain UDT4 byte stream without p2pcat's framing and
                      encryption, for libudt peers (udtpeer, p2pcopy).
    -z, --compress[=LEVEL]
                      Compress with zstd (LEVEL on zstd's scale, default 1).
                      Blocks that do not shrink go as they are. The
                      receiver needs no option.
    --progress        Show bytes, rate and elapsed time on stderr.
    --cc NAME         Congestion control of what we send: bbr (default,
                      model-based, loss-tolerant) or udt (UDT4's own).
    -w SECS           Give up when nothing moves for SECS seconds, like nc -w.
    --timeout DUR     With --listen/--dial: give up connecting after DUR
                      (default 30s).
    -v, --verbose     Report more on stderr (connection, rate, clock).
    --version         Print the version and exit.
    -h, --help        Print this help and exit.

Exit status:
    0   success: every byte arrived (recv) or was acknowledged (send)
    1   other error (input/output, socket)
    2   usage error
    3   could not connect
    4   connection lost or stream cut before its end; peer aborted
    5   the peer stopped reading (its output was closed, e.g. | head)
    6   authentication or integrity failure (wrong token, tampering)
    130 interrupted

Environment:
    P2PCAT_TRACE=1    Print the transport's state every 500 ms, and its
                      timeouts (diagnostic).

Examples:
    # two terminals on one machine (or two machines, with internet)
    p2pcat recv > copy.tar          # prints its token, asks for the peer's
    tar c dir | p2pcat send         # the same; paste each token in the other

    # scripted, no STUN/NTP, on one machine
    p2pcat recv --stun none --ntp none --slot 0 --me a.tok @b.tok > out &
    p2pcat send --stun none --ntp none --slot 0 --me b.tok @a.tok < in

    # a libudt peer: udtpeer recv -L -l 9000 > out
    p2pcat send --raw --dial 127.0.0.1:9000 < file
`

type options struct {
	mode      string // send, recv, netcheck, selftest
	peer      string // token, ip:port, @FILE, or "" (prompt)
	localPort int
	listen    bool
	dial      bool
	raw       bool
	verbose   bool
	timeout   time.Duration
	size      int64
	stun      listFlag
	ntp       listFlag
	slot      time.Duration
	retries   int
	wait      time.Duration
	me        string
	cc        string // congestion control: bbr or udt
	compress  int    // zstd level, 0 = off
	progress  bool
	idle      time.Duration // -w
}

// compressFlag is -z/--compress[=LEVEL]: a boolean flag that also takes a
// level.
type compressFlag struct{ level *int }

func (f compressFlag) String() string   { return "" }
func (f compressFlag) IsBoolFlag() bool { return true }
func (f compressFlag) Set(s string) error {
	switch s {
	case "true":
		*f.level = 1
	case "false":
		*f.level = 0
	default:
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 22 {
			return errors.New("LEVEL must be 1..22")
		}
		*f.level = n
	}
	return nil
}

// listFlag is a repeatable string option.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func (o *options) noSTUN() bool { return len(o.stun) == 1 && o.stun[0] == "none" }
func (o *options) noNTP() bool  { return len(o.ntp) == 1 && o.ntp[0] == "none" }

func (o *options) stunServers() []string {
	if len(o.stun) == 0 {
		return punch.DefaultSTUNServers
	}
	return o.stun
}

func (o *options) ntpServers() []string {
	if len(o.ntp) == 0 {
		return punch.DefaultNTPServers
	}
	return o.ntp
}

func (o *options) udtConfig() *udt.Config {
	name := o.cc
	return &udt.Config{
		CC: func(clk cc.Clock) cc.Controller { return cc.New(name, clk) },
		// libudt's 8192-packet buffers (12 MB) cap the flight at 8192
		// packets counted from the cumulative ACK point; behind the holes
		// of a lossy 300 Mbit/s, 100 ms path (lab scenario d) the flight
		// reaches 14000. The rings are powers of two: 16384 packets are
		// 24 MB each, touched only as data flows.
		FlowWindow: 16384,
		SendBuffer: 16384,
		// A --raw peer may be libudt, whose sender sizes its window from
		// the receive rate we report and needs libudt's high figure
		// (lab scenario g: libudt -> p2pcat 4.2 -> 70 Mbit/s).
		LibudtRate: o.raw,
		// A framed peer is p2pcat, whose UDT keeps the first flight: no
		// round trip's wait for its first packet (the key exchange went
		// from 2 RTTs to 1 in lab scenario c).
		PeerTakesEarlyData: !o.raw,
		Logf:               traceLogf(),
	}
}

// debugf is for detail that only -v shows.
func (o *options) debugf(format string, args ...any) { verbosef(o, format, args...) }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	opts, code := parseArgs(args)
	if code >= 0 {
		return code
	}
	// A closed stdout (p2pcat recv | head) must be an EPIPE we handle by
	// telling the sender, not a SIGPIPE that kills us silently.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	switch opts.mode {
	case "selftest":
		return selftest(ctx, opts)
	case "netcheck":
		return netcheck(ctx, opts)
	default:
		return transfer(ctx, opts)
	}
}

// parseArgs returns the options, or an exit code >= 0 when the program
// should stop (help, version, usage error).
func parseArgs(args []string) (*options, int) {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return nil, exitUsage
	}
	opts := &options{mode: args[0], timeout: 30 * time.Second, size: 1 << 30, slot: 10 * time.Second, retries: 6, wait: 5 * time.Minute}
	switch args[0] {
	case "send", "recv", "cat", "selftest", "netcheck":
	case "-h", "--help", "-help", "help":
		fmt.Fprint(os.Stdout, usage)
		return nil, exitOK
	case "--version", "-version", "version":
		fmt.Println("p2pcat", version())
		return nil, exitOK
	default:
		errorf("unknown command %q: want send, recv, cat, netcheck or selftest", args[0])
		hintf("run p2pcat --help for usage")
		return nil, exitUsage
	}
	fs := flag.NewFlagSet("p2pcat", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var help, showVersion bool
	var size string
	fs.IntVar(&opts.localPort, "localport", 0, "")
	fs.BoolVar(&opts.listen, "l", false, "")
	fs.BoolVar(&opts.listen, "listen", false, "")
	fs.BoolVar(&opts.dial, "dial", false, "")
	fs.BoolVar(&opts.raw, "raw", false, "")
	fs.BoolVar(&opts.verbose, "v", false, "")
	fs.BoolVar(&opts.verbose, "verbose", false, "")
	fs.DurationVar(&opts.timeout, "timeout", opts.timeout, "")
	fs.StringVar(&size, "size", "1GiB", "")
	fs.Var(&opts.stun, "stun", "")
	fs.Var(&opts.ntp, "ntp", "")
	fs.DurationVar(&opts.slot, "slot", opts.slot, "")
	fs.IntVar(&opts.retries, "retries", opts.retries, "")
	fs.DurationVar(&opts.wait, "wait", opts.wait, "")
	fs.StringVar(&opts.me, "me", "", "")
	fs.Var(compressFlag{&opts.compress}, "z", "")
	fs.Var(compressFlag{&opts.compress}, "compress", "")
	fs.BoolVar(&opts.progress, "progress", false, "")
	fs.StringVar(&opts.cc, "cc", "bbr", "")
	var idleSecs int
	fs.IntVar(&idleSecs, "w", 0, "")
	fs.BoolVar(&help, "h", false, "")
	fs.BoolVar(&help, "help", false, "")
	fs.BoolVar(&showVersion, "version", false, "")
	// Accept options before and after PEER, as users type them.
	var positional []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			errorf("%v", err)
			hintf("run p2pcat --help for usage")
			return nil, exitUsage
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		positional = append(positional, rest[0])
		rest = rest[1:]
	}
	opts.idle = time.Duration(idleSecs) * time.Second
	if idleSecs < 0 {
		errorf("-w must not be negative")
		return nil, exitUsage
	}
	if help {
		fmt.Fprint(os.Stdout, usage)
		return nil, exitOK
	}
	if showVersion {
		fmt.Println("p2pcat", version())
		return nil, exitOK
	}
	for _, l := range []listFlag{opts.stun, opts.ntp} {
		for _, v := range l {
			if v == "none" && len(l) > 1 {
				errorf("\"none\" cannot be combined with servers in --stun/--ntp")
				return nil, exitUsage
			}
		}
	}
	if opts.mode == "netcheck" {
		if len(positional) > 0 {
			errorf("netcheck takes no PEER")
			return nil, exitUsage
		}
		return opts, -1
	}
	if opts.mode == "selftest" {
		n, err := parseSize(size)
		if err != nil {
			errorf("invalid --size %q: %v", size, err)
			return nil, exitUsage
		}
		opts.size = n
		if len(positional) > 0 {
			errorf("selftest takes no PEER")
			return nil, exitUsage
		}
		return opts, -1
	}
	switch {
	case len(positional) > 1:
		errorf("too many arguments: %s", strings.Join(positional, " "))
		return nil, exitUsage
	case opts.listen && opts.dial:
		errorf("-l/--listen and --dial exclude each other")
		return nil, exitUsage
	case opts.listen && len(positional) == 1:
		errorf("-l/--listen takes no PEER: it waits for whoever connects")
		return nil, exitUsage
	case opts.listen && opts.localPort == 0:
		errorf("-l/--listen needs --localport")
		hintf("the peer must know which port to connect to, e.g. --localport 9000")
		return nil, exitUsage
	case opts.dial && len(positional) == 0:
		errorf("--dial needs PEER (ip:port)")
		return nil, exitUsage
	case opts.localPort < 0 || opts.localPort > 65535:
		errorf("invalid --localport %d", opts.localPort)
		return nil, exitUsage
	case opts.timeout <= 0:
		errorf("--timeout must be positive")
		return nil, exitUsage
	case opts.slot < 0:
		errorf("--slot must not be negative")
		return nil, exitUsage
	case opts.retries < 1:
		errorf("--retries must be at least 1")
		return nil, exitUsage
	case opts.wait < 0:
		errorf("--wait must not be negative")
		return nil, exitUsage
	case cc.New(opts.cc, cc.SystemClock{}) == nil:
		errorf("unknown --cc %q: want bbr or udt", opts.cc)
		return nil, exitUsage
	case opts.raw && opts.compress > 0:
		errorf("--raw and -z/--compress exclude each other: a raw stream has no framing to mark compressed blocks")
		return nil, exitUsage
	}
	if len(positional) == 1 {
		opts.peer = positional[0]
	}
	return opts, -1
}

// transfer runs send or recv: connect, secure, copy, close, and map the
// outcome to an exit status.
func transfer(ctx context.Context, opts *options) int {
	network := "udp4"
	var peer *net.UDPAddr
	if opts.dial {
		var err error
		if peer, err = resolvePeer(opts.peer); err != nil {
			errorf("invalid PEER %q: %v", opts.peer, err)
			hintf("with --dial, PEER is ip:port, e.g. 203.0.113.7:9000")
			return exitUsage
		}
		if peer.IP.To4() == nil {
			network = "udp"
		}
	}
	pc, err := net.ListenUDP(network, &net.UDPAddr{Port: opts.localPort})
	if err != nil {
		errorf("cannot open UDP port %d: %v", opts.localPort, err)
		return exitError
	}
	defer pc.Close()
	verbosef(opts, "local port %d", pc.LocalAddr().(*net.UDPAddr).Port)

	var (
		conn      *udt.Conn
		keys      stream.Keys
		initiator bool
		code      int
	)
	if opts.listen || opts.dial {
		conn, code = connect(ctx, opts, pc, peer)
		keys, initiator = stream.Keys{Own: punch.NewSecret()}, opts.dial
	} else {
		var m *meeting
		if m, code = meet(ctx, opts, pc); m != nil {
			conn = m.conn
			keys = stream.Keys{Own: m.own.Secret, Peer: m.peer.Secret, HavePeer: m.peer.HasSecret}
			initiator = m.controlling
		}
	}
	if conn == nil {
		return code
	}
	return copyStream(ctx, opts, conn, keys, initiator)
}

// connect sets up a plain UDT connection (--listen, --dial): no tokens.
func connect(ctx context.Context, opts *options, pc net.PacketConn, peer *net.UDPAddr) (*udt.Conn, int) {
	cctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	cfg := opts.udtConfig()
	var (
		conn *udt.Conn
		err  error
		how  string
	)
	switch {
	case opts.listen:
		how = "listening"
		verbosef(opts, "waiting for a UDT client on port %d", opts.localPort)
		var l *udt.Listener
		if l, err = udt.Listen(pc, cfg); err == nil {
			conn, err = l.Accept(cctx)
			l.Close()
		}
	case opts.dial:
		how = "client"
		conn, err = udt.Dial(cctx, pc, peer, cfg)
	default:
		how = "rendezvous"
		conn, err = udt.Rendezvous(cctx, pc, peer, cfg)
	}
	if err != nil {
		if ctx.Err() != nil {
			errorf("interrupted while connecting")
			return nil, exitInterrupted
		}
		if errors.Is(err, context.DeadlineExceeded) {
			errorf("could not connect to %s within %v (%s)", peerName(opts), opts.timeout, how)
			if how == "rendezvous" {
				hintf("both sides must run at the same time, each naming the other's ip:port and its own --localport")
			}
		} else {
			errorf("could not connect to %s: %v", peerName(opts), err)
		}
		return nil, exitConnect
	}
	verbosef(opts, "connected to %v (%s)", conn.RemoteAddr(), how)
	return conn, 0
}

func peerName(opts *options) string {
	if opts.peer == "" {
		return "a client"
	}
	return opts.peer
}

// copyStream secures the connection (unless --raw), moves the data and
// closes the connection.
func copyStream(ctx context.Context, opts *options, conn *udt.Conn, keys stream.Keys, initiator bool) int {
	if !opts.raw {
		began := time.Now()
		sc, err := secure(ctx, conn, keys, initiator)
		if err != nil {
			conn.Abort()
			return exitCode(opts, 0, err)
		}
		verbosef(opts, "key exchange done in %.3fs (%s)", time.Since(began).Seconds(), sc.Cipher())
		if !sc.Authenticated() {
			warningf("the peer is NOT authenticated (no token secret was shared): compare this code with your peer before trusting the data: %s", sc.Code())
		}
		return pipeStreams(ctx, opts, conn, sc)
	}
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	stopTrace := startTrace(conn)
	defer stopTrace()
	bufSize := 45 * conn.PayloadSize() // whole packets: no short ones mid-stream
	go func() {
		var r result
		switch opts.mode {
		case "send":
			r.n, r.err = io.CopyBuffer(conn, onlyReader{os.Stdin}, make([]byte, bufSize))
			if r.err == nil {
				r.err = conn.Close()
			}
		case "recv":
			// Straight from the receive buffer (udt.Conn's WriteTo).
			r.n, r.err = conn.WriteTo(os.Stdout)
		case "cat":
			// UDT4 has no half-close: send stdin, and end when the peer
			// closes, as libudt peers do.
			go io.CopyBuffer(conn, onlyReader{os.Stdin}, make([]byte, bufSize))
			r.n, r.err = conn.WriteTo(os.Stdout)
		}
		done <- r
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		errorf("interrupted")
		conn.Abort()
		return exitInterrupted
	}
	conn.Close()
	elapsed := time.Since(start)
	verb := "received"
	if opts.mode == "send" {
		verb = "sent"
	}
	verbosef(opts, "%s %d bytes in %.3fs (%.1f MB/s)", verb, r.n, elapsed.Seconds(), float64(r.n)/elapsed.Seconds()/1e6)
	return exitCode(opts, r.n, r.err)
}

// secure runs the encrypted handshake, bounded in time.
func secure(ctx context.Context, conn *udt.Conn, keys stream.Keys, initiator bool) (*stream.SecureConn, error) {
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	defer conn.SetDeadline(time.Time{})
	return stream.Secure(conn, initiator, keys)
}

// onlyReader hides *os.File's WriteTo so that io.CopyBuffer reads stdin
// into our buffer of whole packets.
type onlyReader struct{ io.Reader }

func resolvePeer(s string) (*net.UDPAddr, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("bad port %q", port)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("%q is not an IP address", host)
	}
	return &net.UDPAddr{IP: ip, Port: p}, nil
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1000}, {"M", 1000_000}, {"G", 1000_000_000}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a positive number, optionally with K, M, G, KiB, MiB or GiB")
	}
	return n * mult, nil
}
