package punch

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

func loopbackSocket(t *testing.T) *Socket {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := NewSocket(c)
	t.Cleanup(func() { s.Release().Close() })
	return s
}

func tokenFor(s *Socket, secret bool) Token {
	t := Token{Public: s.LocalAddr()}
	if secret {
		t.Secret, t.HasSecret = NewSecret(), true
	}
	return t
}

func bare(t Token) Token { return Token{Public: t.Public, Locals: t.Locals} }

type punchResult struct {
	p   Path
	err error
}

func punchPair(t *testing.T, sa, sb *Socket, ownA, peerA, ownB, peerB Token) (Path, Path) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := make(chan punchResult, 1)
	go func() {
		p, err := Punch(ctx, sb, Config{Own: ownB, Peer: peerB, Window: 3 * time.Second})
		ch <- punchResult{p, err}
	}()
	pa, err := Punch(ctx, sa, Config{Own: ownA, Peer: peerA, Window: 3 * time.Second})
	rb := <-ch
	if err != nil || rb.err != nil {
		t.Fatalf("punch: A %v, B %v", err, rb.err)
	}
	return pa, rb.p
}

func TestPunchAgreesOnPath(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		aKnowsB, bKnowsA     bool
		wantAuthA, wantAuthB bool
	}{
		{"both tokens", true, true, true, true},
		{"only A has B's token", true, false, true, true},
		{"only B has A's token", false, true, true, true},
		{"bare addresses both ways", false, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb := loopbackSocket(t), loopbackSocket(t)
			ta, tb := tokenFor(sa, true), tokenFor(sb, true)
			peerA, peerB := tb, ta
			if !tc.aKnowsB {
				peerA = bare(tb)
			}
			if !tc.bKnowsA {
				peerB = bare(ta)
			}
			pa, pb := punchPair(t, sa, sb, ta, peerA, tb, peerB)
			if pa.Peer != sb.LocalAddr() || pb.Peer != sa.LocalAddr() {
				t.Fatalf("paths disagree: A->%v (B is %v), B->%v (A is %v)", pa.Peer, sb.LocalAddr(), pb.Peer, sa.LocalAddr())
			}
			if pa.Kind != PathPublic || pb.Kind != PathPublic {
				t.Fatalf("kinds %v %v", pa.Kind, pb.Kind)
			}
			if pa.Controlling == pb.Controlling {
				t.Fatalf("both sides controlling=%v", pa.Controlling)
			}
			if pa.Authenticated != tc.wantAuthA || pb.Authenticated != tc.wantAuthB {
				t.Fatalf("authenticated A %v B %v, want %v %v", pa.Authenticated, pb.Authenticated, tc.wantAuthA, tc.wantAuthB)
			}
		})
	}
}

// A local candidate that works is found when the public one is dead, and
// reported as local.
func TestPunchLocalCandidate(t *testing.T) {
	sa, sb := loopbackSocket(t), loopbackSocket(t)
	ta, tb := tokenFor(sa, true), tokenFor(sb, true)
	dead := netip.MustParseAddrPort("127.0.0.1:9") // discard port: nothing answers
	pubA, pubB := ta, tb
	pubA.Public, pubA.Locals = dead, []netip.AddrPort{sa.LocalAddr()}
	pubB.Public, pubB.Locals = netip.MustParseAddrPort("127.0.0.1:7"), []netip.AddrPort{sb.LocalAddr()}
	pa, pb := punchPair(t, sa, sb, pubA, pubB, pubB, pubA)
	if pa.Peer != sb.LocalAddr() || pb.Peer != sa.LocalAddr() {
		t.Fatalf("A->%v B->%v", pa.Peer, pb.Peer)
	}
	if pa.Kind != PathLocal && pb.Kind != PathLocal {
		t.Fatalf("kinds %v %v, want local", pa.Kind, pb.Kind)
	}
}

// A forger who knows both addresses but not the secrets floods probes,
// acks and nominations from its own socket: punching still selects the
// real peer, and never the forger.
func TestPunchIgnoresForgedProbes(t *testing.T) {
	sa, sb, sf := loopbackSocket(t), loopbackSocket(t), loopbackSocket(t)
	ta, tb := tokenFor(sa, true), tokenFor(sb, true)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		wrong := NewSecret()
		var buf []byte
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			for typ := byte(msgProbe); typ <= msgNominateAck; typ++ {
				buf = appendProbe(buf[:0], probeMsg{typ: typ, nonce: i, echo: i}, wrong, wrong, true)
				sf.WriteTo(buf, sa.LocalAddr())
				sf.WriteTo(buf, sb.LocalAddr())
			}
		}
	}()
	pa, pb := punchPair(t, sa, sb, ta, tb, tb, ta)
	if pa.Peer != sb.LocalAddr() || pb.Peer != sa.LocalAddr() || !pa.Authenticated || !pb.Authenticated {
		t.Fatalf("A->%v B->%v (forger %v)", pa.Peer, pb.Peer, sf.LocalAddr())
	}
}

// With bare addresses the two sides may name each other differently than
// they name themselves (a token with another local address): they must
// still agree on who leads.
func TestPunchBareAddressesDifferentSelfView(t *testing.T) {
	sa, sb := loopbackSocket(t), loopbackSocket(t)
	ta, tb := tokenFor(sa, true), tokenFor(sb, true)
	// Each side's own token claims an address the peer never uses.
	ta.Public = netip.AddrPortFrom(netip.MustParseAddr("192.0.2.250"), ta.Public.Port())
	tb.Public = netip.AddrPortFrom(netip.MustParseAddr("192.0.2.251"), tb.Public.Port())
	peerA := Token{Public: sb.LocalAddr()}
	peerB := Token{Public: sa.LocalAddr()}
	pa, pb := punchPair(t, sa, sb, ta, peerA, tb, peerB)
	if pa.Peer != sb.LocalAddr() || pb.Peer != sa.LocalAddr() || pa.Controlling == pb.Controlling {
		t.Fatalf("A->%v (ctl %v), B->%v (ctl %v)", pa.Peer, pa.Controlling, pb.Peer, pb.Controlling)
	}
}

func TestPunchRefusesOwnToken(t *testing.T) {
	sa := loopbackSocket(t)
	ta := tokenFor(sa, true)
	if _, err := Punch(context.Background(), sa, Config{Own: ta, Peer: ta, Window: time.Second}); err != ErrSameToken {
		t.Fatalf("err = %v", err)
	}
}

// Nobody answers: ErrNoPeer (not ErrNoPath: nothing at all was heard,
// which the caller treats as "the peer may not be there yet") when the
// window ends.
func TestPunchNoPeer(t *testing.T) {
	sa := loopbackSocket(t)
	ta := tokenFor(sa, true)
	peer := Token{Public: netip.MustParseAddrPort("127.0.0.1:9")}
	start := time.Now()
	_, err := Punch(context.Background(), sa, Config{Own: ta, Peer: peer, Window: 500 * time.Millisecond})
	if err != ErrNoPeer {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestParseProbeRejects(t *testing.T) {
	own, peer := NewSecret(), NewSecret()
	good := appendProbe(nil, probeMsg{typ: msgProbe, nonce: 1}, peer, own, true)
	if _, auth, ok := parseProbe(good, own, peer, true); !ok || auth != authSecret {
		t.Fatal("valid probe rejected")
	}
	// Any change to the authenticated body is caught.
	for i := 0; i < 32; i++ {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0x01
		if _, _, ok := parseProbe(bad, own, peer, true); ok {
			t.Fatalf("probe with body byte %d flipped accepted", i)
		}
	}
	// One valid MAC is enough (the other side may lack a secret), but
	// with both MACs broken the probe is refused.
	bad := append([]byte(nil), good...)
	bad[32] ^= 1
	bad[48] ^= 1
	if _, _, ok := parseProbe(bad, own, peer, true); ok {
		t.Fatal("probe with both MACs broken accepted")
	}
	// A probe without any MAC is refused by a side that knows the peer's
	// secret (no downgrade to unauthenticated).
	if _, _, ok := parseProbe(appendProbe(nil, probeMsg{typ: msgProbe}, [16]byte{9}, [16]byte{}, false), own, peer, true); ok {
		t.Fatal("unauthenticated probe accepted although we hold the peer's secret")
	}
	if _, _, ok := parseProbe(good[:63], own, peer, true); ok {
		t.Fatal("short probe accepted")
	}
}

func FuzzParseProbe(f *testing.F) {
	own, peer := [16]byte{1}, [16]byte{2}
	f.Add(appendProbe(nil, probeMsg{typ: msgAck, nonce: 7, echo: 9}, peer, own, true))
	f.Add([]byte("P2P\xc7"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, _, ok := parseProbe(b, own, peer, false)
		if ok && (m.typ < msgProbe || m.typ > msgNominateAck || len(b) != probeLen) {
			t.Fatalf("accepted malformed %x", b)
		}
	})
}

// A probe late from the peer's previous attempt carries its previous
// nonce. Both sides must still agree on who leads: in the NAT lab (3 %
// loss, an attempt that failed) each side compared its new nonce with
// the other's stale one, both led, and both then opened the encrypted
// handshake as initiator and failed it. Here a stale probe with nonce 0
// from each peer waits in both sockets before punching starts.
func TestPunchStaleProbeDoesNotDecideLead(t *testing.T) {
	sa, sb := loopbackSocket(t), loopbackSocket(t)
	ta, tb := tokenFor(sa, true), tokenFor(sb, true)
	stale := func(from *Socket, own, peer Token, to netip.AddrPort) {
		b := appendProbe(nil, probeMsg{typ: msgProbe, nonce: 0}, own.Secret, peer.Secret, true)
		if err := from.WriteTo(b, to); err != nil {
			t.Fatal(err)
		}
	}
	stale(sb, tb, ta, sa.LocalAddr())
	stale(sa, ta, tb, sb.LocalAddr())
	time.Sleep(50 * time.Millisecond)
	pa, pb := punchPair(t, sa, sb, ta, tb, tb, ta)
	if pa.Controlling == pb.Controlling {
		t.Fatalf("both sides controlling=%v after a stale probe", pa.Controlling)
	}
}
