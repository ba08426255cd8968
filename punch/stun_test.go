package punch

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

func TestDiscover(t *testing.T) {
	nat := newNAT(EndpointIndependent, AddressAndPortDependent)
	for _, c := range []struct {
		name string
		fl   flavor
	}{{"xor-mapped", flavorPlain}, {"rfc5780", flavor5780}, {"mapped-only", flavor3489}} {
		t.Run(c.name, func(t *testing.T) {
			srv := startServer(t, serverOpts{flavor: c.fl, nat: nat})
			s := newClient(t, "127.0.0.1:0")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			pub, server, err := Discover(ctx, s, []netip.AddrPort{srv.Addr})
			if err != nil {
				t.Fatal(err)
			}
			if pub.Addr() != fakePublicIP || server != srv.Addr.String() {
				t.Errorf("got %v from %s, want %v:… from %v", pub, server, fakePublicIP, srv.Addr)
			}
		})
	}
}

// A silent server must not hold up the answer of a good one.
func TestDiscoverSilentAndGood(t *testing.T) {
	silent := startServer(t, serverOpts{flavor: flavorSilent})
	good := startServer(t, serverOpts{flavor: flavorPlain})
	s := newClient(t, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	pub, server, err := Discover(ctx, s, []netip.AddrPort{silent.Addr, good.Addr})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("took %v, want the good server's answer at once", d)
	}
	if pub != localOf(s) || server != good.Addr.String() {
		t.Errorf("got %v from %s, want %v from %v", pub, server, localOf(s), good.Addr)
	}
}

func TestDiscoverAllSilent(t *testing.T) {
	a := startServer(t, serverOpts{flavor: flavorSilent})
	b := startServer(t, serverOpts{flavor: flavorSilent})
	s := newClient(t, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := Discover(ctx, s, []netip.AddrPort{a.Addr, b.Addr})
	d := time.Since(start)
	if !errors.Is(err, ErrNoResponse) || strings.Contains(err.Error(), "\n") {
		t.Errorf("got %q, want ErrNoResponse on one line", err)
	}
	if d < 250*time.Millisecond || d > time.Second {
		t.Errorf("took %v, want about 300 ms", d)
	}
}

func TestDiscoverNoServers(t *testing.T) {
	s := newClient(t, "127.0.0.1:0")
	if _, _, err := Discover(context.Background(), s, nil); err == nil {
		t.Error("no servers: want an error")
	}
}

// A server that answers with an error, or without a mapping, has not told
// us our address.
func TestParseAnswerRefusals(t *testing.T) {
	srv := netip.MustParseAddrPort("192.0.2.10:3478")
	errResp := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassErrorResponse), stun.CodeUnknownAttribute)
	empty := stun.MustBuild(stun.TransactionID, stun.BindingSuccess)
	if _, err := parseAnswer(srv, errResp); !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "420") {
		t.Errorf("error response: got %v, want errRefused with the code", err)
	}
	if _, err := parseAnswer(srv, empty); !errors.Is(err, errNoMapping) {
		t.Errorf("no mapping: got %v, want errNoMapping", err)
	}
	// XOR-MAPPED-ADDRESS wins over MAPPED-ADDRESS (which ALGs rewrite).
	m := stun.MustBuild(stun.TransactionID, stun.BindingSuccess,
		addrAttr(stun.AttrMappedAddress, netip.MustParseAddrPort("10.0.0.1:1")),
		&stun.XORMappedAddress{IP: []byte{198, 51, 100, 2}, Port: 4000},
		&stun.OtherAddress{IP: []byte{192, 0, 2, 21}, Port: 3479})
	a, err := parseAnswer(srv, m)
	if err != nil || a.mapped != netip.MustParseAddrPort("198.51.100.2:4000") || a.other != netip.MustParseAddrPort("192.0.2.21:3479") {
		t.Errorf("got %+v, %v", a, err)
	}
}

func TestResolveServers(t *testing.T) {
	var lookups atomic.Int32
	old := lookupNetIP
	t.Cleanup(func() { lookupNetIP = old })
	lookupNetIP = func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		lookups.Add(1)
		switch host {
		case "dual.test":
			return []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::ffff:192.0.2.7")}, nil
		case "v6only.test":
			return []netip.Addr{netip.MustParseAddr("2001:db8::2")}, nil
		case "slow.test", "slow2.test":
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, errors.New("no such host")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	got := ResolveServers(ctx, []string{
		"192.0.2.10:3478",
		"slow.test:3478",
		"dual.test:19302",
		" 192.0.2.10:3478 ", // duplicate
		"[2001:db8::5]:3478",
		"[::ffff:192.0.2.6]:1",
		"192.0.2.11",  // default port
		"v6only.test", // default port
		"missing.test:3478",
		"slow2.test:3478",
		"192.0.2.12:0",
		"192.0.2.12:99999",
		"192.0.2.12:stun", // numeric ports only
		"",
		":3478",
	})
	d := time.Since(start)
	want := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.10:3478"),
		netip.MustParseAddrPort("192.0.2.7:19302"),
		netip.MustParseAddrPort("[2001:db8::5]:3478"),
		netip.MustParseAddrPort("192.0.2.6:1"),
		netip.MustParseAddrPort("192.0.2.11:3478"),
		netip.MustParseAddrPort("[2001:db8::2]:3478"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if n := lookups.Load(); n != 5 {
		t.Errorf("%d lookups, want 5 (IP literals need none)", n)
	}
	if d > 600*time.Millisecond {
		t.Errorf("took %v: the two slow names should time out together, at 300 ms", d)
	}
}
