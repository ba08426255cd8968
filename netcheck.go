package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/p2pcat/p2pcat/punch"
)

// netcheck prints what p2pcat would learn before meeting a peer: the public
// mapping, the NAT type, the clock offset, and which peers a direct
// connection is likely with. It contacts no peer.
func netcheck(ctx context.Context, opts *options) int {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: opts.localPort})
	if err != nil {
		errorf("cannot open UDP port %d: %v", opts.localPort, err)
		return exitError
	}
	defer conn.Close()
	sock := punch.NewSocket(conn)
	defer sock.Release()
	nat := punch.NATUnknown
	if opts.noSTUN() {
		fmt.Fprintln(os.Stderr, "p2pcat: STUN skipped (--stun none): public address unknown")
	} else {
		sctx, cancel := context.WithTimeout(ctx, 6*time.Second)
		servers := punch.ResolveServers(sctx, opts.stunServers())
		rep, err := punch.Classify(sctx, sock, servers)
		cancel()
		switch {
		case len(servers) == 0:
			fmt.Fprintln(os.Stderr, "p2pcat: no STUN server could be resolved")
		case err != nil:
			fmt.Fprintf(os.Stderr, "p2pcat: STUN: %v\n", err)
		default:
			nat = rep.NAT
			fmt.Fprintf(os.Stderr, "p2pcat: public address %v (local %v)\n", rep.Public, rep.Local)
			fmt.Fprintf(os.Stderr, "p2pcat: %s\n", rep.Summary())
		}
	}
	if opts.noNTP() {
		fmt.Fprintln(os.Stderr, "p2pcat: NTP skipped (--ntp none)")
	} else {
		nctx, cancel := context.WithTimeout(ctx, 4*time.Second)
		off, n, err := punch.ClockOffset(nctx, opts.ntpServers(), 3*time.Second)
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "p2pcat: NTP: %v (the local clock would be used)\n", err)
		} else {
			fmt.Fprintf(os.Stderr, "p2pcat: clock offset %v (%d NTP server(s))\n", off.Round(time.Millisecond), n)
		}
	}
	var ok, no []string
	for _, t := range []punch.NATType{punch.NATNone, punch.NATFullCone, punch.NATRestricted, punch.NATPortRestricted, punch.NATSymmetric} {
		if punch.DirectLikely(nat, t) {
			ok = append(ok, t.String())
		} else {
			no = append(no, t.String())
		}
	}
	fmt.Fprintf(os.Stderr, "p2pcat: a direct connection is likely with a peer whose NAT is: %s\n", strings.Join(ok, ", "))
	if len(no) > 0 {
		fmt.Fprintf(os.Stderr, "p2pcat: and unlikely with: %s\n", strings.Join(no, ", "))
	}
	return exitOK
}
