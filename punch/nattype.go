package punch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// NATType is the classic name of a NAT's behaviour, as far as hole
// punching cares.
type NATType int

const (
	NATUnknown        NATType = iota // could not tell
	NATNone                          // a public address, no NAT
	NATFullCone                      // EIM + endpoint-independent filtering
	NATRestricted                    // EIM + address-dependent filtering
	NATPortRestricted                // EIM + address-and-port-dependent filtering
	NATSymmetric                     // mapping that depends on the destination
)

func (t NATType) String() string {
	switch t {
	case NATNone:
		return "none"
	case NATFullCone:
		return "full-cone"
	case NATRestricted:
		return "restricted"
	case NATPortRestricted:
		return "port-restricted"
	case NATSymmetric:
		return "symmetric"
	}
	return "unknown"
}

// Behavior is a NAT's mapping or filtering behaviour (RFC 4787, RFC 5780).
type Behavior int

const (
	BehaviorUnknown         Behavior = iota
	EndpointIndependent              // one mapping for all destinations; anyone may send in
	AddressDependent                 // per destination IP
	AddressAndPortDependent          // per destination IP and port
)

func (b Behavior) String() string {
	switch b {
	case EndpointIndependent:
		return "endpoint-independent"
	case AddressDependent:
		return "address-dependent"
	case AddressAndPortDependent:
		return "address-and-port-dependent"
	}
	return "unknown"
}

// Report.Method values.
const (
	MethodRFC5780    = "rfc5780"                    // OTHER-ADDRESS + CHANGE-REQUEST
	MethodRFC3489    = "rfc3489"                    // CHANGED-ADDRESS + CHANGE-REQUEST (stund)
	MethodTwoServers = "two servers (mapping only)" // mappings seen by two servers compared
	MethodLocal      = "mapped = local"             // one server saw our local address: no NAT
)

// Report is what Classify found out.
type Report struct {
	Public    netip.AddrPort // our mapping as the first answering server saw it
	Local     netip.AddrPort // our local address toward that server
	Mapping   Behavior       // EndpointIndependent for NATNone
	Filtering Behavior
	NAT       NATType
	Method    string // Method… constant, or "" when it could not tell
	Server    string // the first server that answered (it saw Public)
	Via       string // the server(s) whose answers gave Mapping and Filtering
	Note      string // why NAT is unknown, or what could not be tested
}

// Test knobs: how long the behaviour tests wait for answers that may
// rightly never come; how long Classify waits for more servers after the
// first answer; and its bound on that first round when ctx has none.
var (
	behaviorTimeout = 2 * time.Second
	gatherGrace     = 500 * time.Millisecond
	gatherTimeout   = 5 * time.Second
)

// Classify determines our NAT's mapping and filtering behaviour, using s
// (the run's one socket, which stays usable) and, for the filtering tests,
// a fresh socket on the same local IP. It asks every server at once, then
// runs the behaviour tests against the first one that offers them:
//
//   - RFC 5780 (OTHER-ADDRESS): mapping from requests on s to (IP1,P1),
//     (IP2,P1) and (IP2,P2); filtering from CHANGE-REQUEST change-IP+port,
//     then change-port only, on the fresh socket;
//   - RFC 3489 (CHANGED-ADDRESS, as stund answers): the same tests;
//     (IP2,P1), which RFC 3489 does not promise, may stay silent;
//   - else the mappings two servers saw (mapping only);
//   - else unknown.
//
// A mapping equal to our local address means no NAT. An error is returned
// only when no server answered at all.
func Classify(ctx context.Context, s *Socket, servers []netip.AddrPort) (Report, error) {
	var r Report
	gctx, cancel := context.WithTimeout(ctx, gatherTimeout)
	answers, err := gather(gctx, s, servers, gatherGrace)
	cancel()
	if len(answers) == 0 {
		r.Note = err.Error()
		return r, err
	}
	first := answers[0]
	r.Public, r.Server = first.mapped, first.server.String()
	r.Local = localFor(s, first.server)
	none := r.Public == r.Local

	var notes []string
	for _, c := range testServers(answers) {
		if ctx.Err() != nil {
			break
		}
		t := runTests(ctx, s, c)
		if t.mapping == BehaviorUnknown {
			notes = append(notes, t.note)
			continue
		}
		r.Mapping, r.Filtering, r.Method, r.Via = t.mapping, t.filtering, c.method, c.a.server.String()
		none = none || t.none
		if t.filtering == BehaviorUnknown {
			notes = append(notes, "filtering could not be tested: "+t.note)
		}
		break
	}
	if r.Method == "" {
		if a, b, ok := twoServers(answers); ok {
			r.Method, r.Via = MethodTwoServers, a.server.String()+" and "+b.server.String()
			r.Mapping = EndpointIndependent
			if a.mapped != b.mapped {
				// Two mappings for two destinations: address-dependent or
				// worse, which one pair of servers cannot tell.
				r.Mapping = AddressAndPortDependent
			}
			none = none || a.mapped == localFor(s, a.server)
			if len(notes) == 0 {
				notes = append(notes, "no server answered the RFC 5780 or RFC 3489 behaviour tests, so filtering is unknown")
			}
		}
	}

	switch {
	case none:
		r.NAT, r.Mapping = NATNone, EndpointIndependent
		if r.Method == "" {
			r.Method, r.Via = MethodLocal, r.Server
		}
		notes = nil
	case r.Mapping == BehaviorUnknown:
		r.NAT = NATUnknown
	case r.Mapping != EndpointIndependent:
		r.NAT = NATSymmetric
		notes = nil // filtering does not matter then
	case r.Filtering == EndpointIndependent:
		r.NAT = NATFullCone
	case r.Filtering == AddressDependent:
		r.NAT = NATRestricted
	case r.Filtering == AddressAndPortDependent:
		r.NAT = NATPortRestricted
	}
	if r.NAT == NATUnknown {
		switch {
		case r.Mapping != BehaviorUnknown:
			notes = append([]string{"mapping is " + r.Mapping.String()}, notes...)
		case len(notes) == 0:
			notes = append(notes, fmt.Sprintf("only %s answered, and it offers no behaviour tests (no OTHER-ADDRESS or CHANGED-ADDRESS)", r.Server))
		}
		notes = append(notes, "public address "+r.Public.String())
	}
	r.Note = strings.Join(notes, "; ")
	return r, nil
}

// testServer is a server that offers behaviour tests at its alternate
// address alt.
type testServer struct {
	a      answer
	alt    netip.AddrPort
	method string
}

// validAlt says whether alt can serve as server's other address: it must
// differ in both IP and port.
func validAlt(server, alt netip.AddrPort) bool {
	return alt.IsValid() && alt.Addr() != server.Addr() && alt.Port() != server.Port()
}

func validOther(a answer) bool { return validAlt(a.server, a.other) }

// testServers lists the servers that offer behaviour tests, RFC 5780 ones
// first, each in the order they answered.
func testServers(answers []answer) []testServer {
	var l []testServer
	for _, a := range answers {
		if validOther(a) {
			l = append(l, testServer{a, a.other, MethodRFC5780})
		}
	}
	for _, a := range answers {
		if !validOther(a) && validAlt(a.server, a.changed) {
			l = append(l, testServer{a, a.changed, MethodRFC3489})
		}
	}
	return l
}

// twoServers picks two answers to compare mappings: the first, and
// another from a different IP if there is one, else from another port.
func twoServers(answers []answer) (a, b answer, ok bool) {
	if len(answers) < 2 {
		return a, b, false
	}
	a, b = answers[0], answers[1]
	for _, c := range answers[1:] {
		if c.server.Addr() != a.server.Addr() {
			return a, c, true
		}
	}
	return a, b, true
}

type testResult struct {
	mapping, filtering Behavior
	none               bool // the server saw our local address
	note               string
}

// runTests runs the mapping tests on s and the filtering tests on a fresh
// socket, all at once, and waits at most behaviorTimeout.
func runTests(ctx context.Context, s *Socket, ts testServer) testResult {
	ctx, cancel := context.WithTimeout(ctx, behaviorTimeout)
	defer cancel()
	srv := ts.a.server
	var (
		m2, m3  answer
		e2, e3  error
		res     testResult
		wg      sync.WaitGroup
		fnote   string
		filterB Behavior
	)
	wg.Go(func() { m2, e2 = bind(ctx, s, netip.AddrPortFrom(ts.alt.Addr(), srv.Port()), 0) })
	wg.Go(func() { m3, e3 = bind(ctx, s, ts.alt, 0) })
	wg.Go(func() { filterB, fnote = filtering(ctx, s, srv) })
	wg.Wait()

	m1 := ts.a.mapped
	switch {
	case e3 != nil:
		res.note = fmt.Sprintf("%v did not answer at its other address %v (%v)", srv, ts.alt, e3)
		return res
	case m1 == localFor(s, srv):
		res.none, res.mapping = true, EndpointIndependent
	case e2 != nil:
		// No answer at (IP2,P1), which RFC 3489 does not promise: (IP1,P1)
		// against (IP2,P2) cannot tell address-dependent mapping from
		// address-and-port-dependent; say the worse.
		res.mapping = EndpointIndependent
		if m3.mapped != m1 {
			res.mapping = AddressAndPortDependent
		}
	case m2.mapped == m1 && m3.mapped == m1:
		res.mapping = EndpointIndependent
	case m2.mapped != m1 && m3.mapped == m2.mapped:
		res.mapping = AddressDependent
	default:
		res.mapping = AddressAndPortDependent
	}
	res.filtering, res.note = filterB, fnote
	return res
}

// filtering runs the RFC 5780 §4.4 filtering tests against server on a
// fresh socket (a fresh mapping that has only sent to server): a plain
// binding request, one asking for an answer from the other IP and port,
// and one from the other port only. It returns early once the first
// CHANGE-REQUEST is answered. The note says why the result is unknown.
func filtering(ctx context.Context, s *Socket, server netip.AddrPort) (Behavior, string) {
	conn, err := listenLike(s)
	if err != nil {
		return BehaviorUnknown, "no second socket: " + err.Error()
	}
	fs := NewSocket(conn)
	defer func() {
		fs.Release()
		_ = conn.Close()
	}()
	ctx, cancel := context.WithCancel(ctx)
	flags := []byte{0, changeIP | changePort, changePort}
	type result struct {
		i   int
		a   answer
		err error
	}
	results := make(chan result, len(flags))
	var wg sync.WaitGroup
	for i, f := range flags {
		wg.Go(func() {
			a, err := bind(ctx, fs, server, f)
			results <- result{i, a, err}
		})
	}
	defer func() {
		cancel() // the requests still waiting return at once
		wg.Wait()
	}()
	var got [3]result
	for range flags {
		r := <-results
		got[r.i] = r
		if r.i == 1 && r.err == nil && !ignoredChange(r.a, server, true) {
			return EndpointIndependent, ""
		}
	}
	plain, both, port := got[0], got[1], got[2]
	switch {
	case plain.err != nil:
		return BehaviorUnknown, fmt.Sprintf("%v did not answer a second socket (%v)", server, plain.err)
	case both.err == nil:
		return BehaviorUnknown, fmt.Sprintf("%v ignored CHANGE-REQUEST (answered from %v)", server, both.a.origin)
	case !errors.Is(both.err, ErrNoResponse):
		return BehaviorUnknown, fmt.Sprintf("%v refused CHANGE-REQUEST (%v)", server, both.err)
	case port.err == nil && ignoredChange(port.a, server, false):
		return BehaviorUnknown, fmt.Sprintf("%v ignored CHANGE-REQUEST (answered from %v)", server, port.a.origin)
	case port.err == nil:
		return AddressDependent, ""
	case !errors.Is(port.err, ErrNoResponse):
		return BehaviorUnknown, fmt.Sprintf("%v refused CHANGE-REQUEST (%v)", server, port.err)
	}
	return AddressAndPortDependent, ""
}

// ignoredChange says whether a CHANGE-REQUEST answer says (by RESPONSE-
// ORIGIN or SOURCE-ADDRESS, when present) that it came from the address
// asked rather than the one requested: then it proves nothing.
func ignoredChange(a answer, server netip.AddrPort, changedIP bool) bool {
	if !a.origin.IsValid() || a.origin.Addr().IsUnspecified() {
		return false
	}
	if changedIP {
		return a.origin.Addr() == server.Addr()
	}
	return a.origin == server
}

// listenLike opens a new UDP socket on the local IP of s, any port.
func listenLike(s *Socket) (*net.UDPConn, error) {
	ip := s.LocalAddr().Addr()
	network := "udp"
	if ip.Unmap().Is4() {
		ip, network = ip.Unmap(), "udp4"
	}
	return net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
}

// DirectLikely says whether a direct connection between NATs of types a
// and b is likely to be punched, after the lab's measured matrix: every
// pair works except port-restricted with symmetric and symmetric with
// symmetric. An unknown type counts as hopeful (true): trying costs only
// a few seconds, and failure is reported then.
func DirectLikely(a, b NATType) bool {
	hard := func(t NATType) int {
		switch t {
		case NATPortRestricted:
			return 1
		case NATSymmetric:
			return 2
		}
		return 0
	}
	return hard(a)+hard(b) < 3
}

// Summary is one line for humans, e.g. "your NAT is port-restricted
// (mapping endpoint-independent, filtering address-and-port-dependent;
// RFC 5780 via 192.0.2.20:3478)".
func (r Report) Summary() string {
	var how string
	switch r.Method {
	case MethodRFC5780:
		how = "RFC 5780 via " + r.Via
	case MethodRFC3489:
		how = "RFC 3489 via " + r.Via
	case MethodTwoServers:
		how = "mapping only, from " + r.Via
	default:
		how = "via " + r.Via
	}
	switch r.NAT {
	case NATUnknown:
		note := r.Note
		if note == "" {
			note = "no test could tell"
		}
		return "your NAT type is unknown: " + note
	case NATNone:
		if r.Filtering != BehaviorUnknown {
			how = "filtering " + r.Filtering.String() + "; " + how
		}
		return fmt.Sprintf("you have no NAT: your public address %v is your local address (%s)", r.Public, how)
	}
	return fmt.Sprintf("your NAT is %v (mapping %v, filtering %v; %s)", r.NAT, r.Mapping, r.Filtering, how)
}
