package punch

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Token is what a user tells the peer: one copy-paste-safe line that
// starts with the public ip:port (readable by a human), then the local
// addresses (for two peers behind one NAT without hairpinning), then a
// random secret that the stream's encryption is bound to:
//
//	198.51.100.2:40123,10.1.0.10:40123/mfrggzdfmztwq2lknnwg23tpoarq
//
// The secret is 16 random bytes and a 2-byte check over the whole token
// text, in lowercase base32 without padding (29 characters), so a typo is
// reported as such (a random one slips through once in 65536). A bare ip:port is a token without secret.
type Token struct {
	Public    netip.AddrPort
	Locals    []netip.AddrPort
	Secret    [16]byte
	HasSecret bool
}

// MaxLocals bounds the local candidates a token carries.
const MaxLocals = 4

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewSecret returns a fresh random secret.
func NewSecret() [16]byte {
	var s [16]byte
	if _, err := rand.Read(s[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return s
}

func (t Token) addrs() string {
	var b strings.Builder
	b.WriteString(t.Public.String())
	for _, l := range t.Locals {
		b.WriteByte(',')
		b.WriteString(l.String())
	}
	return b.String()
}

func check(addrs string, secret []byte) [2]byte {
	h := sha256.New()
	h.Write([]byte("p2pcat token v1\x00"))
	h.Write([]byte(addrs))
	h.Write(secret)
	return [2]byte(h.Sum(nil))
}

// String formats the token.
func (t Token) String() string {
	a := t.addrs()
	if !t.HasSecret {
		return a
	}
	c := check(a, t.Secret[:])
	raw := append(t.Secret[:], c[:]...)
	return a + "/" + strings.ToLower(b32.EncodeToString(raw))
}

// ParseToken reads a token or a bare ip:port. Surrounding spaces and
// quotes, as chat programs add them, are ignored.
func ParseToken(s string) (Token, error) {
	var t Token
	s = strings.Trim(strings.TrimSpace(s), "\"'`<>")
	if s == "" {
		return t, errors.New("empty token")
	}
	addrs, secret, hasSecret := strings.Cut(s, "/")
	parts := strings.Split(addrs, ",")
	if len(parts) > 1+MaxLocals {
		return t, fmt.Errorf("token has %d addresses, at most %d allowed", len(parts), 1+MaxLocals)
	}
	for i, p := range parts {
		ap, err := netip.ParseAddrPort(p)
		if err != nil {
			if i == 0 {
				return t, fmt.Errorf("%q is not an ip:port", p)
			}
			return t, fmt.Errorf("local address %q is not an ip:port", p)
		}
		if ap.Port() == 0 {
			return t, fmt.Errorf("%q has port 0", p)
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if i == 0 {
			t.Public = ap
		} else {
			t.Locals = append(t.Locals, ap)
		}
	}
	if !hasSecret {
		return t, nil
	}
	raw, err := b32.DecodeString(strings.ToUpper(secret))
	if err != nil || len(raw) != 18 {
		return t, errors.New("the secret part after '/' is mistyped or cut short")
	}
	if check(t.addrs(), raw[:16]) != [2]byte(raw[16:]) {
		return t, errors.New("token does not check out: mistyped, or cut short when pasted")
	}
	copy(t.Secret[:], raw)
	t.HasSecret = true
	return t, nil
}

// Candidates are the addresses to probe: the public one first, then the
// local ones, without duplicates.
func (t Token) Candidates() []netip.AddrPort {
	out := []netip.AddrPort{t.Public}
	for _, l := range t.Locals {
		dup := false
		for _, o := range out {
			dup = dup || o == l
		}
		if !dup {
			out = append(out, l)
		}
	}
	return out
}
