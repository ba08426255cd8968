package punch

import (
	"context"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

// classify runs Classify from a fresh loopback client with a 3 s bound.
func classify(t *testing.T, s *Socket, servers ...*fakeServer) Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var addrs []netip.AddrPort
	for _, f := range servers {
		addrs = append(addrs, f.Addr)
	}
	start := time.Now()
	r, err := Classify(ctx, s, addrs)
	if err != nil {
		t.Fatalf("Classify: %v", err)
	}
	t.Logf("%v: %s", time.Since(start).Round(time.Millisecond), r.Summary())
	return r
}

// natCase is one NAT that the fakes play, and what Classify must say.
type natCase struct {
	name      string
	nat       func() *fakeNAT
	want      NATType
	mapping   Behavior // reported
	filtering Behavior // reported
}

var natCases = []natCase{
	{"none", noNAT, NATNone, EndpointIndependent, EndpointIndependent},
	{"full-cone", func() *fakeNAT { return newNAT(EndpointIndependent, EndpointIndependent) },
		NATFullCone, EndpointIndependent, EndpointIndependent},
	{"restricted", func() *fakeNAT { return newNAT(EndpointIndependent, AddressDependent) },
		NATRestricted, EndpointIndependent, AddressDependent},
	{"port-restricted", func() *fakeNAT { return newNAT(EndpointIndependent, AddressAndPortDependent) },
		NATPortRestricted, EndpointIndependent, AddressAndPortDependent},
	{"symmetric", func() *fakeNAT { return newNAT(AddressAndPortDependent, AddressAndPortDependent) },
		NATSymmetric, AddressAndPortDependent, AddressAndPortDependent},
	{"symmetric-address-dependent", func() *fakeNAT { return newNAT(AddressDependent, AddressDependent) },
		NATSymmetric, AddressDependent, AddressDependent},
}

// checkReport checks the fields every behaviour-test classification fills.
func checkReport(t *testing.T, r Report, s *Socket, srv *fakeServer, c natCase, method string) {
	t.Helper()
	if r.NAT != c.want || r.Mapping != c.mapping || r.Filtering != c.filtering || r.Method != method {
		t.Errorf("got %v (mapping %v, filtering %v, method %q), want %v (%v, %v, %q); note %q",
			r.NAT, r.Mapping, r.Filtering, r.Method, c.want, c.mapping, c.filtering, method, r.Note)
	}
	wantPublic := netip.AddrPortFrom(fakePublicIP, 30000)
	if c.want == NATNone {
		wantPublic = localOf(s)
	}
	if r.Public != wantPublic || r.Local != localOf(s) {
		t.Errorf("public %v local %v, want %v and %v", r.Public, r.Local, wantPublic, localOf(s))
	}
	if r.Server != srv.Addr.String() || r.Via != srv.Addr.String() {
		t.Errorf("server %q via %q, want %v", r.Server, r.Via, srv.Addr)
	}
	if r.Note != "" {
		t.Errorf("note %q, want none", r.Note)
	}
}

func TestClassifyRFC5780(t *testing.T) {
	for _, c := range natCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, serverOpts{flavor: flavor5780, nat: c.nat()})
			s := newClient(t, "127.0.0.1:0")
			checkReport(t, classify(t, s, srv), s, srv, c, MethodRFC5780)
		})
	}
}

func TestClassifyRFC3489(t *testing.T) {
	for _, c := range natCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, serverOpts{flavor: flavor3489, nat: c.nat()})
			s := newClient(t, "127.0.0.1:0")
			checkReport(t, classify(t, s, srv), s, srv, c, MethodRFC3489)
		})
	}
}

// An RFC 3489 server need not answer at (IP2,P1) (and an RFC 5780 one may
// fail to): the mapping test then compares (IP1,P1) with (IP2,P2) only,
// which cannot tell address-dependent from address-and-port-dependent.
func TestClassifyWithoutIP2P1(t *testing.T) {
	for _, fl := range []struct {
		flavor flavor
		method string
	}{{flavor3489, MethodRFC3489}, {flavor5780, MethodRFC5780}} {
		for _, c := range natCases {
			if c.mapping == AddressDependent {
				c.mapping = AddressAndPortDependent
			}
			t.Run(fl.method+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				srv := startServer(t, serverOpts{flavor: fl.flavor, nat: c.nat(), noIP2P1: true})
				s := newClient(t, "127.0.0.1:0")
				checkReport(t, classify(t, s, srv), s, srv, c, fl.method)
			})
		}
	}
}

// A socket bound to the wildcard address: Local must name the IP the OS
// uses toward the server, and the filtering socket binds the wildcard too.
func TestClassifyWildcardSocket(t *testing.T) {
	srv := startServer(t, serverOpts{flavor: flavor5780})
	s := newClient(t, "0.0.0.0:0")
	r := classify(t, s, srv)
	if r.NAT != NATNone || r.Filtering != EndpointIndependent || r.Local != localOf(s) || r.Public != r.Local {
		t.Errorf("got %+v, want none with local = public = %v", r, localOf(s))
	}
}

func TestClassifyTwoServers(t *testing.T) {
	for _, c := range []struct {
		name    string
		nat     func() *fakeNAT
		want    NATType
		mapping Behavior
	}{
		{"none", noNAT, NATNone, EndpointIndependent},
		{"eim", func() *fakeNAT { return newNAT(EndpointIndependent, AddressDependent) }, NATUnknown, EndpointIndependent},
		{"symmetric", func() *fakeNAT { return newNAT(AddressAndPortDependent, AddressAndPortDependent) }, NATSymmetric, AddressAndPortDependent},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			nat := c.nat() // one NAT in front of the client, two servers
			a := startServer(t, serverOpts{flavor: flavorPlain, nat: nat})
			b := startServer(t, serverOpts{flavor: flavorPlain, nat: nat})
			s := newClient(t, "127.0.0.1:0")
			r := classify(t, s, a, b)
			if r.NAT != c.want || r.Mapping != c.mapping || r.Filtering != BehaviorUnknown || r.Method != MethodTwoServers {
				t.Errorf("got %+v, want %v with mapping %v by two servers", r, c.want, c.mapping)
			}
			if !strings.Contains(r.Via, a.Addr.String()) || !strings.Contains(r.Via, b.Addr.String()) {
				t.Errorf("via %q, want both servers", r.Via)
			}
			if c.want == NATUnknown && !strings.Contains(r.Summary(), "mapping is endpoint-independent") {
				t.Errorf("summary %q does not give the mapping", r.Summary())
			}
		})
	}
}

// One server with no behaviour tests: a NAT cannot be classified, but no
// NAT can be recognised.
func TestClassifyOnePlainServer(t *testing.T) {
	t.Run("nat", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, serverOpts{flavor: flavorPlain, nat: newNAT(EndpointIndependent, EndpointIndependent)})
		s := newClient(t, "127.0.0.1:0")
		r := classify(t, s, srv)
		if r.NAT != NATUnknown || r.Method != "" || r.Mapping != BehaviorUnknown || r.Filtering != BehaviorUnknown {
			t.Errorf("got %+v, want unknown", r)
		}
		want := "your NAT type is unknown: only " + srv.Addr.String() + " answered, and it offers no behaviour tests"
		if !strings.HasPrefix(r.Summary(), want) {
			t.Errorf("summary %q, want it to start %q", r.Summary(), want)
		}
	})
	t.Run("none", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, serverOpts{flavor: flavorPlain})
		s := newClient(t, "127.0.0.1:0")
		r := classify(t, s, srv)
		if r.NAT != NATNone || r.Method != MethodLocal || r.Via != srv.Addr.String() {
			t.Errorf("got %+v, want none by mapped = local", r)
		}
	})
}

// A server that ignores or refuses CHANGE-REQUEST gives the mapping but no
// filtering: an answer from the address asked proves nothing.
func TestClassifyChangeRequestNotHonoured(t *testing.T) {
	for _, c := range []struct {
		name string
		opts serverOpts
		note string
	}{
		{"ignored-5780", serverOpts{flavor: flavor5780, ignoreChange: true}, "ignored CHANGE-REQUEST"},
		{"ignored-3489", serverOpts{flavor: flavor3489, ignoreChange: true}, "ignored CHANGE-REQUEST"},
		{"refused", serverOpts{flavor: flavor5780, refuseChange: true}, "refused CHANGE-REQUEST"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.opts.nat = newNAT(EndpointIndependent, AddressAndPortDependent)
			srv := startServer(t, c.opts)
			s := newClient(t, "127.0.0.1:0")
			r := classify(t, s, srv)
			if r.NAT != NATUnknown || r.Mapping != EndpointIndependent || r.Filtering != BehaviorUnknown {
				t.Errorf("got %+v, want unknown with endpoint-independent mapping", r)
			}
			if !strings.Contains(r.Note, c.note) || !strings.Contains(r.Summary(), "mapping is endpoint-independent") {
				t.Errorf("summary %q, want it to say %q", r.Summary(), c.note)
			}
		})
	}
}

// RFC 5780 servers are preferred over RFC 3489 ones, whatever answered
// first; a 5780 server whose other address is dead gives way to the next.
func TestClassifyServerChoice(t *testing.T) {
	t.Run("prefers-5780", func(t *testing.T) {
		t.Parallel()
		nat := newNAT(EndpointIndependent, AddressDependent)
		plain := startServer(t, serverOpts{flavor: flavorPlain, nat: nat})
		old := startServer(t, serverOpts{flavor: flavor3489, nat: nat})
		silent := startServer(t, serverOpts{flavor: flavorSilent})
		good := startServer(t, serverOpts{flavor: flavor5780, nat: nat})
		s := newClient(t, "127.0.0.1:0")
		r := classify(t, s, plain, old, silent, good)
		if r.NAT != NATRestricted || r.Method != MethodRFC5780 || r.Via != good.Addr.String() {
			t.Errorf("got %+v, want restricted by RFC 5780 via %v", r, good.Addr)
		}
	})
	t.Run("falls-back-to-3489", func(t *testing.T) {
		t.Parallel()
		nat := newNAT(AddressAndPortDependent, AddressAndPortDependent)
		broken := startServer(t, serverOpts{flavor: flavor5780, nat: nat, silentOther: true})
		old := startServer(t, serverOpts{flavor: flavor3489, nat: nat})
		s := newClient(t, "127.0.0.1:0")
		r := classify(t, s, broken, old)
		if r.NAT != NATSymmetric || r.Method != MethodRFC3489 || r.Via != old.Addr.String() {
			t.Errorf("got %+v, want symmetric by RFC 3489 via %v", r, old.Addr)
		}
	})
	t.Run("falls-back-to-two-servers", func(t *testing.T) {
		t.Parallel()
		nat := newNAT(AddressAndPortDependent, AddressAndPortDependent)
		broken := startServer(t, serverOpts{flavor: flavor5780, nat: nat, silentOther: true})
		plain := startServer(t, serverOpts{flavor: flavorPlain, nat: nat})
		s := newClient(t, "127.0.0.1:0")
		r := classify(t, s, broken, plain)
		if r.NAT != NATSymmetric || r.Method != MethodTwoServers {
			t.Errorf("got %+v, want symmetric from two servers", r)
		}
	})
}

func TestClassifyNoAnswer(t *testing.T) {
	a := startServer(t, serverOpts{flavor: flavorSilent})
	b := startServer(t, serverOpts{flavor: flavorSilent})
	s := newClient(t, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	r, err := Classify(ctx, s, []netip.AddrPort{a.Addr, b.Addr})
	if err == nil || r.NAT != NATUnknown {
		t.Fatalf("got %+v, %v; want an error", r, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v, want about 300 ms", d)
	}
	if got := r.Summary(); !strings.HasPrefix(got, "your NAT type is unknown: no STUN server answered") {
		t.Errorf("summary %q", got)
	}
}

// Classify leaves the socket running (no Release), and leaves no goroutine
// behind.
func TestClassifyKeepsSocket(t *testing.T) {
	srv := startServer(t, serverOpts{flavor: flavor5780, nat: newNAT(EndpointIndependent, AddressAndPortDependent)})
	s := newClient(t, "127.0.0.1:0")
	before := runtime.NumGoroutine()
	if r := classify(t, s, srv); r.NAT != NATPortRestricted {
		t.Fatalf("got %v", r.NAT)
	}
	for deadline := time.Now().Add(time.Second); runtime.NumGoroutine() > before; {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, _, err := Discover(ctx, s, []netip.AddrPort{srv.Addr}); err != nil {
		t.Fatalf("socket unusable after Classify: %v", err)
	}
}

func TestDirectLikely(t *testing.T) {
	// The lab's hole-punching matrix (lab/README.md), in NATType order
	// none, full-cone, restricted, port-restricted, symmetric.
	matrix := [5]string{
		"YYYYY",
		"YYYYY",
		"YYYYY",
		"YYYYN",
		"YYYNN",
	}
	types := []NATType{NATNone, NATFullCone, NATRestricted, NATPortRestricted, NATSymmetric}
	for i, a := range types {
		for j, b := range types {
			if got, want := DirectLikely(a, b), matrix[i][j] == 'Y'; got != want {
				t.Errorf("DirectLikely(%v, %v) = %v, want %v", a, b, got, want)
			}
		}
		if !DirectLikely(NATUnknown, a) || !DirectLikely(a, NATUnknown) {
			t.Errorf("unknown with %v: want true", a)
		}
	}
}

func TestStrings(t *testing.T) {
	for v, want := range map[NATType]string{
		NATUnknown: "unknown", NATNone: "none", NATFullCone: "full-cone", NATRestricted: "restricted",
		NATPortRestricted: "port-restricted", NATSymmetric: "symmetric", NATType(99): "unknown",
	} {
		if v.String() != want {
			t.Errorf("NATType(%d) = %q, want %q", v, v.String(), want)
		}
	}
	for v, want := range map[Behavior]string{
		BehaviorUnknown: "unknown", EndpointIndependent: "endpoint-independent",
		AddressDependent: "address-dependent", AddressAndPortDependent: "address-and-port-dependent",
		Behavior(-1): "unknown",
	} {
		if v.String() != want {
			t.Errorf("Behavior(%d) = %q, want %q", v, v.String(), want)
		}
	}
}

func TestSummary(t *testing.T) {
	pub := netip.MustParseAddrPort("198.51.100.70:5000")
	for _, c := range []struct {
		r    Report
		want string
	}{
		{Report{NAT: NATPortRestricted, Mapping: EndpointIndependent, Filtering: AddressAndPortDependent,
			Method: MethodRFC5780, Via: "192.0.2.20:3478"},
			"your NAT is port-restricted (mapping endpoint-independent, filtering address-and-port-dependent; RFC 5780 via 192.0.2.20:3478)"},
		{Report{NAT: NATSymmetric, Mapping: AddressAndPortDependent, Filtering: AddressAndPortDependent,
			Method: MethodRFC3489, Via: "192.0.2.10:3478"},
			"your NAT is symmetric (mapping address-and-port-dependent, filtering address-and-port-dependent; RFC 3489 via 192.0.2.10:3478)"},
		{Report{NAT: NATSymmetric, Mapping: AddressAndPortDependent, Method: MethodTwoServers, Via: "192.0.2.10:3478 and 192.0.2.20:3478"},
			"your NAT is symmetric (mapping address-and-port-dependent, filtering unknown; mapping only, from 192.0.2.10:3478 and 192.0.2.20:3478)"},
		{Report{NAT: NATNone, Public: pub, Local: pub, Mapping: EndpointIndependent, Filtering: EndpointIndependent,
			Method: MethodRFC5780, Via: "192.0.2.20:3478"},
			"you have no NAT: your public address 198.51.100.70:5000 is your local address (filtering endpoint-independent; RFC 5780 via 192.0.2.20:3478)"},
		{Report{NAT: NATNone, Public: pub, Local: pub, Mapping: EndpointIndependent, Method: MethodLocal, Via: "192.0.2.10:3478"},
			"you have no NAT: your public address 198.51.100.70:5000 is your local address (via 192.0.2.10:3478)"},
		{Report{Note: "no STUN server answered"}, "your NAT type is unknown: no STUN server answered"},
		{Report{}, "your NAT type is unknown: no test could tell"},
	} {
		if got := c.r.Summary(); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}
