//go:build interop

package interop

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// rendezvousGaps are the start delays between the two sides of a
// rendezvous, beyond the simultaneous start. libudt gives up after 30 s.
var rendezvousGaps = []time.Duration{2 * time.Second, 5 * time.Second}

// lossyRelay is the impaired path of the relay tests: 2 % of data and 1 %
// of control packets dropped in each direction, 20 ms one-way delay.
var lossyRelay = []string{"-d", "2", "-k", "1", "-D", "20"}

// direction is who sends to whom in the p2pcat <-> libudt tests.
type direction struct {
	name             string
	sender, receiver kind
}

var directions = []direction{
	{"p2pcat-to-udtpeer", p2pcatRaw, udtpeer},
	{"udtpeer-to-p2pcat", udtpeer, p2pcatRaw},
}

// p2pcatSide is the side p2pcat plays in d.
func (d direction) p2pcatSide() side {
	if d.sender.impl == implP2pcat {
		return sideSender
	}
	return sideReceiver
}

// TestLoopbackClientServer: 256 MiB each way against libudt, with each
// program as the listener in turn.
func TestLoopbackClientServer(t *testing.T) {
	requireEnv(t)
	speeds := newSpeedLog(t)
	for _, d := range directions {
		for _, p2pcatListens := range []bool{true, false} {
			listener, name := d.p2pcatSide(), "p2pcat-listens"
			if !p2pcatListens {
				listener, name = 1-listener, "udtpeer-listens"
			}
			t.Run(d.name+"/"+name, func(t *testing.T) {
				transfer{
					plan:    plan{sender: d.sender, receiver: d.receiver, listener: listener},
					src:     env.big,
					timeout: loopbackTimeout(env.big.Size, 0),
					floor:   minLoopbackMBps,
					speeds:  speeds,
				}.run(t)
			})
		}
	}
}

// TestLoopbackRendezvous: 256 MiB each way against libudt in rendezvous
// mode, started together and with each side starting first. libudt as the
// sender that connects first is the case that crawls between two libudt
// peers (its first flight is discarded by a peer still connecting): a
// receiver that follows shared/udt4-protocol.md 6.2 point 6 avoids it.
func TestLoopbackRendezvous(t *testing.T) {
	requireEnv(t)
	speeds := newSpeedLog(t)
	for _, d := range directions {
		type start struct {
			name  string
			first side
			gap   time.Duration
		}
		starts := []start{{"together", sideReceiver, 0}}
		for _, gap := range rendezvousGaps {
			starts = append(starts,
				start{fmt.Sprintf("p2pcat-first-%v", gap), d.p2pcatSide(), gap},
				start{fmt.Sprintf("udtpeer-first-%v", gap), 1 - d.p2pcatSide(), gap})
		}
		for _, s := range starts {
			t.Run(d.name+"/"+s.name, func(t *testing.T) {
				transfer{
					plan: plan{sender: d.sender, receiver: d.receiver, rendezvous: true,
						first: s.first, gap: s.gap},
					src:     env.big,
					timeout: loopbackTimeout(env.big.Size, s.gap),
					floor:   minLoopbackMBps,
					speeds:  speeds,
				}.run(t)
			})
		}
	}
}

// TestRelayLossy: 64 MiB byte-exact through udprelay with loss and delay,
// client/server and rendezvous, each direction. In client/server p2pcat
// listens when it sends and dials when it receives (the loopback test
// covers the other pairings). No floor: libudt itself manages ~2.5 MB/s
// on this path.
func TestRelayLossy(t *testing.T) {
	requireEnv(t)
	speeds := newSpeedLog(t)
	for _, rendezvous := range []bool{false, true} {
		for _, d := range directions {
			mode := "client-server"
			if rendezvous {
				mode = "rendezvous"
			}
			t.Run(mode+"/"+d.name, func(t *testing.T) {
				relay := append(append([]string(nil), lossyRelay...), "-S", strconv.Itoa(1+rand.IntN(1<<30)))
				transfer{
					plan: plan{sender: d.sender, receiver: d.receiver, rendezvous: rendezvous,
						listener: sideSender, first: sideReceiver, relayArgs: relay},
					src:     env.small,
					timeout: relayRunTimeout,
					speeds:  speeds,
				}.run(t)
			})
		}
	}
}

// TestKillMidStream: SIGKILL one side of a running transfer (endless
// source); the survivor must exit non-zero within deathNoticeLimit. libudt
// needs ~46 s to notice a dead peer, p2pcat promises 10 s.
func TestKillMidStream(t *testing.T) {
	requireEnv(t)
	cases := []struct {
		name string
		kc   killCase
	}{
		{"p2pcat-sender-killed", killCase{sender: p2pcatOwn, receiver: p2pcatOwn, victim: sideSender, wantExit: 4}},
		{"p2pcat-receiver-killed", killCase{sender: p2pcatOwn, receiver: p2pcatOwn, victim: sideReceiver, wantExit: 4}},
		{"udtpeer-sender-killed", killCase{sender: udtpeer, receiver: p2pcatRaw, victim: sideSender, wantExit: 4}},
		{"udtpeer-receiver-killed", killCase{sender: p2pcatRaw, receiver: udtpeer, victim: sideReceiver, wantExit: 4}},
	}
	for _, c := range cases {
		t.Run(c.name, c.kc.run)
	}
}

// TestP2pcatRendezvous: p2pcat to itself with its own framing, 64 MiB,
// each side starting first.
func TestP2pcatRendezvous(t *testing.T) {
	requireEnv(t)
	speeds := newSpeedLog(t)
	const gap = 2 * time.Second
	for _, first := range []side{sideSender, sideReceiver} {
		t.Run(first.String()+"-first", func(t *testing.T) {
			transfer{
				plan: plan{sender: p2pcatOwn, receiver: p2pcatOwn, rendezvous: true,
					first: first, gap: gap},
				src:     env.small,
				timeout: loopbackTimeout(env.small.Size, gap),
				floor:   minLoopbackMBps,
				speeds:  speeds,
			}.run(t)
		})
	}
}

// TestRelayLibudtSender: a libudt sender does as well into p2pcat --raw as
// into libudt itself, through the lossy relay (rendezvous, runs
// alternated). libudt's sender sizes its window from the receive rate in
// our ACKs, and libudt's receiver reports a high one; --raw reports at
// least that (udt.Config.LibudtRate). With the honest figure alone this
// direction ran at a fifth of libudt -> libudt in the NAT lab.
func TestRelayLibudtSender(t *testing.T) {
	requireEnv(t)
	const runs = 2
	rates := map[string][]float64{}
	for i := range runs {
		for _, receiver := range []kind{udtpeer, p2pcatRaw} {
			name := fmt.Sprintf("to-%s/%d", receiver, i+1)
			t.Run(name, func(t *testing.T) {
				relay := append(append([]string(nil), lossyRelay...), "-S", strconv.Itoa(1+rand.IntN(1<<30)))
				mbps := transfer{
					plan: plan{sender: udtpeer, receiver: receiver, rendezvous: true,
						first: sideReceiver, relayArgs: relay},
					src:     env.small,
					timeout: relayRunTimeout,
				}.run(t)
				rates[receiver.String()] = append(rates[receiver.String()], mbps)
			})
		}
	}
	best := func(k kind) float64 { return slices.Max(rates[k.String()]) }
	if len(rates[udtpeer.String()]) < runs || len(rates[p2pcatRaw.String()]) < runs {
		t.Fatal("not every run finished")
	}
	lib, own := best(udtpeer), best(p2pcatRaw)
	t.Logf("libudt sender, best of %d: into libudt %.1f MB/s, into p2pcat --raw %.1f MB/s (%.2fx)", runs, lib, own, own/lib)
	if own < 0.8*lib {
		t.Errorf("libudt -> p2pcat --raw %.1f MB/s is under 0.8x libudt -> libudt (%.1f MB/s)", own, lib)
	}
}

// TestRendezvousLostKeepAlive: the keep-alive p2pcat sends when it
// connects is what completes a libudt rendezvous peer still waiting at
// -1. With it lost, libudt must complete on our -2 reply to its next -1,
// 250 ms later. Nothing else may reach it first: a libudt peer that is
// connecting takes any other control packet (an ACK, say) for the end of
// its connect call and returns from it unconnected. p2pcat starts first,
// so that it is the one to connect first.
func TestRendezvousLostKeepAlive(t *testing.T) {
	requireEnv(t)
	for _, d := range directions {
		t.Run(d.name, func(t *testing.T) {
			fromP2pcat := d.p2pcatSide() == sideSender
			drop, dropped := dropFirst(func(fromSender bool, p []byte) bool {
				return fromSender == fromP2pcat && isKeepAlive(p)
			})
			transfer{
				plan: plan{sender: d.sender, receiver: d.receiver, rendezvous: true,
					first: d.p2pcatSide(), gap: 500 * time.Millisecond, drop: drop},
				src:     env.small,
				timeout: loopbackTimeout(env.small.Size, 500*time.Millisecond),
			}.run(t)
			if !dropped.Load() {
				t.Errorf("p2pcat sent no keep-alive to drop")
			}
		})
	}
}

// TestListenerLostResponse: a listener's answer to the client's second
// handshake (its cookie echo) is lost. libudt as client then gives up
// connecting on the first non-handshake packet it receives, so a p2pcat
// listener must send nothing else until the client retries and connects;
// a p2pcat client must retry and take the libudt listener's data after.
// The sender listens; the receiver dials.
func TestListenerLostResponse(t *testing.T) {
	requireEnv(t)
	for _, d := range directions {
		t.Run(d.name, func(t *testing.T) {
			drop, dropped := dropFirst(func(fromSender bool, p []byte) bool {
				return fromSender && isHandshake(p, -1)
			})
			transfer{
				plan:    plan{sender: d.sender, receiver: d.receiver, listener: sideSender, drop: drop},
				src:     env.small,
				timeout: loopbackTimeout(env.small.Size, 0),
			}.run(t)
			if !dropped.Load() {
				t.Fatal("the listener sent no handshake response to drop")
			}
		})
	}
}

// TestLostShutdown: the end of a plain UDT4 stream is the sender's
// Shutdown, a single unacknowledged packet. libudt sends one: when it is
// lost, p2pcat --raw must not call the stream complete; it exits 4 ("the
// peer stopped answering") with every byte written. p2pcat sends two, so a
// libudt receiver still sees the end, at once, when the first is lost.
func TestLostShutdown(t *testing.T) {
	requireEnv(t)
	for _, d := range directions {
		t.Run(d.name, func(t *testing.T) {
			drop, dropped := dropFirst(func(fromSender bool, p []byte) bool {
				return fromSender && isControlType(p, 5)
			})
			tr := transfer{
				plan: plan{sender: d.sender, receiver: d.receiver, rendezvous: true,
					first: sideReceiver, drop: drop},
				src:     env.small,
				timeout: loopbackTimeout(env.small.Size, 0) + 15*time.Second,
			}
			start := time.Now()
			tr.run(t)
			took := time.Since(start)
			if !dropped.Load() {
				t.Fatal("the sender sent no Shutdown to drop")
			}
			// p2pcat as sender: the second Shutdown ends libudt's receive
			// at once instead of after its ~46 s dead-peer timeout.
			if d.sender == p2pcatRaw && took > 20*time.Second {
				t.Errorf("the run took %v: libudt did not see p2pcat's second Shutdown", took.Round(time.Second))
			}
		})
	}
}

// dropFirst returns an in-process relay filter that drops the first
// datagram match picks, and the flag that says it did.
func dropFirst(match func(fromSender bool, p []byte) bool) (func(bool, []byte) bool, *atomic.Bool) {
	dropped := new(atomic.Bool)
	return func(fromSender bool, p []byte) bool {
		return match(fromSender, p) && !dropped.Swap(true)
	}, dropped
}

// isHandshake reports whether p is a UDT handshake of request type req
// (the body's sixth field, after the 16-byte header).
func isHandshake(p []byte, req int32) bool {
	return isControlType(p, 0) && len(p) >= 40 && int32(binary.BigEndian.Uint32(p[36:40])) == req
}

// isKeepAlive reports whether p is a UDT keep-alive (control type 1).
func isKeepAlive(p []byte) bool { return isControlType(p, 1) }

// isControlType reports whether p is a UDT control packet of type typ.
func isControlType(p []byte, typ uint16) bool {
	return len(p) >= 16 && p[0]&0x80 != 0 && binary.BigEndian.Uint16(p[0:2])&0x7fff == typ
}
