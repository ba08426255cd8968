package punch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/stun/v3"
)

// DefaultSTUNServers are well-known public STUN servers, for real users
// only: tests must never send to them. stun.stunprotocol.org runs stuntman,
// which answers the RFC 5780 behaviour tests; the others only tell us our
// mapping (which, from two of them, still says whether the NAT is
// symmetric).
var DefaultSTUNServers = []string{
	"stun.l.google.com:19302",
	"stun1.l.google.com:19302",
	"stun.cloudflare.com:3478",
	"stun.stunprotocol.org:3478",
}

// defaultSTUNPort is used for a server named without a port.
const defaultSTUNPort = 3478

// CHANGE-REQUEST flags (RFC 5780 §7.2, RFC 3489 §11.2.4).
const (
	changeIP   = 0x04
	changePort = 0x02
)

// lookupNetIP looks up server names; a test knob, so that tests never
// reach a real DNS server.
var lookupNetIP = net.DefaultResolver.LookupNetIP

// ResolveServers turns "host:port" strings into addresses, in order and
// without duplicates. IP literals ("192.0.2.10:3478", "[2001:db8::1]:3478")
// need no DNS; a missing port means 3478. Names are looked up in parallel,
// each bounded by ctx, and the first IPv4 address is taken (an IPv6 one
// only if there is none): the NATs we traverse are IPv4 ones. Names that
// fail are skipped.
func ResolveServers(ctx context.Context, names []string) []netip.AddrPort {
	out := make([]netip.AddrPort, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		host, port, ok := splitServer(name)
		if !ok {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			out[i] = netip.AddrPortFrom(ip.Unmap(), port)
			continue
		}
		wg.Go(func() {
			ips, err := lookupNetIP(ctx, "ip", host)
			if err != nil {
				return
			}
			var best netip.Addr
			for _, ip := range ips {
				ip = ip.Unmap()
				if ip.Is4() {
					best = ip
					break
				}
				if !best.IsValid() {
					best = ip
				}
			}
			if best.IsValid() {
				out[i] = netip.AddrPortFrom(best, port)
			}
		})
	}
	wg.Wait()
	return dedup(out)
}

// splitServer splits "host:port" (or a bare host or IP) into host and a
// numeric port.
func splitServer(s string) (host string, port uint16, ok bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", 0, false
	}
	if ip, err := netip.ParseAddr(s); err == nil { // bare IP, even IPv6
		return ip.String(), defaultSTUNPort, true
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(s, ":") {
			return "", 0, false
		}
		return s, defaultSTUNPort, true
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 || h == "" {
		return "", 0, false
	}
	return h, uint16(n), true
}

// dedup drops invalid and repeated addresses, keeping the order.
func dedup(l []netip.AddrPort) []netip.AddrPort {
	var out []netip.AddrPort
	seen := make(map[netip.AddrPort]bool)
	for _, a := range l {
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		if !a.IsValid() || seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	return out
}

// answer is what one binding response told us.
type answer struct {
	server  netip.AddrPort // where the request went
	mapped  netip.AddrPort // XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS
	other   netip.AddrPort // OTHER-ADDRESS (RFC 5780), if any
	changed netip.AddrPort // CHANGED-ADDRESS (RFC 3489), if any
	origin  netip.AddrPort // RESPONSE-ORIGIN, else SOURCE-ADDRESS, if any
}

// errRefused is a STUN error response; errNoMapping a success response
// that does not say our address.
var (
	errRefused   = errors.New("error response")
	errNoMapping = errors.New("response without a mapped address")
)

// bind sends one binding request (with CHANGE-REQUEST flags if change is
// not 0) from s to server and parses the response. It waits until ctx ends.
func bind(ctx context.Context, s *Socket, server netip.AddrPort, change byte) (answer, error) {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
	if change != 0 {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, change}})
	}
	setters = append(setters, stun.Fingerprint)
	req, err := stun.Build(setters...)
	if err != nil {
		return answer{}, err
	}
	resp, err := s.Transact(ctx, server, req)
	if err != nil {
		return answer{}, err
	}
	return parseAnswer(server, resp)
}

func parseAnswer(server netip.AddrPort, m *stun.Message) (answer, error) {
	a := answer{server: server}
	if m.Type != stun.BindingSuccess {
		var code stun.ErrorCodeAttribute
		if code.GetFrom(m) == nil {
			return a, fmt.Errorf("%w: %v", errRefused, code)
		}
		return a, fmt.Errorf("%w: %v", errRefused, m.Type)
	}
	var xa stun.XORMappedAddress
	if xa.GetFrom(m) == nil {
		a.mapped = addrPort(xa.IP, xa.Port)
	} else {
		a.mapped = getAddr(m, stun.AttrMappedAddress)
	}
	if !a.mapped.IsValid() {
		return a, errNoMapping
	}
	a.other = getAddr(m, stun.AttrOtherAddress)
	a.changed = getAddr(m, stun.AttrChangedAddress)
	if a.origin = getAddr(m, stun.AttrResponseOrigin); !a.origin.IsValid() {
		a.origin = getAddr(m, stun.AttrSourceAddress)
	}
	return a, nil
}

// getAddr reads an attribute laid out like MAPPED-ADDRESS.
func getAddr(m *stun.Message, t stun.AttrType) netip.AddrPort {
	var ma stun.MappedAddress
	if ma.GetFromAs(m, t) != nil {
		return netip.AddrPort{}
	}
	return addrPort(ma.IP, ma.Port)
}

func addrPort(ip net.IP, port int) netip.AddrPort {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || port <= 0 || port > 0xffff {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

// Discover asks every server in parallel from s and returns the first
// mapping (our public address) and the server that reported it. ctx bounds
// the wait for each server (give it a deadline: an unanswered request is
// retransmitted until ctx ends); the others are abandoned once one answers.
func Discover(ctx context.Context, s *Socket, servers []netip.AddrPort) (netip.AddrPort, string, error) {
	answers, err := gather(ctx, s, servers, 0)
	if len(answers) == 0 {
		return netip.AddrPort{}, "", err
	}
	return answers[0].mapped, answers[0].server.String(), nil
}

// gather asks every server in parallel from s and returns the answers in
// the order they came. Once the first has come it waits at most grace for
// the others. The error says why no server answered, if none did.
func gather(ctx context.Context, s *Socket, servers []netip.AddrPort, grace time.Duration) ([]answer, error) {
	servers = dedup(servers)
	if len(servers) == 0 {
		return nil, errors.New("no STUN server to ask")
	}
	ctx, cancel := context.WithCancel(ctx)
	type result struct {
		a   answer
		err error
	}
	results := make(chan result, len(servers))
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Go(func() {
			a, err := bind(ctx, s, srv, 0)
			if err != nil {
				err = fmt.Errorf("%v: %w", srv, err)
			}
			results <- result{a, err}
		})
	}
	defer func() {
		cancel() // every Transact still waiting returns at once
		wg.Wait()
	}()

	var answers []answer
	var errs []error
	var graceC <-chan time.Time
	for range servers {
		var r result
		select {
		case r = <-results:
		case <-graceC:
			return answers, nil
		}
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		answers = append(answers, r.a)
		if grace <= 0 {
			return answers, nil
		}
		if graceC == nil {
			t := time.NewTimer(grace)
			defer t.Stop()
			graceC = t.C
		}
	}
	if len(answers) > 0 {
		return answers, nil
	}
	// One line, and errors.Is sees every error.
	format := "no STUN server answered (" + strings.Repeat("%w; ", len(errs))
	return nil, fmt.Errorf(strings.TrimSuffix(format, "; ")+")", anys(errs)...)
}

// localFor is the local address of s toward server: the socket's own
// address, or if it is bound to a wildcard, the IP the OS would pick for
// server (found with a connected UDP socket, which sends nothing).
func localFor(s *Socket, server netip.AddrPort) netip.AddrPort {
	la := s.LocalAddr()
	ip := la.Addr().Unmap()
	if ip.IsUnspecified() {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
		if err == nil {
			ip = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
			_ = c.Close()
		}
	}
	return netip.AddrPortFrom(ip, la.Port())
}

func anys(errs []error) []any {
	l := make([]any, len(errs))
	for i, e := range errs {
		l[i] = e
	}
	return l
}
