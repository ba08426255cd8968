//go:build lab && linux

package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/test/internal/suite"
)

// ---- p2pcat --raw against libudt through NATs -----------------------------
//
// TestRawUdtpeer needs the libudt oracle: P2PCAT_INTEROP_BIN names the
// directory holding udtpeer (as for test/interop; .ci/run builds it for
// both suites). Unset, the test skips.

const (
	// rawRunTimeout bounds one direction (16 MiB): a healthy run takes a
	// few seconds; even the libudt "sender first" crawl (~2 MB/s) would
	// finish well inside it.
	rawRunTimeout = 60 * time.Second
	// rawConnectLimit: both sides connected within this long after the
	// second side started. p2pcat's first rendezvous attempt alone lasts
	// 8 s, and the libudt side retries its handshake every 250 ms.
	rawConnectLimit = 10 * time.Second
	// rawGap is how long the receiver runs (its handshakes dropped by the
	// NATs, the holes still closed) before the sender starts.
	rawGap = time.Second
)

var (
	rawConnRE     = regexp.MustCompile(`p2pcat: connected to (\S+) \(rendezvous, ([0-9.]+)s after both tokens were known\)`)
	rawBytesRE    = regexp.MustCompile(`p2pcat: (?:sent|received) ([0-9]+) bytes in ([0-9.]+)s \(([0-9.]+) MB/s\)`)
	udtpeerConnRE = regexp.MustCompile(`udtpeer\[\w+\]: connected in ([0-9.]+) s: local (\S+) peer (\S+) mss ([0-9]+)`)
	udtpeerRateRE = regexp.MustCompile(`udtpeer\[\w+\]: (?:sent|received) ([0-9]+) bytes in ([0-9.]+) s = ([0-9.]+) MB/s`)
	udtpeerRvRE   = regexp.MustCompile(`udtpeer\[\w+\]: rendezvous to `)
	udtpeerCPURE  = regexp.MustCompile(`udtpeer\[\w+\]: cpu [0-9.]+ s over [0-9.]+ s wall`)
)

// rawDirection is one transfer of TestRawUdtpeer. Each uses its own pair
// of ports, so that it starts from fresh NAT mappings and a closed
// restricted-NAT filter even though both share one lab.
type rawDirection struct {
	name         string
	p2pcatSends  bool
	portA, portB int // local UDP ports of p2pcat (peerA) and udtpeer (peerB)
}

// TestRawUdtpeer: `p2pcat --raw` in peerA behind a full-cone NAT meets
// libudt 4.11 (`udtpeer -r`) in peerB behind an address-restricted NAT in
// UDT rendezvous, 16 MiB (P2PCAT_LAB_SMALL_MIB) each way, byte-exact.
//
// --raw has no tokens: each side is told the other's public ip:port. Both
// use a fixed local port (--localport, udtpeer -l), and both NATs map
// endpoint-independently and keep the port, so the public address is the
// NAT's WAN address with the same port. The test checks that premise
// (p2pcat's own STUN answer for A, the lab's STUN prober for B) before it
// relies on it. p2pcat gets the lab's STUN and NTP servers only; --slot 0
// makes it start the rendezvous right after STUN, as udtpeer does (no
// slots). The restricted NAT only lets A's packets in after B has sent to
// A's address, and the full-cone NAT only once A has a mapping: the
// receiver starts first (rawGap ahead, its early handshakes dropped), so
// the holes open during the UDT handshake itself. Receiver first is also
// what avoids libudt's crawl when it sends to a peer that has not
// connected yet (shared/interop/README.md).
func TestRawUdtpeer(t *testing.T) {
	requireEnv(t)
	bin := os.Getenv("P2PCAT_INTEROP_BIN")
	if bin == "" {
		t.Skip("P2PCAT_INTEROP_BIN is not set: build the libudt oracle with make in a writable copy of " +
			"../shared/interop (needs libudt-dev g++ make) and set P2PCAT_INTEROP_BIN to the directory holding udtpeer")
	}
	udtpeer := filepath.Join(bin, "udtpeer")
	if fi, err := os.Stat(udtpeer); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("P2PCAT_INTEROP_BIN=%s: %s is missing or not executable", bin, udtpeer)
	}
	labUp(t, "--nat-a", "full-cone", "--nat-b", "restricted", "--stun", "stund")
	for _, d := range []rawDirection{
		{name: "p2pcat-to-udtpeer", p2pcatSends: true, portA: 41001, portB: 41002},
		{name: "udtpeer-to-p2pcat", p2pcatSends: false, portA: 41011, portB: 41012},
	} {
		t.Run(d.name, func(t *testing.T) { d.run(t, udtpeer, env.small) })
	}
}

func (d rawDirection) run(t *testing.T, udtpeer string, src *dataFile) {
	pubA := netip.AddrPortFrom(netip.MustParseAddr(wanA), uint16(d.portA))
	pubB := netip.AddrPortFrom(netip.MustParseAddr(wanB), uint16(d.portB))

	// B has no STUN of its own: ask the lab's prober, from udtpeer's port,
	// what natB maps it to. (It leaves the filter closed for A: only
	// the STUN server's address is "seen".)
	if got, err := stunMapping("peerB", d.portB); err != nil {
		t.Fatalf("STUN from peerB:%d: %v", d.portB, err)
	} else if got != pubB {
		t.Fatalf("natB maps peerB:%d to %v, not %v: the NAT is not port-preserving, so udtpeer's public address is unknown", d.portB, got, pubB)
	}

	dir, err := os.MkdirTemp(env.workDir, "raw-")
	if err != nil {
		t.Fatal(err)
	}
	outPath := filepath.Join(dir, "out.bin")
	defer os.Remove(outPath)
	in, err := os.Open(src.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), rawRunTimeout)
	defer cancel()

	role := func(sends bool) string {
		if sends {
			return "send"
		}
		return "recv"
	}
	p2pArgv := []string{env.p2pcat, role(d.p2pcatSends), "-v", "--raw",
		"--stun", stund, "--ntp", ntpGood, "--slot", "0",
		"--localport", strconv.Itoa(d.portA), pubB.String()}
	udtArgv := []string{udtpeer, role(!d.p2pcatSends), "-r", "-l", strconv.Itoa(d.portB), "-c", pubA.String()}
	startP2p := func() *proc {
		stdin, stdout := in, (*os.File)(nil)
		if !d.p2pcatSends {
			stdin, stdout = nil, out
		}
		return startProc(t, ctx, "A: p2pcat "+role(d.p2pcatSends)+" --raw", "peerA", p2pArgv, stdin, stdout)
	}
	startUdt := func() *proc {
		stdin, stdout := in, (*os.File)(nil)
		if d.p2pcatSends {
			stdin, stdout = nil, out
		}
		return startProc(t, ctx, "B: udtpeer "+role(!d.p2pcatSends)+" -r", "peerB", udtArgv, stdin, stdout)
	}

	// The receiver first: once it is under way (udtpeer bound and
	// handshaking; p2pcat past STUN, so natA has its mapping), the sender.
	// Until the sender's first packet, the NAT in front of it drops what
	// the receiver sends (natA: no mapping yet; natB: A's address not yet
	// seen); its input chain counts those drops.
	closedNAT := map[bool]string{true: "natA", false: "natB"}[d.p2pcatSends]
	drops0, err := natDrops(closedNAT)
	if err != nil {
		t.Fatal(err)
	}
	var a, b, first *proc
	if d.p2pcatSends {
		b = startUdt()
		first = b
		if !waitStderr(b, udtpeerRvRE, 5*time.Second) {
			dumpStderr(t, b)
			t.Fatalf("udtpeer did not start its rendezvous")
		}
	} else {
		a = startP2p()
		first = a
		if !waitStderr(a, tokenRE, 10*time.Second) {
			dumpStderr(t, a)
			t.Fatalf("p2pcat printed no address (STUN)")
		}
	}
	time.Sleep(rawGap)
	second := time.Now()
	if a == nil {
		a = startP2p()
	} else {
		b = startUdt()
	}
	t.Logf("the sender started %v after the receiver", second.Sub(first.started).Round(time.Millisecond))

	// When each side says it is connected, as it happens.
	var aConnAt, bConnAt time.Time
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if aConnAt.IsZero() && rawConnRE.MatchString(a.stderr()) {
				aConnAt = time.Now()
			}
			if bConnAt.IsZero() && udtpeerConnRE.MatchString(b.stderr()) {
				bConnAt = time.Now()
			}
			if !a.running() && !b.running() {
				return
			}
			<-tick.C
		}
	}()
	waitBoth(a, b, 10*time.Second)
	<-watchDone
	rcv := b
	if !d.p2pcatSends {
		rcv = a
	}

	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var notes []string
	for _, p := range []*proc{a, b} {
		switch {
		case p.exitCode() == 0:
		case p == b && diedInTeardown(p):
			// libudt's UDT::close/cleanup, after udtpeer has reported
			// its totals: not the transfer's fault, and the bytes are
			// still checked below. Said in the summary, not hidden.
			notes = append(notes, "udtpeer: "+p.status()+" in UDT::close/cleanup after its report")
			t.Logf("udtpeer %s after printing its report (libudt teardown)", p.status())
		default:
			fail("%s: %s (want exit 0); its last words: %s", p.name, p.status(), p.lastLine())
		}
	}
	if ctx.Err() != nil {
		var got int64
		if fi, err := os.Stat(outPath); err == nil {
			got = fi.Size()
		}
		fail("run cut at its deadline of %v with %d of %d bytes received", rawRunTimeout, got, src.Size)
	}
	if sum, n, err := suite.FileSHA256(outPath); err != nil {
		fail("%v", err)
	} else if sum != src.Sum {
		fail("received %d bytes with sha256 %s, want %d bytes with %s", n, sum, src.Size, src.Sum)
	}

	// Each side met the other at the public address it was given, and
	// p2pcat's own STUN answer confirms the premise for A.
	ae, be := a.stderr(), b.stderr()
	if m := tokenRE.FindStringSubmatch(ae); m == nil {
		fail("p2pcat printed no \"tell your peer\" line")
	} else if pub := publicOf(m[1]); pub != pubA.String() {
		fail("p2pcat's public address (STUN) is %s, not %v: natA is not port-preserving, udtpeer was pointed at the wrong address", pub, pubA)
	}
	var own, udtOwn string
	if m := rawConnRE.FindStringSubmatch(ae); m == nil {
		fail("p2pcat never printed \"connected to ... (rendezvous, ...)\"")
	} else {
		own = m[2] + "s"
		if m[1] != pubB.String() {
			fail("p2pcat connected to %s, want udtpeer's public address %v", m[1], pubB)
		}
	}
	if m := udtpeerConnRE.FindStringSubmatch(be); m == nil {
		fail("udtpeer never printed \"connected in ...\"")
	} else {
		udtOwn = m[1] + "s"
		if m[3] != pubA.String() {
			fail("udtpeer's peer is %s, want p2pcat's public address %v", m[3], pubA)
		}
	}
	connect := "-"
	if !aConnAt.IsZero() && !bConnAt.IsZero() {
		c := later(aConnAt, bConnAt).Sub(second)
		connect = fmt.Sprintf("%.1fs", c.Seconds())
		if c > rawConnectLimit {
			fail("both sides connected %.1fs after the second one started; the limit is %v", c.Seconds(), rawConnectLimit)
		}
	}

	if drops, err := natDrops(closedNAT); err != nil {
		fail("%v", err)
	} else if drops -= drops0; drops == 0 {
		fail("%s dropped nothing from the WAN before the sender started: the holes were not closed, so the run proves nothing about opening them", closedNAT)
	} else {
		t.Logf("%s dropped %d unsolicited packets from the WAN before its side opened the hole", closedNAT, drops)
	}

	// Throughput: what the receiver reports (from its connection to the
	// last byte), and the suite's wall figure (both connected -> receiver
	// exit).
	rate, wall := "-", "-"
	rateRE := rawBytesRE
	if d.p2pcatSends {
		rateRE = udtpeerRateRE
	}
	if m := rateRE.FindStringSubmatch(rcv.stderr()); m != nil {
		rate = m[3]
		if n, _ := strconv.ParseInt(m[1], 10, 64); n != src.Size {
			fail("%s reports %s bytes, want %d", rcv.name, m[1], src.Size)
		}
	} else if rcv.exitCode() == 0 {
		fail("%s reported no byte count", rcv.name)
	}
	if !aConnAt.IsZero() && !bConnAt.IsZero() && !rcv.ended.IsZero() {
		wall = fmt.Sprintf("%.1f", float64(src.Size)/rcv.ended.Sub(later(aConnAt, bConnAt)).Seconds()/1e6)
	}
	sndRate := "-"
	if m := map[bool]*regexp.Regexp{true: rawBytesRE, false: udtpeerRateRE}[d.p2pcatSends].FindStringSubmatch(
		map[bool]string{true: ae, false: be}[d.p2pcatSends]); m != nil {
		sndRate = m[3]
	}
	t.Logf("%s: connected %s after the second start (p2pcat: %s after STUN; udtpeer: %s after its start); "+
		"%d MiB at %s MB/s (receiver's report), %s MB/s wall (connected -> receiver exit), sender reports %s MB/s",
		d.name, connect, orDash(own), orDash(udtOwn), src.Size>>20, rate, wall, sndRate)
	if s := udtpeerTotals(be); s != "" {
		t.Logf("udtpeer totals: %s", s)
	}
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) > 0 {
		dumpStderr(t, a, b)
	}
	record(result{test: t.Name(), failed: t.Failed(), connect: orDash(own), external: connect,
		path: "raw rendezvous", mbps: rate, problems: problems,
		note: strings.Join(append([]string{fmt.Sprintf("measured from the sender's start; wall %s MB/s; udtpeer: connected %s after its start",
			wall, orDash(udtOwn))}, notes...), "; ")})
}

// stunMapping asks the lab's STUN server, from node's UDP port, for the
// public address of that port.
func stunMapping(node string, port int) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns(node), filepath.Join(env.labDir, "bin", "probe"),
		"stun", "-local", fmt.Sprintf("0.0.0.0:%d", port), "-server", stund)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("probe stun: %v\n%s%s", err, outb, stderr.String())
	}
	var res struct {
		Results []struct {
			Mapped string `json:"mapped"`
		} `json:"results"`
	}
	if err := json.Unmarshal(outb, &res); err != nil || len(res.Results) == 0 {
		return netip.AddrPort{}, fmt.Errorf("probe stun: cannot read %q: %v", outb, err)
	}
	return netip.ParseAddrPort(res.Results[0].Mapped)
}

var natDropRE = regexp.MustCompile(`iifname "wan" counter packets ([0-9]+) bytes [0-9]+ drop`)

// natDrops is how many packets a NAT router's input chain has dropped
// from the WAN: unsolicited ones that matched no mapping or filter.
func natDrops(node string) (int64, error) {
	out, err := nodeOutput(node, "nft", "list", "chain", "ip", "lab", "input")
	if err != nil {
		return 0, fmt.Errorf("nft list chain in %s: %v\n%s", node, err, out)
	}
	m := natDropRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no WAN drop counter in %s's input chain:\n%s", node, out)
	}
	return strconv.ParseInt(m[1], 10, 64)
}

// waitStderr waits until p's stderr matches re; false if p ends or the
// limit passes first.
func waitStderr(p *proc, re *regexp.Regexp, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if re.MatchString(p.stderr()) {
			return true
		}
		if !p.running() {
			return re.MatchString(p.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// udtpeerTotals is the interesting part of udtpeer's final perfmon line.
func udtpeerTotals(stderr string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if i := strings.Index(l, "total sent="); i >= 0 {
			return l[i+len("total "):]
		}
	}
	return ""
}

// diedInTeardown: udtpeer was killed by a signal after printing its last
// report line ("cpu ... of one core"), which it prints just before
// UDT::close and UDT::cleanup.
func diedInTeardown(p *proc) bool {
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && p.ctx.Err() == nil && udtpeerCPURE.MatchString(p.stderr())
}
