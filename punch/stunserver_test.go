package punch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// Fake STUN servers on loopback. Loopback has no NAT, so a fakeNAT shared
// by the servers of a test plays one: the servers report the mapping it
// invents and drop the answers its filter would drop. The filter is exact,
// since the servers see every packet a client sends to any of them.

// fakePublicIP is the invented public address; nothing is ever sent there.
var fakePublicIP = netip.MustParseAddr("198.51.100.2")

type fakeNAT struct {
	none      bool     // no NAT: report the real source, filter nothing
	mapping   Behavior // EndpointIndependent, AddressDependent or AddressAndPortDependent
	filtering Behavior // EndpointIndependent, AddressDependent or AddressAndPortDependent

	mu    sync.Mutex
	ports map[string]uint16                          // flow key → public port
	seen  map[netip.AddrPort]map[netip.AddrPort]bool // client → servers it sent to
}

func newNAT(mapping, filtering Behavior) *fakeNAT {
	return &fakeNAT{mapping: mapping, filtering: filtering}
}

func noNAT() *fakeNAT { return &fakeNAT{none: true} }

// out records that client sent to dst and returns the mapping dst sees.
func (n *fakeNAT) out(client, dst netip.AddrPort) netip.AddrPort {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.seen == nil {
		n.seen = make(map[netip.AddrPort]map[netip.AddrPort]bool)
		n.ports = make(map[string]uint16)
	}
	if n.seen[client] == nil {
		n.seen[client] = make(map[netip.AddrPort]bool)
	}
	n.seen[client][dst] = true
	if n.none {
		return client
	}
	key := client.String()
	switch n.mapping {
	case AddressDependent:
		key += " " + dst.Addr().String()
	case AddressAndPortDependent:
		key += " " + dst.String()
	}
	p, ok := n.ports[key]
	if !ok {
		p = uint16(30000 + len(n.ports))
		n.ports[key] = p
	}
	return netip.AddrPortFrom(fakePublicIP, p)
}

// allowIn says whether the filter lets a packet from src reach client.
func (n *fakeNAT) allowIn(client, src netip.AddrPort) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.none || n.filtering == EndpointIndependent {
		return true
	}
	for dst := range n.seen[client] {
		if dst == src || (n.filtering == AddressDependent && dst.Addr() == src.Addr()) {
			return true
		}
	}
	return false
}

type flavor int

const (
	flavor5780   flavor = iota // XOR-MAPPED-ADDRESS, OTHER-ADDRESS, RESPONSE-ORIGIN
	flavor3489                 // MAPPED-ADDRESS, CHANGED-ADDRESS, SOURCE-ADDRESS
	flavorPlain                // XOR-MAPPED-ADDRESS only, one socket, no CHANGE-REQUEST
	flavorSilent               // reads and never answers
)

type serverOpts struct {
	flavor       flavor
	nat          *fakeNAT
	noIP2P1      bool // no socket at (IP2,P1), as an RFC 3489 server may not have
	ignoreChange bool // answer CHANGE-REQUEST from where it was received
	refuseChange bool // answer CHANGE-REQUEST with a 420 error
	silentOther  bool // only the primary socket (IP1,P1) ever answers
}

var (
	ip1 = netip.MustParseAddr("127.0.0.1")
	ip2 = netip.MustParseAddr("127.0.0.2")
)

type fakeServer struct {
	Addr  netip.AddrPort // primary (IP1,P1)
	Other netip.AddrPort // (IP2,P2), if any
	opts  serverOpts
	socks map[netip.AddrPort]*net.UDPConn
	wg    sync.WaitGroup
}

// startServer starts a fake server; it stops at the end of the test.
func startServer(t testing.TB, o serverOpts) *fakeServer {
	t.Helper()
	if o.nat == nil {
		o.nat = noNAT()
	}
	f := &fakeServer{opts: o, socks: make(map[netip.AddrPort]*net.UDPConn)}
	var err error
	if o.flavor == flavorPlain || o.flavor == flavorSilent {
		err = f.listen(netip.AddrPortFrom(ip1, 0))
	} else {
		for range 20 { // P1 and P2 must be free on both IPs
			if err = f.listenFour(); err == nil {
				break
			}
			f.closeAll()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	for a, c := range f.socks {
		f.wg.Go(func() { f.serve(a, c) })
	}
	t.Cleanup(func() {
		for _, c := range f.socks { // the serve goroutines still read f.socks
			_ = c.Close()
		}
		f.wg.Wait()
	})
	return f
}

func (f *fakeServer) listen(a netip.AddrPort) error {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(a))
	if err != nil {
		return err
	}
	if !a.IsValid() || a.Port() == 0 {
		a = c.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	if len(f.socks) == 0 {
		f.Addr = a
	}
	f.socks[a] = c
	return nil
}

func (f *fakeServer) listenFour() error {
	if err := f.listen(netip.AddrPortFrom(ip1, 0)); err != nil {
		return err
	}
	p1 := f.Addr.Port()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip2, 0)))
	if err != nil {
		return err
	}
	f.Other = c.LocalAddr().(*net.UDPAddr).AddrPort()
	f.socks[f.Other] = c
	p2 := f.Other.Port()
	if p1 == p2 {
		return errors.New("same port twice")
	}
	if err := f.listen(netip.AddrPortFrom(ip1, p2)); err != nil {
		return err
	}
	if !f.opts.noIP2P1 {
		return f.listen(netip.AddrPortFrom(ip2, p1))
	}
	return nil
}

// closeAll closes and forgets the sockets before serving starts.
func (f *fakeServer) closeAll() {
	for a, c := range f.socks {
		_ = c.Close()
		delete(f.socks, a)
	}
}

// counterpart is a with its IP and/or port swapped for the other one.
func (f *fakeServer) counterpart(a netip.AddrPort, swapIP, swapPort bool) netip.AddrPort {
	ip, port := a.Addr(), a.Port()
	if swapIP {
		ip = map[netip.Addr]netip.Addr{ip1: ip2, ip2: ip1}[ip]
	}
	if swapPort {
		if port == f.Addr.Port() {
			port = f.Other.Port()
		} else {
			port = f.Addr.Port()
		}
	}
	return netip.AddrPortFrom(ip, port)
}

func (f *fakeServer) serve(at netip.AddrPort, c *net.UDPConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if f.opts.flavor == flavorSilent {
			continue
		}
		req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if req.Decode() != nil || req.Type != stun.BindingRequest {
			continue
		}
		mapped := f.opts.nat.out(from, at)
		var change byte
		if v, err := req.Get(stun.AttrChangeRequest); err == nil && len(v) == 4 {
			change = v[3]
		}
		src := at
		if f.opts.flavor != flavorPlain && !f.opts.ignoreChange && !f.opts.refuseChange {
			src = f.counterpart(at, change&changeIP != 0, change&changePort != 0)
		}
		var resp *stun.Message
		if change != 0 && f.opts.refuseChange {
			resp, err = stun.Build(stun.NewTransactionIDSetter(req.TransactionID),
				stun.NewType(stun.MethodBinding, stun.ClassErrorResponse),
				stun.CodeUnknownAttribute, stun.Fingerprint)
		} else {
			resp, err = f.response(req, at, src, mapped)
		}
		if err != nil {
			panic(err)
		}
		sc := f.socks[src]
		if sc == nil || (f.opts.silentOther && src != f.Addr) || !f.opts.nat.allowIn(from, src) {
			continue
		}
		_, _ = sc.WriteToUDPAddrPort(resp.Raw, from)
	}
}

func (f *fakeServer) response(req *stun.Message, at, src, mapped netip.AddrPort) (*stun.Message, error) {
	other := f.counterpart(at, true, true)
	setters := []stun.Setter{stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess}
	switch f.opts.flavor {
	case flavor5780:
		setters = append(setters,
			&stun.XORMappedAddress{IP: mapped.Addr().AsSlice(), Port: int(mapped.Port())},
			&stun.OtherAddress{IP: other.Addr().AsSlice(), Port: int(other.Port())},
			&stun.ResponseOrigin{IP: src.Addr().AsSlice(), Port: int(src.Port())})
	case flavor3489:
		setters = append(setters,
			addrAttr(stun.AttrMappedAddress, mapped),
			addrAttr(stun.AttrChangedAddress, other),
			addrAttr(stun.AttrSourceAddress, src))
	case flavorPlain:
		setters = append(setters, &stun.XORMappedAddress{IP: mapped.Addr().AsSlice(), Port: int(mapped.Port())})
	default:
		return nil, fmt.Errorf("flavor %d does not answer", f.opts.flavor)
	}
	return stun.Build(append(setters, stun.Fingerprint)...)
}

// addrAttr is a setter for an attribute laid out like MAPPED-ADDRESS.
type addrSetter struct {
	t stun.AttrType
	a netip.AddrPort
}

func addrAttr(t stun.AttrType, a netip.AddrPort) stun.Setter { return addrSetter{t, a} }

func (s addrSetter) AddTo(m *stun.Message) error {
	ma := stun.MappedAddress{IP: s.a.Addr().AsSlice(), Port: int(s.a.Port())}
	return ma.AddToAs(m, s.t)
}

func init() {
	// Loopback answers in microseconds: wait less for the answers that
	// rightly never come, so that a whole Classify takes about 0.5 s.
	behaviorTimeout = 500 * time.Millisecond
	gatherGrace = 200 * time.Millisecond
}

// newClient opens the run's socket on bind ("127.0.0.1:0", "0.0.0.0:0").
func newClient(t testing.TB, bind string) *Socket {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(bind)))
	if err != nil {
		t.Fatal(err)
	}
	s := NewSocket(c)
	t.Cleanup(func() {
		s.Release()
		_ = c.Close()
	})
	return s
}

// localOf is the address a loopback server sees for s.
func localOf(s *Socket) netip.AddrPort {
	return netip.AddrPortFrom(ip1, s.LocalAddr().Port())
}
