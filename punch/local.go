package punch

import (
	"net"
	"net/netip"
)

// LocalCandidates lists this host's own addresses with port, for the
// token: two peers behind one NAT that does not hairpin can only reach
// each other there. IPv4 unicast addresses that are not loopback come
// first; loopback is used only if there is nothing else (a machine with no
// network, or tests): not when the only other address is skip, the public
// one (a host with no NAT has no separate local path to offer). At most
// MaxLocals are returned, minus skip.
func LocalCandidates(port uint16, skip netip.AddrPort) []netip.AddrPort {
	ifaces, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out, loop []netip.AddrPort
	skipped := false
	for _, a := range ifaces {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr().Unmap()
		if !ip.Is4() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
			continue
		}
		ap := netip.AddrPortFrom(ip, port)
		if ap == skip {
			skipped = !ip.IsLoopback()
			continue
		}
		if ip.IsLoopback() {
			loop = append(loop, ap)
			continue
		}
		out = append(out, ap)
	}
	if len(out) == 0 && !skipped {
		out = loop
	}
	if len(out) > MaxLocals {
		out = out[:MaxLocals]
	}
	return out
}
