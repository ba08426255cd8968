package punch

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
)

// Probe messages (64 bytes) exchanged on the shared socket while punching:
//
//	0  magic "P2P" 0xC7 (not STUN: its first two bits are 01; not UDT:
//	   the UDT engine only reads the socket after punching)
//	4  type: probe, ack, nominate, nominate-ack
//	8  nonce of the sender's run
//	16 echo: for ack and nominate-ack, the nonce being answered
//	24 reserved, zero
//	32 HMAC-SHA256(sender's token secret, bytes 0..31), first 16 bytes
//	48 HMAC-SHA256(receiver's token secret, bytes 0..31), first 16 bytes,
//	   or zeros when the sender was only given a bare address
//
// A receiver accepts a message when one MAC checks out under a secret it
// knows (its own, or the peer's from the peer's token). Only when it has
// neither (it was given a bare address and the peer sent no MAC under its
// secret) does it accept the message unauthenticated.

var probeMagic = [4]byte{'P', '2', 'P', 0xC7}

const (
	probeLen = 64

	msgProbe       = 1
	msgAck         = 2
	msgNominate    = 3
	msgNominateAck = 4
)

func isProbe(b []byte) bool {
	return len(b) >= 4 && b[0] == probeMagic[0] && b[1] == probeMagic[1] && b[2] == probeMagic[2] && b[3] == probeMagic[3]
}

type probeMsg struct {
	typ   byte
	nonce uint64
	echo  uint64
}

func mac(secret [16]byte, body []byte) [16]byte {
	h := hmac.New(sha256.New, secret[:])
	h.Write(body)
	var out [16]byte
	copy(out[:], h.Sum(nil))
	return out
}

// appendProbe encodes m; peerSecret is used only if havePeer.
func appendProbe(b []byte, m probeMsg, own [16]byte, peer [16]byte, havePeer bool) []byte {
	start := len(b)
	b = append(b, probeMagic[:]...)
	b = append(b, m.typ, 0, 0, 0)
	b = binary.BigEndian.AppendUint64(b, m.nonce)
	b = binary.BigEndian.AppendUint64(b, m.echo)
	b = append(b, make([]byte, 8)...)
	body := b[start : start+32]
	m1 := mac(own, body)
	b = append(b, m1[:]...)
	if havePeer {
		m2 := mac(peer, body)
		b = append(b, m2[:]...)
	} else {
		b = append(b, make([]byte, 16)...)
	}
	return b
}

// authLevel says how a message was authenticated.
type authLevel int

const (
	authNone   authLevel = iota // accepted without proof (bare addresses only)
	authSecret                  // a MAC checked out
)

// parseProbe decodes and authenticates b. own is our secret; peer the
// peer's (if havePeer).
func parseProbe(b []byte, own [16]byte, peer [16]byte, havePeer bool) (probeMsg, authLevel, bool) {
	var m probeMsg
	if len(b) != probeLen || !isProbe(b) {
		return m, 0, false
	}
	m.typ = b[4]
	if m.typ < msgProbe || m.typ > msgNominateAck {
		return m, 0, false
	}
	m.nonce = binary.BigEndian.Uint64(b[8:])
	m.echo = binary.BigEndian.Uint64(b[16:])
	body := b[:32]
	if havePeer {
		want := mac(peer, body)
		if hmac.Equal(want[:], b[32:48]) {
			return m, authSecret, true
		}
	}
	want := mac(own, body)
	if hmac.Equal(want[:], b[48:64]) {
		return m, authSecret, true
	}
	var zero [16]byte
	if !havePeer && hmac.Equal(zero[:], b[48:64]) {
		return m, authNone, true
	}
	return m, 0, false
}
