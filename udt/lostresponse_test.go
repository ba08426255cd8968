package udt

import (
	"context"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/internal/memlink"
	"github.com/p2pcat/p2pcat/udt/internal/wire"
)

// A libudt client whose handshake response is lost gives up connecting on
// the first non-handshake packet it receives (its processConnectResponse
// fails on anything but a handshake), so a listener's child must send
// nothing but handshakes until the client proves it is connected: no
// keep-alive after the response, and no data after a grace period while
// the client is still retrying its request. The raw client here loses the
// first response, watches for 1.5 s (longer than any grace period), then
// retries, connects and sends its keep-alive: data must follow.
func TestListenerQuietUntilClientConnects(t *testing.T) {
	pa, pb := memlink.Pair(memlink.Config{}, memlink.Config{})
	defer closeLink(pa, pb)
	l, err := Listen(pb, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		c, err := l.Accept(ctx)
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(make([]byte, 100000))
		<-ctx.Done()
	}()

	const clientID = 4242
	buf := make([]byte, 2048)
	send := func(b []byte) {
		if _, err := pa.WriteTo(b, pb.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	handshake := func(hs *wire.Handshake) {
		send(hs.Append(wire.AppendControlHeader(nil, &wire.ControlHeader{Type: wire.TypeHandshake})))
	}
	// read returns the next datagram before deadline, or nil.
	read := func(deadline time.Time) []byte {
		pa.SetReadDeadline(deadline)
		k, _, err := pa.ReadFrom(buf)
		if err != nil {
			return nil
		}
		return buf[:k]
	}
	awaitHandshake := func(req int32) wire.Handshake {
		deadline := time.Now().Add(2 * time.Second)
		for {
			b := read(deadline)
			if b == nil {
				t.Fatalf("no handshake of type %d from the listener", req)
			}
			var hs wire.Handshake
			h, body, err := wire.ParseControl(b)
			if err == nil && h.Type == wire.TypeHandshake && hs.Parse(body) == nil && hs.ReqType == req {
				return hs
			}
			t.Fatalf("waiting for handshake %d, got a %d-byte packet (control %v)", req, len(b), wire.IsControl(b))
		}
	}

	hs := wire.Handshake{Version: 4, SockType: wire.SockStream, ISN: 1000, MSS: 1500, FlightFlag: 8192, ReqType: wire.ReqRegular, SocketID: clientID}
	handshake(&hs)
	hs.Cookie = awaitHandshake(wire.ReqRegular).Cookie
	hs.ReqType = wire.ReqResponse
	handshake(&hs)
	awaitHandshake(wire.ReqResponse) // "lost": the client stays connecting

	watchUntil := time.Now().Add(1500 * time.Millisecond)
	for b := read(watchUntil); b != nil; b = read(watchUntil) {
		h, _, err := wire.ParseControl(b)
		if err != nil || h.Type != wire.TypeHandshake {
			t.Fatalf("the listener sent a %d-byte non-handshake packet (control %v, type %v) to a client that had not got its response", len(b), wire.IsControl(b), h.Type)
		}
	}

	handshake(&hs) // the client's retry
	resp := awaitHandshake(wire.ReqResponse)
	send(wire.AppendEmpty(nil, wire.TypeKeepAlive, 0, uint32(resp.SocketID)))
	deadline := time.Now().Add(2 * time.Second)
	for {
		b := read(deadline)
		if b == nil {
			t.Fatal("no data from the listener after the client connected")
		}
		if !wire.IsControl(b) {
			return
		}
	}
}
