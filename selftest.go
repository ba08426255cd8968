package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/p2pcat/p2pcat/punch"
	"github.com/p2pcat/p2pcat/stream"
	"github.com/p2pcat/p2pcat/udt"
)

// selftest runs the path users take, minus the NAT: a sender and a
// receiver in this process, each on its own loopback UDP socket, meeting
// in UDT rendezvous and moving opts.size pseudo-random bytes through the
// stream layer. It checks the SHA-256 on both ends and reports MB/s and CPU.
func selftest(ctx context.Context, opts *options) int {
	a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		errorf("cannot open a loopback UDP socket: %v", err)
		return exitError
	}
	defer a.Close()
	b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		errorf("cannot open a loopback UDP socket: %v", err)
		return exitError
	}
	defer b.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	type dialed struct {
		c   *udt.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, err := udt.Rendezvous(cctx, b, a.LocalAddr(), nil)
		ch <- dialed{c, err}
	}()
	ca, err := udt.Rendezvous(cctx, a, b.LocalAddr(), nil)
	d := <-ch
	if err == nil {
		err = d.err
	}
	if err != nil {
		errorf("loopback rendezvous failed: %v", err)
		return exitConnect
	}
	// Both sides know both tokens' secrets, as after a real exchange.
	sa, sb := punch.NewSecret(), punch.NewSecret()
	type secured struct {
		c   *stream.SecureConn
		err error
	}
	sch := make(chan secured, 1)
	go func() {
		c, err := stream.Secure(d.c, false, stream.Keys{Own: sb, Peer: sa, HavePeer: true})
		sch <- secured{c, err}
	}()
	secA, err := stream.Secure(ca, true, stream.Keys{Own: sa, Peer: sb, HavePeer: true})
	sr := <-sch
	if err == nil {
		err = sr.err
	}
	if err != nil {
		errorf("selftest handshake: %v", err)
		return exitAuth
	}
	secB := sr.c
	fmt.Fprintf(os.Stderr, "p2pcat: selftest: %d bytes over loopback UDT (rendezvous, MSS %d, encrypted)\n", opts.size, ca.Stats().MSS)
	cpu0 := cpuTime()
	start := time.Now()
	var seed [32]byte
	src := io.LimitReader(rand.NewChaCha8(seed), opts.size)
	sentHash := sha256.New()
	sendErr := make(chan error, 1)
	go func() {
		_, err := stream.Send(secA, io.TeeReader(src, sentHash), 0)
		if err == nil {
			err = ca.Close()
		}
		sendErr <- err
	}()
	gotHash := sha256.New()
	done := make(chan error, 1)
	var n int64
	go func() {
		var err error
		n, err = stream.Receive(gotHash, secB)
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		errorf("interrupted")
		return exitInterrupted
	}
	elapsed := time.Since(start)
	if err != nil {
		errorf("selftest receive: %v", err)
		return exitCut
	}
	if err := <-sendErr; err != nil {
		errorf("selftest send: %v", err)
		return exitCut
	}
	d.c.Close()
	cpu := cpuTime() - cpu0
	if !bytes.Equal(sentHash.Sum(nil), gotHash.Sum(nil)) || n != opts.size {
		errorf("selftest: data differs (%d of %d bytes)", n, opts.size)
		return exitError
	}
	st := ca.Stats()
	fmt.Fprintf(os.Stderr, "p2pcat: selftest: ok, sha256 equal; %.1f MB/s (%.2fs), CPU %.2fs (%.0f%% of one core), %d packets, %d retransmitted\n",
		float64(n)/elapsed.Seconds()/1e6, elapsed.Seconds(), cpu.Seconds(), 100*cpu.Seconds()/elapsed.Seconds(), st.PacketsSent, st.PacketsRetransmitted)
	return exitOK
}
