package punch

import (
	"net/netip"
	"strings"
	"testing"
)

func TestTokenRoundTrip(t *testing.T) {
	tok := Token{
		Public:    netip.MustParseAddrPort("198.51.100.2:40123"),
		Locals:    []netip.AddrPort{netip.MustParseAddrPort("10.1.0.10:40123")},
		Secret:    NewSecret(),
		HasSecret: true,
	}
	s := tok.String()
	if len(s) > 80 {
		t.Fatalf("token %q is %d characters, want <= 80", s, len(s))
	}
	if !strings.HasPrefix(s, "198.51.100.2:40123,") {
		t.Fatalf("token %q does not start with the public address", s)
	}
	got, err := ParseToken("  '" + s + "'\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.Public != tok.Public || len(got.Locals) != 1 || got.Locals[0] != tok.Locals[0] || got.Secret != tok.Secret || !got.HasSecret {
		t.Fatalf("round trip: %+v != %+v", got, tok)
	}
	// Uppercase (some chat clients) still parses.
	if _, err := ParseToken(strings.ToUpper(s)); err != nil {
		t.Fatalf("uppercase: %v", err)
	}
}

func TestTokenLongestIPv4Fits(t *testing.T) {
	tok := Token{
		Public:    netip.MustParseAddrPort("255.255.255.255:65535"),
		Locals:    []netip.AddrPort{netip.MustParseAddrPort("192.168.100.200:65535")},
		HasSecret: true,
	}
	if n := len(tok.String()); n > 80 {
		t.Fatalf("longest IPv4 token is %d characters", n)
	}
}

func TestBareAddress(t *testing.T) {
	got, err := ParseToken("203.0.113.7:9000")
	if err != nil || got.HasSecret || got.Public.String() != "203.0.113.7:9000" {
		t.Fatalf("bare: %+v, %v", got, err)
	}
}

func TestTokenTypos(t *testing.T) {
	// A fixed secret keeps the test deterministic (a random typo passes
	// the 2-byte check once in 65536).
	tok := Token{Public: netip.MustParseAddrPort("198.51.100.2:40123"), Secret: [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3}, HasSecret: true}
	s := tok.String()
	slash := strings.IndexByte(s, '/')
	for i := slash + 1; i < len(s)-1; i++ { // the last character holds a padding bit
		typo := s[:i] + flip(s[i]) + s[i+1:]
		if _, err := ParseToken(typo); err == nil {
			t.Errorf("typo at %d: %q parsed without error", i, typo)
		}
	}
	cases := map[string]string{
		"cut short":       s[:len(s)-2],
		"changed port":    strings.Replace(s, ":40123", ":40124", 1),
		"not an address":  "hello/abc",
		"port zero":       "1.2.3.4:0",
		"empty":           "   ",
		"bad local":       "1.2.3.4:5,nope",
		"too many locals": "1.1.1.1:1,2.2.2.2:2,3.3.3.3:3,4.4.4.4:4,5.5.5.5:5,6.6.6.6:6",
	}
	for name, in := range cases {
		if _, err := ParseToken(in); err == nil {
			t.Errorf("%s: %q parsed without error", name, in)
		}
	}
}

func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}

func TestCandidates(t *testing.T) {
	tok, err := ParseToken("1.2.3.4:5,10.0.0.1:5,1.2.3.4:5,10.0.0.2:5")
	if err != nil {
		t.Fatal(err)
	}
	c := tok.Candidates()
	if len(c) != 3 || c[0].String() != "1.2.3.4:5" {
		t.Fatalf("candidates %v", c)
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("198.51.100.2:40123,10.1.0.10:40123/" + strings.Repeat("a", 29))
	f.Add("203.0.113.7:9000")
	f.Add("[2001:db8::1]:443,[fe80::1%eth0]:1/abc")
	f.Add(Token{Public: netip.MustParseAddrPort("1.2.3.4:5"), HasSecret: true}.String())
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		again, err := ParseToken(tok.String())
		if err != nil {
			t.Fatalf("re-parse of %q: %v", tok.String(), err)
		}
		if again.String() != tok.String() {
			t.Fatalf("not stable: %q -> %q", tok.String(), again.String())
		}
	})
}
