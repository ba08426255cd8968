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
	"time"

	"github.com/p2pcat/p2pcat/stream"
	"github.com/p2pcat/p2pcat/udt"
)

const usage = `Usage:
    p2pcat send [options] PEER     send standard input to PEER
    p2pcat recv [options] PEER     write what PEER sends to standard output
    p2pcat send|recv -l --localport N [options]
                                   wait for one UDT client instead of a PEER
    p2pcat selftest [--size SIZE]  move SIZE bytes to ourselves over loopback
                                   UDT and report MB/s and CPU (default 1GiB)

PEER is the peer's ip:port. By default both sides connect to each other at
the same time (UDT rendezvous), so each side gives the other its address
and fixes its own port with --localport.

Options:
    --localport N   Local UDP port (default: random, printed with -v).
    -l, --listen    Wait for one UDT client on --localport (no PEER).
    --dial          Connect to PEER as a UDT client; PEER listens.
    --raw           Plain UDT4 byte stream without p2pcat's framing, for
                    libudt peers (udtpeer, p2pcopy). The end of the stream
                    is then only the peer's UDT shutdown.
    --timeout DUR   Give up connecting after DUR (default 30s).
    -v, --verbose   Report the connection and transfer rate on stderr.
    --version       Print the version and exit.
    -h, --help      Print this help and exit.

Exit status:
    0   success: every byte arrived (recv) or was acknowledged (send)
    1   other error (input/output, socket)
    2   usage error
    3   could not connect
    4   connection lost or stream cut before its end; peer aborted
    130 interrupted

Examples:
    # two terminals on one machine
    p2pcat recv --localport 9001 127.0.0.1:9002 > copy.tar
    tar c dir | p2pcat send --localport 9002 127.0.0.1:9001

    # a libudt peer: udtpeer recv -L -l 9000 > out
    p2pcat send --raw --dial 127.0.0.1:9000 < file
`

type options struct {
	mode      string // send, recv, selftest
	peer      string
	localPort int
	listen    bool
	dial      bool
	raw       bool
	verbose   bool
	timeout   time.Duration
	size      int64
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	opts, code := parseArgs(args)
	if code >= 0 {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	switch opts.mode {
	case "selftest":
		return selftest(ctx, opts)
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
	opts := &options{mode: args[0], timeout: 30 * time.Second, size: 1 << 30}
	switch args[0] {
	case "send", "recv", "selftest":
	case "-h", "--help", "-help", "help":
		fmt.Fprint(os.Stdout, usage)
		return nil, exitOK
	case "--version", "-version", "version":
		fmt.Println("p2pcat", version())
		return nil, exitOK
	default:
		errorf("unknown command %q: want send, recv or selftest", args[0])
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
	if help {
		fmt.Fprint(os.Stdout, usage)
		return nil, exitOK
	}
	if showVersion {
		fmt.Println("p2pcat", version())
		return nil, exitOK
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
	case !opts.listen && len(positional) == 0:
		errorf("missing PEER (ip:port)")
		hintf("run p2pcat --help for usage")
		return nil, exitUsage
	case opts.localPort < 0 || opts.localPort > 65535:
		errorf("invalid --localport %d", opts.localPort)
		return nil, exitUsage
	case opts.timeout <= 0:
		errorf("--timeout must be positive")
		return nil, exitUsage
	}
	if len(positional) == 1 {
		opts.peer = positional[0]
	}
	return opts, -1
}

// transfer runs send or recv: connect, copy, close, and map the outcome to
// an exit status.
func transfer(ctx context.Context, opts *options) int {
	var peer *net.UDPAddr
	network := "udp"
	if opts.peer != "" {
		var err error
		peer, err = resolvePeer(opts.peer)
		if err != nil {
			errorf("invalid PEER %q: %v", opts.peer, err)
			hintf("PEER is ip:port, e.g. 203.0.113.7:9000")
			return exitUsage
		}
		if peer.IP.To4() != nil {
			network = "udp4"
		}
	}
	pc, err := net.ListenUDP(network, &net.UDPAddr{Port: opts.localPort})
	if err != nil {
		errorf("cannot open UDP port %d: %v", opts.localPort, err)
		return exitError
	}
	defer pc.Close()
	verbosef(opts, "local port %d", pc.LocalAddr().(*net.UDPAddr).Port)

	conn, code := connect(ctx, opts, pc, peer)
	if conn == nil {
		return code
	}
	return copyStream(ctx, opts, conn)
}

func connect(ctx context.Context, opts *options, pc net.PacketConn, peer *net.UDPAddr) (*udt.Conn, int) {
	cctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	cfg := &udt.Config{}
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

// copyStream moves the data and closes the connection.
func copyStream(ctx context.Context, opts *options, conn *udt.Conn) int {
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	bufSize := 45 * conn.PayloadSize() // whole packets: no short ones mid-stream
	go func() {
		var r result
		switch {
		case opts.mode == "send" && opts.raw:
			r.n, r.err = io.CopyBuffer(conn, onlyReader{os.Stdin}, make([]byte, bufSize))
			if r.err == nil {
				r.err = conn.Close()
			}
		case opts.mode == "send":
			r.n, r.err = stream.Send(conn, os.Stdin, bufSize)
			if r.err == nil {
				r.err = conn.Close()
			}
		case opts.raw:
			r.n, r.err = io.CopyBuffer(os.Stdout, onlyReader{conn}, make([]byte, bufSize))
		default:
			r.n, r.err = stream.Receive(os.Stdout, conn)
			if r.err == nil {
				// Let the sender see its last packets acknowledged and
				// close first; it sends Shutdown then.
				conn.SetReadDeadline(time.Now().Add(3 * time.Second))
				io.Copy(io.Discard, conn)
			}
		}
		done <- r
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		if !opts.raw && opts.mode == "send" {
			stream.Abort(conn, stream.ReasonInterrupted, "interrupted")
		}
		errorf("interrupted")
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

// onlyReader hides WriteTo/ReadFrom so that io.CopyBuffer uses our buffer.
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
