//go:build lab && linux

package lab

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The forger: the test binary run again (helperEnv=forge) inside a lab
// node, sending probe-format datagrams with spoofed source addresses from
// a raw socket. Its configuration comes through the environment, not
// flags, because the testing package owns the command line.
const (
	forgeFlowsEnv = "P2PCAT_LAB_FORGE_FLOWS" // "SRC>DST SRC>DST ...", ip:port each
	forgePPSEnv   = "P2PCAT_LAB_FORGE_PPS"   // datagrams per second, all flows together
	forgeSecsEnv  = "P2PCAT_LAB_FORGE_SECS"  // stop after this many seconds
)

// flow is one spoofed source -> destination.
type flow struct{ src, dst netip.AddrPort }

func (f flow) String() string { return f.src.String() + ">" + f.dst.String() }

// forgedProbe builds a datagram in p2pcat's probe format (punch/probe.go):
// magic "P2P\xC7", type 1..4, nonce, echo, 8 reserved bytes, then a MAC
// under a secret nobody holds and, every other time, 16 zero bytes (what
// a sender given a bare address puts there) or 16 more random bytes.
func forgedProbe(rng *rand.Rand, i int) []byte {
	b := make([]byte, 64)
	copy(b, "P2P\xc7")
	b[4] = byte(1 + i%4)
	binary.BigEndian.PutUint64(b[8:], rng.Uint64())
	binary.BigEndian.PutUint64(b[16:], rng.Uint64())
	for j := 32; j < 48; j++ {
		b[j] = byte(rng.Uint32())
	}
	if i%8 >= 4 {
		for j := 48; j < 64; j++ {
			b[j] = byte(rng.Uint32())
		}
	}
	return b
}

// ipUDP wraps payload in an IPv4/UDP header from src to dst. The kernel
// fills in the IP checksum, total length and id (raw(7)); a zero UDP
// checksum means "none" in IPv4.
func ipUDP(src, dst netip.AddrPort, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64 // TTL
	p[9] = syscall.IPPROTO_UDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[20:], src.Port())
	binary.BigEndian.PutUint16(p[22:], dst.Port())
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// forgeMain is the helper's main: flood until the time is up or SIGTERM,
// then print what was sent.
func forgeMain() int {
	var flows []flow
	for _, f := range strings.Fields(os.Getenv(forgeFlowsEnv)) {
		s, d, ok := strings.Cut(f, ">")
		src, err1 := netip.ParseAddrPort(s)
		dst, err2 := netip.ParseAddrPort(d)
		if !ok || err1 != nil || err2 != nil || !src.Addr().Is4() || !dst.Addr().Is4() {
			fmt.Fprintf(os.Stderr, "forge: bad flow %q\n", f)
			return 2
		}
		flows = append(flows, flow{src, dst})
	}
	pps, _ := strconv.Atoi(os.Getenv(forgePPSEnv))
	secs, _ := strconv.Atoi(os.Getenv(forgeSecsEnv))
	if len(flows) == 0 || pps <= 0 || secs <= 0 {
		fmt.Fprintf(os.Stderr, "forge: need %s, %s and %s\n", forgeFlowsEnv, forgePPSEnv, forgeSecsEnv)
		return 2
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		fmt.Fprintf(os.Stderr, "forge: raw socket: %v\n", err)
		return 1
	}
	defer syscall.Close(fd)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second)
	defer cancel()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	sent := make([]int, len(flows))
	var errs int
	var lastErr error
	fmt.Fprintf(os.Stderr, "forge: %d datagrams/s for up to %ds over %d flows: %v\n", pps, secs, len(flows), flows)
	start := time.Now()
	for i := 0; ctx.Err() == nil; {
		due := int(time.Since(start).Seconds() * float64(pps))
		for ; i < due; i++ {
			f := flows[i%len(flows)]
			d := f.dst.Addr().As4()
			if err := syscall.Sendto(fd, ipUDP(f.src, f.dst, forgedProbe(rng, i/len(flows))), 0, &syscall.SockaddrInet4{Addr: d}); err != nil {
				errs++
				lastErr = err
				continue
			}
			sent[i%len(flows)]++
		}
		time.Sleep(time.Millisecond)
	}
	var parts []string
	for k, f := range flows {
		parts = append(parts, fmt.Sprintf("%v: %d", f, sent[k]))
	}
	fmt.Fprintf(os.Stderr, "forge: sent in %.1fs: %s", time.Since(start).Seconds(), strings.Join(parts, ", "))
	if errs > 0 {
		fmt.Fprintf(os.Stderr, "; %d send errors, last: %v", errs, lastErr)
	}
	fmt.Fprintln(os.Stderr)
	return 0
}

// startForger runs the forger in a lab node until stopped (SIGTERM) or
// secs have passed. It may be called from any goroutine.
func startForger(t *testing.T, node string, flows []flow, pps, secs int) (*proc, error) {
	t.Helper()
	var fs []string
	for _, f := range flows {
		fs = append(fs, f.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+10)*time.Second)
	t.Cleanup(cancel)
	return tryStartProc(t, ctx, "forger", node, []string{env.self}, nil, nil,
		helperEnv+"=forge",
		forgeFlowsEnv+"="+strings.Join(fs, " "),
		forgePPSEnv+"="+strconv.Itoa(pps),
		forgeSecsEnv+"="+strconv.Itoa(secs))
}

// stop asks a process to end with SIGTERM and waits (then kills) for it.
func (p *proc) stop(limit time.Duration) {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(limit):
		p.kill()
		<-p.done
	}
}
