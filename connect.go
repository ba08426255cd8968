package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/p2pcat/p2pcat/punch"
	"github.com/p2pcat/p2pcat/udt"
)

// meeting is what connecting by tokens produced.
type meeting struct {
	conn        *udt.Conn
	own, peer   punch.Token
	controlling bool // we lead: our side is the encryption initiator
}

// meet runs the whole serverless rendezvous on conn: learn our public
// address, tell the user our token, get the peer's, agree on a time slot,
// punch, and run the UDT rendezvous on the path that worked, retrying on
// the next slots. It returns nil and an exit status on failure.
func meet(ctx context.Context, opts *options, conn *net.UDPConn) (*meeting, int) {
	// Before any packet goes out: can we learn the peer's token at all?
	if opts.peer == "" {
		tty, err := openTTY()
		if err != nil {
			errorf("no PEER given and no terminal to ask for it (stdin carries the data)")
			hintf("pass the peer's token as an argument, or as @FILE")
			return nil, exitUsage
		}
		tty.Close()
	} else if !strings.HasPrefix(opts.peer, "@") {
		if _, err := punch.ParseToken(opts.peer); err != nil {
			errorf("invalid PEER %q: %v", opts.peer, err)
			hintf("PEER is the token your peer's p2pcat printed, or an ip:port")
			return nil, exitUsage
		}
	}
	sock := punch.NewSocket(conn)
	port := sock.LocalAddr().Port()

	// 1. Our public address and NAT type.
	var stunServer netip.AddrPort
	public := netip.AddrPort{}
	if !opts.noSTUN() {
		sctx, cancel := context.WithTimeout(ctx, 4*time.Second)
		servers := punch.ResolveServers(sctx, opts.stunServers())
		if len(servers) == 0 {
			warningf("no STUN server could be resolved: your token will carry only local addresses")
		} else if rep, err := punch.Classify(sctx, sock, servers); err != nil || !rep.Public.IsValid() {
			warningf("no STUN server answered: your token will carry only local addresses")
		} else {
			public = rep.Public
			stunServer = netip.MustParseAddrPort(rep.Server)
			infof("%s", rep.Summary())
		}
		cancel()
	}
	locals := localCandidates(port, public)
	if !public.IsValid() {
		if len(locals) == 0 {
			errorf("this machine has no IPv4 address to offer the peer")
			return nil, exitConnect
		}
		public, locals = locals[0], locals[1:]
	}
	own := punch.Token{Public: public, Locals: locals, Secret: punch.NewSecret(), HasSecret: true}

	// 2. Tell the user; take the peer's token.
	infof("tell your peer: %s", own)
	if opts.me != "" {
		if err := os.WriteFile(opts.me, []byte(own.String()+"\n"), 0o600); err != nil {
			errorf("cannot write --me file: %v", err)
			return nil, exitError
		}
	}
	// The mapping is kept alive until punching starts (the user pastes,
	// then we wait for a slot); probes and UDT keep it alive after.
	keepAlive := make(chan struct{})
	var stopOnce sync.Once
	stopKeepAlive := func() { stopOnce.Do(func() { close(keepAlive) }) }
	defer stopKeepAlive()
	if stunServer.IsValid() {
		go refreshMapping(sock, stunServer, keepAlive)
	}
	peer, err := peerToken(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			errorf("interrupted")
			return nil, exitInterrupted
		}
		errorf("%v", err)
		return nil, exitUsage
	}
	if !peer.HasSecret && !opts.raw {
		warningf("the peer was given as a bare address: its identity cannot be checked by token")
	}
	if err := punch.CheckTokens(own, peer); err != nil {
		errorf("%v", err)
		hintf("paste the token your peer's p2pcat printed, not your own")
		return nil, exitUsage
	}

	// 3. A common clock.
	var offset time.Duration
	if !opts.noNTP() && opts.slot > 0 {
		nctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		off, n, err := punch.ClockOffset(nctx, opts.ntpServers(), 2*time.Second)
		cancel()
		if err != nil {
			warningf("NTP unreachable (%v): using the local clock; start within a few seconds of your peer", err)
		} else {
			offset = off
			verbosef(opts, "clock offset %v from %d NTP server(s)", off.Round(time.Millisecond), n)
		}
	}

	// 4. Attempts on successive slots.
	// Attempts begun within --wait in which nothing at all came from the
	// peer do not count: the peer may not have pasted our token yet.
	start := time.Now()
	counted, attempt, heard := 0, 0, false
	for counted < opts.retries {
		attempt++
		counted++
		// The first attempt leaves 2 s to get ready; later ones take the
		// very next slot, or two sides an odd number of slots apart
		// would alternate forever.
		lead := 2 * time.Second
		if attempt > 1 {
			lead = 200 * time.Millisecond
		}
		slot := punch.NextSlot(time.Now().Add(offset), opts.slot, lead)
		if wait := time.Until(slot.Add(-offset)); wait > 0 {
			infof("attempt %d: waiting %.0fs for the next slot (%s)", attempt, wait.Seconds(), slot.Local().Format("15:04:05"))
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				errorf("interrupted")
				sock.Release()
				return nil, exitInterrupted
			}
		}
		stopKeepAlive()
		window := opts.slot - time.Second
		if window < 5*time.Second {
			window = 8 * time.Second
		}
		peerAddr := peer.Public
		how := "rendezvous"
		controlling := false
		began := time.Since(start)
		if !opts.raw {
			path, err := punch.Punch(ctx, sock, punch.Config{Own: own, Peer: peer, Window: window, Logf: opts.debugf})
			if err != nil {
				if ctx.Err() != nil {
					errorf("interrupted")
					sock.Release()
					return nil, exitInterrupted
				}
				heard = heard || !errors.Is(err, punch.ErrNoPeer)
				if !heard && began < opts.wait {
					counted--
					infof("attempt %d: nothing from your peer yet (has it got your token?); trying again on the next slot",
						attempt)
					continue
				}
				infof("attempt %d: %v", attempt, err)
				continue
			}
			peerAddr, how, controlling = path.Peer, fmt.Sprintf("%s path", path.Kind), path.Controlling
		}
		c := sock.Release()
		uctx, cancel := context.WithTimeout(ctx, max(window, 5*time.Second))
		uc, err := udt.Rendezvous(uctx, c, net.UDPAddrFromAddrPort(peerAddr), opts.udtConfig())
		cancel()
		if err == nil {
			infof("connected to %v (%s, %.1fs after both tokens were known)", peerAddr, how, time.Since(start).Seconds())
			return &meeting{conn: uc, own: own, peer: peer, controlling: controlling}, 0
		}
		if ctx.Err() != nil {
			errorf("interrupted")
			return nil, exitInterrupted
		}
		infof("attempt %d: UDT handshake with %v failed: %v", attempt, peerAddr, err)
		sock = punch.NewSocket(c)
	}
	sock.Release()
	errorf("could not connect to %v after %d attempts", peer.Public, attempt)
	hintf("both sides must run at the same time with each other's token; a symmetric NAT facing a port-restricted or symmetric one cannot be punched directly (p2pcat netcheck shows yours); try again, or reuse a port that worked with --localport")
	return nil, exitConnect
}

// localCandidates lists our host addresses for the token; tests replace
// it to keep every packet on loopback.
var localCandidates = punch.LocalCandidates

// peerToken reads the peer's token from PEER, from the file named by
// @FILE (waiting for it to appear), or from the terminal; never from
// stdin, which carries the data.
func peerToken(ctx context.Context, opts *options) (punch.Token, error) {
	switch {
	case strings.HasPrefix(opts.peer, "@"):
		name := opts.peer[1:]
		for {
			b, err := os.ReadFile(name)
			if err == nil && strings.HasSuffix(string(b), "\n") {
				t, err := punch.ParseToken(string(b))
				if err != nil {
					return t, fmt.Errorf("peer token in %s: %v", name, err)
				}
				return t, nil
			}
			select {
			case <-ctx.Done():
				return punch.Token{}, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	case opts.peer != "":
		t, err := punch.ParseToken(opts.peer)
		if err != nil {
			return t, fmt.Errorf("invalid PEER %q: %v", opts.peer, err)
		}
		return t, nil
	}
	tty, err := openTTY()
	if err != nil {
		return punch.Token{}, errors.New("no PEER given and no terminal to ask for it (stdin carries the data): pass the peer's token as an argument or @FILE")
	}
	defer tty.Close()
	type line struct {
		s   string
		err error
	}
	ch := make(chan line, 1)
	go func() {
		r := bufio.NewReader(tty)
		for {
			fmt.Fprint(tty, "p2pcat: paste your peer's token: ")
			s, err := r.ReadString('\n')
			if err != nil {
				ch <- line{err: err}
				return
			}
			if strings.TrimSpace(s) == "" {
				continue
			}
			if _, perr := punch.ParseToken(s); perr != nil {
				fmt.Fprintf(tty, "p2pcat: that does not look right: %v\n", perr)
				continue
			}
			ch <- line{s: s}
			return
		}
	}()
	select {
	case l := <-ch:
		if l.err != nil {
			return punch.Token{}, fmt.Errorf("reading the peer's token: %v", l.err)
		}
		return punch.ParseToken(l.s)
	case <-ctx.Done():
		return punch.Token{}, ctx.Err()
	}
}

func openTTY() (*os.File, error) {
	if runtime.GOOS == "windows" {
		return os.OpenFile("CONIN$", os.O_RDWR, 0)
	}
	return os.OpenFile("/dev/tty", os.O_RDWR, 0)
}

// refreshMapping keeps our NAT mapping alive while the user pastes,
// well inside a 30 s UDP timeout.
func refreshMapping(sock *punch.Socket, server netip.AddrPort, stop <-chan struct{}) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			punch.Discover(ctx, sock, []netip.AddrPort{server})
			cancel()
		}
	}
}
