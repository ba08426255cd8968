//go:build lab && linux

package lab

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// natTypes are the lab's NAT types (netlab.sh --nat-a/--nat-b).
var natTypes = []string{"none", "full-cone", "restricted", "port-restricted", "symmetric"}

// unpunchable are the ordered pairs the lab's own raw prober cannot punch
// (shared/lab/README.md, hole-punching table).
var unpunchable = [][2]string{
	{"port-restricted", "symmetric"},
	{"symmetric", "port-restricted"},
	{"symmetric", "symmetric"},
}

func punchable(a, b string) bool {
	for _, p := range unpunchable {
		if p[0] == a && p[1] == b {
			return false
		}
	}
	return true
}

// impaired is the impaired uplink pair: both sides delayed,
// jittered and lossy (linkemu).
var impaired = []string{"--a-delay", "30", "--a-jitter", "5", "--a-loss", "3",
	"--b-delay", "40", "--b-jitter", "5", "--b-loss", "3"}

// ---- 1. NAT type ---------------------------------------------------------

// TestNATType: `p2pcat netcheck` in peerA names each of the lab's NAT
// types correctly, against stund (RFC 3489 CHANGE-REQUEST) and against
// coturn (RFC 5780 OTHER-ADDRESS), with one lab per type.
func TestNATType(t *testing.T) {
	requireEnv(t)
	publicRE := regexp.MustCompile(`p2pcat: public address (\S+) \(local (\S+)\)`)
	for _, typ := range natTypes {
		t.Run(typ, func(t *testing.T) {
			labUp(t, "--nat-a", typ)
			wantIP := wanA
			if typ == "none" {
				wantIP = publicA
			}
			for _, srv := range []struct{ name, addr string }{{"stund", stund}, {"coturn", coturn}} {
				t.Run(srv.name, func(t *testing.T) {
					out, err := nodeOutput("peerA", env.p2pcat, "netcheck", "--stun", srv.addr, "--ntp", ntpGood)
					var natLine, pubLine string
					for _, l := range strings.Split(out, "\n") {
						switch {
						case strings.HasPrefix(l, "p2pcat: your NAT"), strings.HasPrefix(l, "p2pcat: you have no NAT"):
							natLine = l
						case strings.HasPrefix(l, "p2pcat: public address"):
							pubLine = l
						}
					}
					t.Logf("%s", natLine)
					want := "p2pcat: your NAT is " + typ + " ("
					if typ == "none" {
						want = "p2pcat: you have no NAT"
					}
					ok := err == nil && strings.HasPrefix(natLine, want)
					if !ok {
						t.Errorf("netcheck against %s (%s): want a line starting %q; err=%v", srv.name, srv.addr, want, err)
					}
					if m := publicRE.FindStringSubmatch(pubLine); m == nil {
						t.Errorf("no \"public address\" line")
						ok = false
					} else if ap, err := netip.ParseAddrPort(m[1]); err != nil || ap.Addr().String() != wantIP {
						t.Errorf("public address %s, want %s:*", m[1], wantIP)
						ok = false
					}
					if !strings.Contains(out, "p2pcat: clock offset ") {
						t.Errorf("no \"clock offset\" line: NTP through the NAT failed")
						ok = false
					}
					if !ok {
						t.Logf("netcheck output:\n%s", out)
					}
					note := natLine
					if i := strings.Index(note, " ("); i > 0 {
						note = note[:i]
					}
					record(result{test: t.Name(), failed: !ok, connect: "-", external: "-", path: "-", mbps: "-",
						note: strings.TrimPrefix(note, "p2pcat: ")})
				})
			}
		})
	}
}

// ---- 2. the punching matrix ----------------------------------------------

// figure is one run's connect time, for the bar.
type figure struct {
	run       string
	secs      float64 // p2pcat's figure (slower side); +Inf-ish if not connected
	external  float64 // the suite's measurement, -1 if unknown
	connected bool
}

// TestPunchMatrix: every pair the lab's raw prober punches (13 unordered
// pairs, A = sender in peerA, B = receiver in peerB), unimpaired with
// P2PCAT_LAB_MIB (64 MiB) and impaired (delay, jitter, 3 % loss each
// side) with P2PCAT_LAB_SMALL_MIB (16 MiB), byte-exact, default slots.
// Over all 26 runs, at least 95 % must connect within one slot + 5 s of
// both tokens being known.
func TestPunchMatrix(t *testing.T) {
	requireEnv(t)
	start := time.Now()
	var figures []figure
	var table []string
	for i, a := range natTypes {
		for _, b := range natTypes[i:] {
			if !punchable(a, b) {
				continue
			}
			t.Run(a+"_to_"+b, func(t *testing.T) {
				for _, mode := range []string{"clean", "impaired"} {
					t.Run(mode, func(t *testing.T) {
						args := []string{"--nat-a", a, "--nat-b", b, "--stun", "stund"}
						src, timeout := env.big, defaultRunTimeout
						if mode == "impaired" {
							args = append(args, impaired...)
							src, timeout = env.small, impairedRunTimeout
						}
						labUp(t, args...)
						r := meeting{src: src, timeout: timeout}.run(t)
						checkPeers(t, r, a, b)
						f := figure{run: t.Name(), external: -1}
						if s, ok := r.connectSecs(); ok {
							f.secs, f.connected = s, true
						}
						if e, ok := r.externalSecs(); ok {
							f.external = e
						}
						figures = append(figures, f)
						table = append(table, fmt.Sprintf("%-16s %-16s %-9s %8s %8s  %-26s %7s MB/s  %-4s %s",
							a, b, mode, secsOrDash(f.secs, f.connected), secsOrDash(f.external, f.external >= 0),
							pathKinds(r), orDash(r.rate), map[bool]string{true: "FAIL", false: "ok"}[t.Failed()], r.note))
					})
				}
			})
		}
	}
	t.Logf("matrix: %d runs in %s\n%-16s %-16s %-9s %8s %8s  %-26s %12s  %s\n%s", len(figures),
		time.Since(start).Round(time.Second), "A (send)", "B (recv)", "uplinks", "connect", "measured", "path (A/B)", "receiver", "",
		strings.Join(table, "\n"))
	checkBar(t, figures)
}

// checkPeers checks that each side connected to an address of the other
// side's network: its public address, or (same network) its host address.
func checkPeers(t *testing.T, r *meetRun, natA, natB string) {
	t.Helper()
	if !r.A.conn.ok || !r.B.conn.ok {
		return
	}
	want := map[*side][]string{r.A: {wanB, publicB}, r.B: {wanA, publicA}}
	for s, ips := range want {
		ap, err := netip.ParseAddrPort(s.conn.addr)
		if err != nil || (ap.Addr().String() != ips[0] && ap.Addr().String() != ips[1]) {
			t.Errorf("%s connected to %s: not the peer's network (%s)", s.proc.name, s.conn.addr, strings.Join(ips, " or "))
		}
	}
	// With an endpoint-independent mapping, the peer's address is exactly
	// the public address in its token.
	for _, c := range []struct {
		s, peer *side
		peerNAT string
	}{{r.A, r.B, natB}, {r.B, r.A, natA}} {
		if c.peerNAT != "symmetric" && c.s.conn.addr != publicOf(c.peer.token) {
			t.Errorf("%s connected to %s, but the peer's (%s, endpoint-independent mapping) token says %s",
				c.s.proc.name, c.s.conn.addr, c.peerNAT, publicOf(c.peer.token))
		}
	}
}

func pathKinds(r *meetRun) string {
	k := func(c connLine) string {
		if !c.ok {
			return "-"
		}
		return c.kind
	}
	return k(r.A.conn) + "/" + k(r.B.conn)
}

func secsOrDash(s float64, ok bool) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.1fs", s)
}

// checkBar asserts the bar over a set of runs: at least barShare
// of them connected within connectBar of both tokens being known (by
// p2pcat's own figure; runs that did not connect count as over).
func checkBar(t *testing.T, figs []figure) {
	t.Helper()
	if len(figs) == 0 {
		return
	}
	var in int
	var over []string
	var all []float64
	for _, f := range figs {
		if f.connected && f.secs <= connectBar.Seconds() {
			in++
		} else {
			over = append(over, fmt.Sprintf("%s (%s)", f.run, secsOrDash(f.secs, f.connected)))
		}
		if f.connected {
			all = append(all, f.secs)
		}
		if f.connected && f.external > connectBar.Seconds() {
			t.Logf("note: %s: the suite measured %.1fs (p2pcat says %.1fs), over the bar", f.run, f.external, f.secs)
		}
	}
	sort.Float64s(all)
	share := float64(in) / float64(len(figs))
	msg := fmt.Sprintf("connect time bar (<= %v in >= %.0f%% of runs): %d of %d runs within (%.1f%%)",
		connectBar, barShare*100, in, len(figs), share*100)
	if len(all) > 0 {
		msg += fmt.Sprintf("; connected runs: min %.1fs, median %.1fs, max %.1fs", all[0], all[len(all)/2], all[len(all)-1])
	}
	if len(over) > 0 {
		msg += "; over the bar: " + strings.Join(over, ", ")
	}
	if share < barShare {
		t.Error(msg)
	} else {
		t.Log(msg)
	}
}

// TestUnpunchable: the three pairs that cannot be punched directly end
// after --retries 2 (--wait 0) with exit status 3 and a hint that names the cause.
func TestUnpunchable(t *testing.T) {
	requireEnv(t)
	hintRE := regexp.MustCompile(`(?m)^p2pcat: hint: .*$`)
	for _, p := range unpunchable {
		a, b := p[0], p[1]
		t.Run(a+"_to_"+b, func(t *testing.T) {
			labUp(t, "--nat-a", a, "--nat-b", b, "--stun", "stund")
			// --wait 0: attempts that hear nothing count (both sides of
			// an unpunchable pair hear nothing, like a peer without our
			// token).
			retries := peerSpec{extra: []string{"--retries", "2", "--wait", "0"}}
			r := meeting{src: env.small, a: retries, b: retries, wantFail: true, timeout: 90 * time.Second}.run(t)
			for _, s := range []*side{r.A, r.B} {
				e := s.proc.stderr()
				if !strings.Contains(e, "could not connect") || !strings.Contains(e, "after 2 attempts") {
					t.Errorf("%s: no \"could not connect ... after 2 attempts\" line", s.proc.name)
				}
				hints := hintRE.FindAllString(e, -1)
				named := false
				for _, h := range hints {
					named = named || strings.Contains(h, "symmetric") || (strings.Contains(h, a) && strings.Contains(h, b))
				}
				if !named {
					t.Errorf("%s: no hint line naming the NAT types or \"symmetric\" (hints: %q)", s.proc.name, hints)
				}
				if s.conn.ok {
					t.Errorf("%s: connected to %s, which the lab's NATs should make impossible", s.proc.name, s.conn.addr)
				}
				if len(hints) > 0 {
					t.Logf("%s exit %d, %s", s.proc.name, s.proc.exitCode(), hints[len(hints)-1])
				}
			}
			if t.Failed() {
				dumpStderr(t, r.A.proc, r.B.proc)
			}
		})
	}
}

// ---- 3. same NAT, no hairpin --------------------------------------------

// TestSameNATHairpinOff: both peers behind natA, which does not hairpin:
// only the host addresses in the tokens work, and p2pcat must find them
// and say "local path". With NAT type none both peers have public
// addresses on one LAN, so the path is their public (= host) address.
func TestSameNATHairpinOff(t *testing.T) {
	requireEnv(t)
	for _, typ := range natTypes {
		t.Run(typ, func(t *testing.T) {
			labUp(t, "--same-nat", "--hairpin", "off", "--nat-a", typ, "--stun", "stund")
			r := meeting{src: env.small}.run(t)
			for _, c := range []struct{ s, peer *side }{{r.A, r.B}, {r.B, r.A}} {
				if !c.s.conn.ok {
					continue
				}
				switch {
				case c.s.conn.kind == "local":
				case typ == "none" && c.s.conn.kind == "public" && c.s.conn.addr == publicOf(c.peer.token):
					t.Logf("%s: public path to %s (no NAT: the public address is the host address)", c.s.proc.name, c.s.conn.addr)
				default:
					t.Errorf("%s connected over a %s path to %s; want the local path (hairpin is off)", c.s.proc.name, c.s.conn.kind, c.s.conn.addr)
				}
				if ap, err := netip.ParseAddrPort(c.s.conn.addr); err == nil && typ != "none" && !strings.HasPrefix(ap.Addr().String(), "10.1.0.") {
					t.Errorf("%s connected to %s, not a host on natA's LAN (10.1.0.0/24)", c.s.proc.name, c.s.conn.addr)
				}
			}
		})
	}
}

// ---- 4. a lying NTP server -----------------------------------------------

// TestSkewedNTP: peer B's only NTP server is 2.5 s ahead. The two sides
// then aim at slot instants 2.5 s apart; p2pcat must still connect within
// the bar. Two runs: one timed so that both sides pick the same slot, one
// so that the skew makes them pick different slots.
func TestSkewedNTP(t *testing.T) {
	requireEnv(t)
	const (
		skew  = 2500 * time.Millisecond
		bLead = time.Second // A starts this long before B
	)
	labUp(t, "--skew-ntp", "2.5s", "--stun", "stund")
	// Both sides pick their slot as soon as both tokens are known, which
	// is B's STUN time after B starts; the first run measures it.
	stunTime := 1500 * time.Millisecond
	slotRE := regexp.MustCompile(`attempt 1: waiting \S+ for the next slot \((\S+)\)`)
	offRE := regexp.MustCompile(`clock offset (\S+) from`)
	for _, c := range []struct {
		name  string
		phase time.Duration // aim: both tokens known this far into a 10 s slot
		split bool
	}{
		// A (true time) takes the first slot >= now+2 s, B (now+2.5 s)
		// the first >= now+4.5 s: the same slot when the tokens are known
		// up to 5.5 s into a slot, different slots from 5.5 s to 8 s.
		{"same-slot", 2 * time.Second, false},
		{"split-slot", 6750 * time.Millisecond, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			startA := c.phase - stunTime - bLead
			wait := (startA - time.Duration(time.Now().UnixNano()%int64(slotLength)) + 2*slotLength) % slotLength
			time.Sleep(wait)
			r := meeting{src: env.small, b: peerSpec{ntp: ntpSkewed}, bAfter: bLead}.run(t)
			if !r.tokensAt.IsZero() {
				stunTime = r.tokensAt.Sub(r.B.proc.started)
				t.Logf("both tokens known %.1fs into a slot (aimed at %.1fs; B's STUN took %.1fs)",
					float64(r.tokensAt.UnixNano()%int64(slotLength))/1e9, c.phase.Seconds(), stunTime.Seconds())
			}
			if m := offRE.FindStringSubmatch(r.B.proc.stderr()); m == nil {
				t.Errorf("B printed no clock offset: did it use the NTP server at all?")
			} else if d, err := time.ParseDuration(m[1]); err != nil || d < skew-200*time.Millisecond || d > skew+200*time.Millisecond {
				t.Errorf("B's clock offset is %s; the lying server is %v off", m[1], skew)
			} else {
				t.Logf("B's clock offset %s (from %s); A's is %s", m[1], ntpSkewed,
					orDash(firstSubmatch(offRE, r.A.proc.stderr())))
			}
			sa, sb := firstSubmatch(slotRE, r.A.proc.stderr()), firstSubmatch(slotRE, r.B.proc.stderr())
			t.Logf("first slot (each side's own idea of internet time): A %s, B %s", orDash(sa), orDash(sb))
			if sa != "" && sb != "" && (sa != sb) != c.split {
				t.Logf("note: the sides picked %s slots, not the case this run aimed at", map[bool]string{true: "different", false: "the same"}[sa != sb])
			}
			s, ok := r.connectSecs()
			if !ok || s > connectBar.Seconds() {
				t.Errorf("connected: %v, in %s; the bar is %v", ok, secsOrDash(s, ok), connectBar)
			}
		})
	}
}

func firstSubmatch(re *regexp.Regexp, s string) string {
	if m := re.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}

// ---- 5. a late token ------------------------------------------------------

// TestLateToken: NAT state expires after 20 s of silence (--map-timeout
// 20), and peer B starts (so A learns B's token) only 60 s after A. A
// must keep its mapping alive (STUN refresh) and still connect.
func TestLateToken(t *testing.T) {
	requireEnv(t)
	const late = 60 * time.Second
	labUp(t, "--map-timeout", "20", "--stun", "stund")
	var mapping string
	r := meeting{
		src:    env.small,
		bAfter: late,
		beforeB: func(r *meetRun) {
			// After 3 timeouts, is A's public mapping still in natA?
			b, err := readFileNow(r.A.tokPath)
			if err != nil {
				mapping = "A wrote no token: " + err.Error()
				return
			}
			pub, err := netip.ParseAddrPort(publicOf(b))
			if err != nil {
				mapping = "A's token has no public address"
				return
			}
			out, _ := nodeOutput("natA", "nft", "list", "map", "ip", "lab", "ext2int")
			re := regexp.MustCompile(fmt.Sprintf(`\b%d (?:timeout \S+ )?expires (\S+) : ([0-9.]+) \. (\d+)`, pub.Port()))
			if m := re.FindStringSubmatch(out); m != nil {
				mapping = fmt.Sprintf("natA still maps %v -> %s:%s (expires in %s)", pub, m[2], m[3], m[1])
			} else {
				mapping = fmt.Sprintf("MISSING: natA has no mapping for %v any more:\n%s", pub, out)
			}
		},
		timeout: defaultRunTimeout,
	}.run(t)
	t.Logf("at B's start (%v after A): %s", late, mapping)
	if strings.HasPrefix(mapping, "MISSING") || strings.HasPrefix(mapping, "A ") {
		t.Errorf("A's NAT mapping was not kept alive while it waited for the token")
	}
	if s, ok := r.connectSecs(); ok && s > connectBar.Seconds() {
		t.Errorf("connected %.1fs after both tokens were known; the bar is %v", s, connectBar)
	}
}

// TestLatePaste: B has A's token at once and starts punching; A's user
// pastes B's token only 63 s later (B's first attempts hear nothing and,
// with the default --wait, do not use up its retries). They must still
// connect, within the bar of test 2 from the paste.
func TestLatePaste(t *testing.T) {
	requireEnv(t)
	const late = 63 * time.Second
	labUp(t, "--stun", "stund")
	r := meeting{src: env.small, aPaste: late, timeout: defaultRunTimeout}.run(t)
	if !r.A.conn.ok || !r.B.conn.ok {
		t.Fatalf("did not connect")
	}
	pasted := r.pastedAt.Load()
	if pasted == 0 {
		t.Fatalf("the test never gave A the token")
	}
	secs := r.bothAt.Sub(time.Unix(0, pasted)).Seconds()
	t.Logf("connected %.1fs after A's late paste (%v after B had A's token); B's attempts: %d",
		secs, late, strings.Count(r.B.proc.stderr(), "nothing from your peer yet"))
	if secs > connectBar.Seconds() {
		t.Errorf("connected %.1fs after the paste; the bar is %v", secs, connectBar)
	}
}

func readFileNow(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// ---- 6. forged probes ----------------------------------------------------

// TestForgedProbes: during the punch window a forger in the srv namespace
// floods both peers' public mappings with probe-format datagrams whose
// MACs are wrong: spoofed from the other peer's public address (the right
// addresses, the wrong secret), and from a stranger. B's NAT is full cone,
// so every forgery reaches B; A's uplink is delayed 100 ms, so B sees
// forgeries well before the genuine probes. The forgeries must neither
// select a path nor break the run: each side connects to the other's
// true public address and the bytes arrive intact.
func TestForgedProbes(t *testing.T) {
	requireEnv(t)
	labUp(t, "--nat-a", "port-restricted", "--nat-b", "full-cone", "--a-delay", "100", "--stun", "stund")
	const stranger = "192.0.2.99:40000"
	var forger *proc
	var flows []flow
	r := meeting{
		src: env.small,
		onTokens: func(r *meetRun) {
			a, errA := readFileNow(r.A.tokPath)
			b, errB := readFileNow(r.B.tokPath)
			pa, err1 := netip.ParseAddrPort(publicOf(a))
			pb, err2 := netip.ParseAddrPort(publicOf(b))
			if errA != nil || errB != nil || err1 != nil || err2 != nil {
				return
			}
			flows = []flow{
				{pa, pb}, // B hears "A" with a wrong MAC
				{netip.MustParseAddrPort(stranger), pb},
				{pb, pa}, // A hears "B" (once its NAT lets B in)
			}
			var err error
			if forger, err = startForger(t, "srv", flows, 2000, 40); err != nil {
				t.Errorf("forger: %v", err)
			}
		},
		onConnected: func(r *meetRun) {
			if forger != nil {
				forger.stop(3 * time.Second)
			}
		},
	}.run(t)
	if forger == nil {
		t.Fatalf("the forger never started (token files unreadable?)")
	}
	forger.stop(3 * time.Second)
	t.Logf("forger: %s", strings.TrimSpace(forger.stderr()))
	if len(flows) > 0 && strings.Contains(forger.stderr(), "send errors") {
		t.Errorf("the forger could not send all its datagrams")
	}
	for _, c := range []struct{ s, peer *side }{{r.A, r.B}, {r.B, r.A}} {
		want := publicOf(c.peer.token)
		if c.s.conn.ok && c.s.conn.addr != want {
			t.Errorf("%s connected to %s, not to the peer's public address %s", c.s.proc.name, c.s.conn.addr, want)
		}
		e := c.s.proc.stderr()
		drops := map[string]int{}
		for _, l := range strings.Split(e, "\n") {
			if i := strings.Index(l, dropLine); i >= 0 {
				drops[strings.TrimSpace(l[i+len(dropLine):])]++
			}
		}
		t.Logf("%s dropped unauthenticated probes while punching: %v", c.s.proc.name, drops)
		if strings.Contains(e, "peer-reflexive candidate "+stranger) {
			t.Errorf("%s took the stranger %s as a candidate", c.s.proc.name, stranger)
		}
		if c.s == r.B && drops[publicOf(c.peer.token)] == 0 {
			t.Errorf("B saw no forged probe from A's address during punching: the test did not test anything " +
				"(forger too late, or p2pcat -v no longer reports dropped probes)")
		}
	}
}
