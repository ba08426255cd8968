package punch

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// PathKind tells the user which way the connection goes.
type PathKind string

const (
	PathPublic    PathKind = "public"         // the peer's public (STUN) address
	PathLocal     PathKind = "local"          // a local address from the peer's token: same network
	PathReflexive PathKind = "peer-reflexive" // where the peer's probes came from (a symmetric NAT's new port)
)

// Path is the address pair punching selected.
type Path struct {
	Peer          netip.AddrPort
	Kind          PathKind
	Authenticated bool // the peer proved it holds a token secret
	// Controlling is true on exactly one side: the one that nominated.
	// Callers use it to pick roles later (e.g. the encryption initiator).
	Controlling bool
}

// Config describes one punching attempt.
type Config struct {
	Own, Peer Token
	// Window bounds the attempt: start it on a slot, and end it before
	// the next slot so that a retry starts clean (default 8 s).
	Window time.Duration
	// Interval between probe rounds (default 40 ms).
	Interval time.Duration
	Logf     func(format string, args ...any)
}

// ErrNoPath means no candidate answered both ways within the window,
// though the peer was heard from.
var ErrNoPath = errors.New("no path to the peer answered within the punching window")

// ErrNoPeer means nothing at all came from the peer within the window: it
// may not be punching yet (no token from us so far), or its NAT and ours
// drop each other's probes.
var ErrNoPeer = errors.New("nothing heard from the peer within the punching window")

// ErrSameToken means both sides hold the same token: they cannot tell who
// leads.
var ErrSameToken = errors.New("the peer's token is our own token")

// CheckTokens refuses a peer token that is our own (a user who pasted
// the wrong line).
func CheckTokens(own, peer Token) error {
	if own.String() == peer.String() || (peer.HasSecret && own.Secret == peer.Secret) {
		return ErrSameToken
	}
	return nil
}

// Punch probes every candidate address of the peer from s until one works
// both ways and both sides agree on it. The controlling side nominates the
// first path that answered; the other side takes the source of that
// nomination. Who controls is decided like ICE's tie-breaker: every
// message carries its sender's random nonce, and the larger nonce leads.
// (Addresses would not do: with a bare-address PEER the two sides may
// name the same socket differently.) Only an answer that echoes our own
// nonce decides it, and only a nomination carrying that answer's nonce is
// taken: a probe can be a late one from the peer's previous attempt, with
// its previous nonce, and two sides each compared with the other's stale
// nonce could both lead (seen in the NAT lab: both then opened the
// encrypted handshake as initiator, and both failed it). Probes are
// authenticated with the tokens' secrets.
func Punch(ctx context.Context, s *Socket, cfg Config) (Path, error) {
	if cfg.Window <= 0 {
		cfg.Window = 8 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 40 * time.Millisecond
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := CheckTokens(cfg.Own, cfg.Peer); err != nil {
		return Path{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Window)
	defer cancel()

	var nb [8]byte
	_, _ = rand.Read(nb[:])
	nonce := binary.BigEndian.Uint64(nb[:])
	controlling, decided := false, false // decided: the peer's current nonce is known
	heard := false                       // any probe from the peer arrived
	var peerNonce uint64
	own, peer, havePeer := cfg.Own.Secret, cfg.Peer.Secret, cfg.Peer.HasSecret

	candidates := cfg.Peer.Candidates()
	verified := netip.AddrPort{}
	verifiedAuth := false
	nominateSent := 0
	buf := make([]byte, 0, probeLen)
	send := func(typ byte, echo uint64, to netip.AddrPort) {
		buf = appendProbe(buf[:0], probeMsg{typ: typ, nonce: nonce, echo: echo}, own, peer, havePeer)
		_ = s.WriteTo(buf, to)
	}
	kind := func(a netip.AddrPort) PathKind {
		if a == cfg.Peer.Public {
			return PathPublic
		}
		for _, l := range cfg.Peer.Locals {
			if a == l {
				return PathLocal
			}
		}
		return PathReflexive
	}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	round := func() {
		if verified.IsValid() && controlling {
			send(msgNominate, 0, verified)
			nominateSent++
			return
		}
		for _, c := range candidates {
			send(msgProbe, 0, c)
		}
	}
	round()
	for {
		select {
		case <-ctx.Done():
			if verified.IsValid() && controlling {
				// Our nominations went unanswered, but the path worked
				// both ways: let UDT's handshake settle it.
				return Path{Peer: verified, Kind: kind(verified), Authenticated: verifiedAuth, Controlling: true}, nil
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				if !heard {
					return Path{}, ErrNoPeer
				}
				return Path{}, ErrNoPath
			}
			return Path{}, ctx.Err()
		case <-tick.C:
			if nominateSent >= 12 {
				return Path{Peer: verified, Kind: kind(verified), Authenticated: verifiedAuth, Controlling: true}, nil
			}
			round()
		case d := <-s.Probes():
			m, auth, ok := parseProbe(d.B, own, peer, havePeer)
			if !ok {
				logf("punch: dropped an unauthenticated probe from %v", d.From)
				continue
			}
			authed := auth == authSecret
			heard = true
			if !decided && m.typ == msgAck && m.echo == nonce && m.nonce != nonce {
				// It saw our probe of this attempt: its nonce is current.
				controlling, decided, peerNonce = nonce > m.nonce, true, m.nonce
				logf("punch: %s", map[bool]string{true: "we lead", false: "the peer leads"}[controlling])
			}
			known := false
			for _, c := range candidates {
				known = known || c == d.From
			}
			if !known {
				// Peer-reflexive: answer and probe where it really is.
				candidates = append(candidates, d.From)
				logf("punch: peer-reflexive candidate %v", d.From)
			}
			switch m.typ {
			case msgProbe:
				send(msgAck, m.nonce, d.From)
			case msgAck:
				if m.echo == nonce && !verified.IsValid() {
					verified, verifiedAuth = d.From, authed
					logf("punch: %v answers both ways", d.From)
				}
				if verified.IsValid() && controlling && nominateSent == 0 {
					round()
				}
			case msgNominate:
				if !decided || controlling || m.nonce != peerNonce {
					// Not yet known to be current (it nominates again), or
					// from an earlier attempt.
					continue
				}
				for i := 0; i < 3; i++ {
					send(msgNominateAck, m.nonce, d.From)
				}
				return Path{Peer: d.From, Kind: kind(d.From), Authenticated: authed, Controlling: false}, nil
			case msgNominateAck:
				if controlling && m.echo == nonce && d.From == verified {
					return Path{Peer: verified, Kind: kind(verified), Authenticated: verifiedAuth, Controlling: true}, nil
				}
			}
		}
	}
}
