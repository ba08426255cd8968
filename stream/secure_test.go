package stream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flynn/noise"
)

// The token secrets of the initiator and the responder in these tests.
var (
	secretI = [16]byte{'i', 'n', 'i', 't', 'i', 'a', 't', 'o', 'r', 1, 2, 3, 4, 5, 6, 7}
	secretR = [16]byte{'r', 'e', 's', 'p', 'o', 'n', 'd', 'e', 'r', 9, 8, 7, 6, 5, 4, 3}
	secretX = [16]byte{'s', 'o', 'm', 'e', 'o', 'n', 'e', ' ', 'e', 'l', 's', 'e'}
)

// knowledge is one of the four ways tokens may have been exchanged.
type knowledge struct {
	name   string
	iKnows bool // the initiator was given the responder's token
	rKnows bool // the responder was given the initiator's token
}

var knowledges = []knowledge{
	{"both", true, true},
	{"initiator-only", true, false},
	{"responder-only", false, true},
	{"neither", false, false},
}

func (kn knowledge) keys() (ki, kr Keys) {
	ki = Keys{Own: secretI, HavePeer: kn.iKnows}
	if kn.iKnows {
		ki.Peer = secretR
	}
	kr = Keys{Own: secretR, HavePeer: kn.rKnows}
	if kn.rKnows {
		kr.Peer = secretI
	}
	return ki, kr
}

// pipe returns the two ends of an in-memory connection that fails instead
// of hanging when a test goes wrong.
func pipe(t testing.TB) (net.Conn, net.Conn) {
	a, b := net.Pipe()
	deadline := time.Now().Add(20 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// tamperFunc may change b, the bytes at stream offset off flowing in
// direction dir (0: initiator to responder, 1: back), in place.
type tamperFunc func(dir int, off int64, b []byte)

// mitm returns the initiator's and the responder's ends of a connection
// that passes through tamper. When either end closes, both do.
func mitm(t testing.TB, tamper tamperFunc) (ci, cr net.Conn) {
	ci, mi := pipe(t)
	cr, mr := pipe(t)
	var wg sync.WaitGroup
	relay := func(dir int, src, dst net.Conn) {
		defer wg.Done()
		buf := make([]byte, 4096)
		var off int64
		for {
			n, err := src.Read(buf)
			if n > 0 {
				tamper(dir, off, buf[:n])
				off += int64(n)
				if _, werr := dst.Write(buf[:n]); werr != nil {
					err = werr
				}
			}
			if err != nil {
				mi.Close()
				mr.Close()
				return
			}
		}
	}
	wg.Add(2)
	go relay(0, mi, mr)
	go relay(1, mr, mi)
	t.Cleanup(func() { ci.Close(); cr.Close(); wg.Wait() })
	return ci, cr
}

// flipAt returns a tamperFunc that flips bit of the byte at offset at in
// direction dir.
func flipAt(dir int, at int64, bit uint) tamperFunc {
	return func(d int, off int64, b []byte) {
		if d == dir && at >= off && at < off+int64(len(b)) {
			b[at-off] ^= 1 << bit
		}
	}
}

type result struct {
	c   *SecureConn
	err error
}

// handshake runs Secure on both ends at once.
func handshake(ci, cr io.ReadWriter, ki, kr Keys) (ri, rr result) {
	return handshakeAES(ci, cr, ki, kr, fastAES, fastAES)
}

// handshakeAES is handshake with each side's CPU given AES-GCM or not.
func handshakeAES(ci, cr io.ReadWriter, ki, kr Keys, iAES, rAES bool) (ri, rr result) {
	done := make(chan struct{})
	go func() {
		rr.c, rr.err = secure(cr, false, kr, rAES)
		close(done)
	}()
	ri.c, ri.err = secure(ci, true, ki, iAES)
	<-done
	return ri, rr
}

// connected returns both ends of a secured in-memory connection.
func connected(t testing.TB, kn knowledge) (si, sr *SecureConn) {
	t.Helper()
	ci, cr := pipe(t)
	ki, kr := kn.keys()
	ri, rr := handshake(ci, cr, ki, kr)
	if ri.err != nil || rr.err != nil {
		t.Fatalf("handshake: initiator %v, responder %v", ri.err, rr.err)
	}
	return ri.c, rr.c
}

// offline returns both ends of a secured connection whose transport the
// test replaces afterwards (set .rw).
func offline(t testing.TB, kn knowledge) (si, sr *SecureConn) {
	t.Helper()
	si, sr = connected(t, kn)
	si.rw, sr.rw = nil, nil
	return si, sr
}

type readWriter struct {
	io.Reader
	io.Writer
}

// sealed returns the wire bytes of data written by a fresh initiator in
// writes of the given size, and the responder that can read them.
func sealed(t testing.TB, kn knowledge, data []byte, size int) ([]byte, *SecureConn) {
	t.Helper()
	si, sr := offline(t, kn)
	var wire bytes.Buffer
	si.rw = readWriter{nil, &wire}
	for p := data; len(p) > 0; {
		n := min(size, len(p))
		if m, err := si.Write(p[:n]); m != n || err != nil {
			t.Fatalf("Write = %d, %v", m, err)
		}
		p = p[n:]
	}
	return wire.Bytes(), sr
}

// readAll reads c until an error with a small buffer (so that records are
// returned in parts), checking that no error comes with bytes.
func readAll(t testing.TB, c *SecureConn) ([]byte, error) {
	var got []byte
	buf := make([]byte, 1000)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if n != 0 {
				t.Errorf("Read returned %d bytes with %v", n, err)
			}
			if n2, err2 := c.Read(buf); n2 != 0 || err2 != err {
				t.Errorf("Read after %v = %d, %v; want the same error again", err, n2, err2)
			}
			return got, err
		}
	}
}

var codeRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{4}$`)

// Both directions at once, for each way the tokens may have been shared.
func TestSecureRoundTrip(t *testing.T) {
	const size = 8 << 20
	up, down := randomBytes(size), randomBytes(size)
	down[0] ^= 1 // not the same stream as up
	codes := map[string]bool{}
	for _, kn := range knowledges {
		t.Run(kn.name, func(t *testing.T) {
			ci, cr := pipe(t)
			ki, kr := kn.keys()
			ri, rr := handshake(ci, cr, ki, kr)
			if ri.err != nil || rr.err != nil {
				t.Fatalf("handshake: initiator %v, responder %v", ri.err, rr.err)
			}
			si, sr := ri.c, rr.c
			wantAuth := kn.iKnows || kn.rKnows
			if si.Authenticated() != wantAuth || sr.Authenticated() != wantAuth {
				t.Errorf("Authenticated = %v, %v; want %v", si.Authenticated(), sr.Authenticated(), wantAuth)
			}
			if si.Code() != sr.Code() || !codeRE.MatchString(si.Code()) {
				t.Errorf("codes %q, %q; want equal, dddd-dddd", si.Code(), sr.Code())
			}
			if codes[si.Code()] {
				t.Errorf("code %q seen in an earlier connection", si.Code())
			}
			codes[si.Code()] = true

			var wg sync.WaitGroup
			var gotUp, gotDown []byte
			var errs [4]error
			send := func(c *SecureConn, data []byte, err *error) {
				defer wg.Done()
				// Writes of varied sizes, some larger than a record.
				sizes := []int{1, 1000, maxPlain, maxPlain + 1, 300000, 7}
				for i := 0; len(data) > 0; i++ {
					n := min(sizes[i%len(sizes)], len(data))
					if m, e := c.Write(data[:n]); m != n || e != nil {
						*err = fmt.Errorf("Write = %d, %v", m, e)
						return
					}
					data = data[n:]
				}
			}
			recv := func(c *SecureConn, got *[]byte, err *error) {
				defer wg.Done()
				*got = make([]byte, size)
				_, *err = io.ReadFull(c, *got)
			}
			wg.Add(4)
			go send(si, up, &errs[0])
			go send(sr, down, &errs[1])
			go recv(sr, &gotUp, &errs[2])
			go recv(si, &gotDown, &errs[3])
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(gotUp, up) || !bytes.Equal(gotDown, down) {
				t.Fatalf("streams differ: up %v, down %v", bytes.Equal(gotUp, up), bytes.Equal(gotDown, down))
			}
			// The peer closing at a record boundary is a clean EOF.
			ci.Close()
			if n, err := sr.Read(make([]byte, 10)); n != 0 || err != io.EOF {
				t.Fatalf("Read after close = %d, %v; want io.EOF", n, err)
			}
		})
	}
	// A second run without shared secrets gets another code.
	if si, _ := connected(t, knowledges[3]); codes[si.Code()] {
		t.Errorf("code %q repeated in a new connection", si.Code())
	}
}

// A side that has a wrong secret for its peer, or believes its secret is
// known when it is not, makes both sides fail with ErrAuth.
func TestSecureWrongSecret(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ki, kr Keys
	}{
		{"both/initiator-wrong", Keys{secretI, secretX, true}, Keys{secretR, secretI, true}},
		{"both/responder-wrong", Keys{secretI, secretR, true}, Keys{secretR, secretX, true}},
		{"initiator-only/wrong", Keys{secretI, secretX, true}, Keys{Own: secretR}},
		{"responder-only/wrong", Keys{Own: secretI}, Keys{secretR, secretX, true}},
		{"both/initiator-has-other-own", Keys{secretX, secretR, true}, Keys{secretR, secretI, true}},
		{"responder-only/initiator-has-other-own", Keys{Own: secretX}, Keys{secretR, secretI, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ci, cr := pipe(t)
			ri, rr := handshake(ci, cr, tc.ki, tc.kr)
			for side, r := range map[string]result{"initiator": ri, "responder": rr} {
				if !errors.Is(r.err, ErrAuth) || r.c != nil {
					t.Errorf("%s: Secure = %v, %v; want no conn and ErrAuth", side, r.c, r.err)
				}
			}
			t.Logf("initiator: %v; responder: %v", ri.err, rr.err)
		})
	}
}

// A man in the middle who changes a hello (claims a secret is or is not
// known, another version, unknown flags) breaks the handshake on both sides,
// and neither hangs.
func TestSecureHelloTampered(t *testing.T) {
	for _, kn := range knowledges {
		for dir := range 2 {
			for bit := range uint(8) {
				for _, at := range []int64{0, 1} {
					if at == 0 && bit != 0 && bit != 7 {
						continue
					}
					name := fmt.Sprintf("%s/dir%d/byte%d/bit%d", kn.name, dir, at, bit)
					t.Run(name, func(t *testing.T) {
						ci, cr := mitm(t, flipAt(dir, at, bit))
						ki, kr := kn.keys()
						ri, rr := handshake(ci, cr, ki, kr)
						if rr.err == nil && ri.err != nil && at == 1 && bit == 1 && kn == knowledges[3] {
							// The cipher flag, in plain NN: the responder
							// cannot see the change (message 1 is not
							// authenticated) and learns from the
							// initiator's rejection on its first Read.
							if _, err := rr.c.Read(make([]byte, 1)); !errors.Is(err, ErrAuth) {
								t.Fatalf("responder's Read after the initiator rejected: %v; want ErrAuth", err)
							}
							return
						}
						if ri.err == nil || rr.err == nil {
							t.Fatalf("handshake: initiator %v, responder %v; want both to fail", ri.err, rr.err)
						}
						if at == 1 && bit == 0 && (!errors.Is(ri.err, ErrAuth) || !errors.Is(rr.err, ErrAuth)) {
							t.Errorf("flag flip: initiator %v, responder %v; want ErrAuth", ri.err, rr.err)
						}
					})
				}
			}
		}
	}
}

// Tampering with a handshake message fails the handshake. In plain NN the
// responder cannot see it (message 1 is not authenticated) and finishes;
// it then learns from the initiator's rejection on its first Read.
func TestSecureHandshakeTampered(t *testing.T) {
	for _, kn := range knowledges {
		msg1 := int64(2 + 32)
		if kn.iKnows || kn.rKnows {
			msg1 += 16
		}
		for _, tc := range []struct {
			dir int
			at  int64
		}{
			// The high length byte (too long), the first and the last
			// byte of message 1, then of message 2. (A shorter or
			// slightly longer length stalls both sides until the
			// caller's timeout, like a man in the middle who drops
			// bytes.)
			{0, 2}, {0, 4}, {0, 2 + msg1 - 1},
			{1, 2}, {1, 4}, {1, 2 + 2 + 32 + 16 - 1},
		} {
			t.Run(fmt.Sprintf("%s/dir%d/byte%d", kn.name, tc.dir, tc.at), func(t *testing.T) {
				ci, cr := mitm(t, flipAt(tc.dir, tc.at, 0))
				ki, kr := kn.keys()
				ri, rr := handshake(ci, cr, ki, kr)
				if ri.err == nil {
					t.Fatalf("initiator: handshake succeeded")
				}
				if rr.err == nil {
					_, err := readAll(t, rr.c)
					if !errors.Is(err, ErrAuth) {
						t.Fatalf("responder Read: %v; want ErrAuth", err)
					}
					rr.err = err
				}
				t.Logf("initiator: %v; responder: %v", ri.err, rr.err)
			})
		}
	}
}

// recordSize is the wire size of a record with n bytes of plaintext.
func recordSize(n int) int { return recHeader + n + tagSize }

// Flipping any bit of a record makes Read fail with ErrAuth, after exactly
// the records before it.
func TestSecureRecordTampered(t *testing.T) {
	const plain = 64
	data := randomBytes(5 * plain)
	const victim = 2
	start := victim * recordSize(plain)
	for i := range recordSize(plain) {
		for _, bit := range []uint{uint(i % 8), 7 - uint(i%8)} {
			if i >= recHeader && bit != uint(i%8) {
				continue // all bits of the header, one per ciphertext byte
			}
			wire, sr := sealed(t, knowledges[0], data, plain)
			wire[start+i] ^= 1 << bit
			sr.rw = readWriter{bytes.NewReader(wire), nil}
			got, err := readAll(t, sr)
			if !bytes.Equal(got, data[:victim*plain]) {
				t.Fatalf("byte %d bit %d: got %d bytes, want the %d before the record", i, bit, len(got), victim*plain)
			}
			// A longer length field may run into the end of the stream.
			if !errors.Is(err, ErrAuth) && !(i < recHeader && err == io.ErrUnexpectedEOF) {
				t.Fatalf("byte %d bit %d: %v; want ErrAuth", i, bit, err)
			}
		}
	}
}

// The same through a live man in the middle, in big records, on both
// directions.
func TestSecureRecordTamperedLive(t *testing.T) {
	kn := knowledges[0]
	data := randomBytes(8 * maxPlain)
	hs := int64(2 + 2 + 48) // hello and message 1 or 2 frames are 52 bytes each way
	for dir := range 2 {
		for _, at := range []int64{0, recHeader, recHeader + maxPlain/2, int64(recordSize(maxPlain)) - 1} {
			t.Run(fmt.Sprintf("dir%d/byte%d", dir, at), func(t *testing.T) {
				off := hs + 3*int64(recordSize(maxPlain)) + at
				ci, cr := mitm(t, flipAt(dir, off, 3))
				ki, kr := kn.keys()
				ri, rr := handshake(ci, cr, ki, kr)
				if ri.err != nil || rr.err != nil {
					t.Fatalf("handshake: initiator %v, responder %v", ri.err, rr.err)
				}
				w, r, wc := ri.c, rr.c, ci
				if dir == 1 {
					w, r, wc = rr.c, ri.c, cr
				}
				done := make(chan error, 1)
				go func() {
					_, err := w.Write(data)
					wc.Close()
					done <- err
				}()
				got, err := readAll(t, r)
				if !errors.Is(err, ErrAuth) || !bytes.Equal(got, data[:3*maxPlain]) {
					t.Errorf("got %d bytes, %v; want %d bytes, ErrAuth", len(got), err, 3*maxPlain)
				}
				ci.Close()
				cr.Close()
				<-done
			})
		}
	}
}

// A stream cut at a record boundary ends with io.EOF, inside a record with
// io.ErrUnexpectedEOF, and delivers only whole records: every prefix.
func TestSecureTruncated(t *testing.T) {
	const plain = 1000
	data := randomBytes(3 * plain)
	rs := recordSize(plain)
	wire, base := sealed(t, knowledges[3], data, plain)
	for cut := range len(wire) + 1 {
		sr := *base // the reader as it was after the handshake
		sr.rw = readWriter{bytes.NewReader(wire[:cut]), nil}
		got, err := readAll(t, &sr)
		whole := cut / rs
		want := io.ErrUnexpectedEOF
		if cut%rs == 0 {
			want = io.EOF
		}
		if err != want || !bytes.Equal(got, data[:whole*plain]) {
			t.Errorf("cut at %d: got %d bytes, %v; want %d bytes, %v", cut, len(got), err, whole*plain, want)
		}
	}
}

// A record length no record can have is an authentication failure, before
// anything is read for it; a leading empty record is a rejection.
func TestSecureBadLength(t *testing.T) {
	for _, n := range []int{0, 1, tagSize - 1, maxCipher + 1, 1<<24 - 1} {
		_, sr := offline(t, knowledges[0])
		hdr := []byte{byte(n >> 16), byte(n >> 8), byte(n)}
		sr.rw = readWriter{io.MultiReader(bytes.NewReader(hdr), errReader{errors.New("read past the header")}), nil}
		if _, err := readAll(t, sr); !errors.Is(err, ErrAuth) {
			t.Errorf("length %d: %v; want ErrAuth", n, err)
		}
	}
}

// An empty record and empty writes are harmless.
func TestSecureEmpty(t *testing.T) {
	si, sr := offline(t, knowledges[0])
	var wire bytes.Buffer
	si.rw = readWriter{nil, &wire}
	if n, err := si.Write(nil); n != 0 || err != nil || wire.Len() != 0 {
		t.Fatalf("Write(nil) = %d, %v, wrote %d bytes", n, err, wire.Len())
	}
	// A record with no plaintext, as another implementation might send.
	rec, _ := si.send.seal(make([]byte, recHeader), nil)
	rec[2] = tagSize
	wire.Write(rec)
	si.Write([]byte("x"))
	sr.rw = readWriter{&wire, nil}
	got, err := readAll(t, sr)
	if string(got) != "x" || err != io.EOF {
		t.Fatalf("got %q, %v", got, err)
	}
}

// Failed handshakes leave no goroutine behind once the transport is closed.
func TestSecureNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, kn := range knowledges {
		ci, cr := net.Pipe()
		ki, kr := kn.keys()
		ki.Peer[0] ^= 1
		handshake(ci, cr, ki, kr)
		ci.Close()
		cr.Close()
		ci, cr = net.Pipe()
		go cr.Close() // the peer vanishes
		Secure(ci, true, ki)
		ci.Close()
	}
	for i := 0; runtime.NumGoroutine() > before; i++ {
		if i == 100 {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A peer that does not speak the secure layer is told apart.
func TestSecureNotSecurePeer(t *testing.T) {
	ci, cr := pipe(t)
	go io.Copy(io.Discard, cr)
	go Send(cr, bytes.NewReader([]byte("hello")), 0) // an unencrypted sender
	for _, initiator := range []bool{false, true} {
		_, err := Secure(ci, initiator, Keys{Own: secretR})
		if !errors.Is(err, ErrNotP2pcat) {
			t.Fatalf("Secure = %v; want ErrNotP2pcat", err)
		}
		if initiator {
			break
		}
		ci, cr = pipe(t)
		go io.Copy(io.Discard, cr)
		go Send(cr, bytes.NewReader([]byte("hello")), 0)
	}
}

// Records are what flynn/noise's CipherState produces for the same key,
// with either cipher.
func TestRecordCipherMatchesNoise(t *testing.T) {
	for _, tc := range []struct {
		suite  noise.CipherSuite
		aesGCM bool
	}{{suiteChaCha, false}, {suiteAES, true}} {
		t.Run(string(tc.suite.Name()), func(t *testing.T) {
			key := [32]byte{1, 2, 3}
			enc := noise.UnsafeNewCipherState(tc.suite, key, 0)
			dec := noise.UnsafeNewCipherState(tc.suite, key, 0)
			ours := newRecordCipher(noise.UnsafeNewCipherState(tc.suite, key, 0), tc.aesGCM)
			for i, n := range []int{0, 1, 100, maxPlain, 5, 0, 77} {
				pt := randomBytes(n)
				want, err := enc.Encrypt(nil, nil, pt)
				if err != nil {
					t.Fatal(err)
				}
				got, err := ours.seal(nil, pt)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("record %d: our ciphertext differs from noise's (%v)", i, err)
				}
				back, err := dec.Decrypt(nil, nil, got)
				if err != nil || !bytes.Equal(back, pt) {
					t.Fatalf("record %d: noise cannot decrypt ours: %v", i, err)
				}
			}
			if ours.n != enc.Nonce() {
				t.Fatalf("nonce %d, noise's %d", ours.n, enc.Nonce())
			}
		})
	}
}

// AES-GCM only when both CPUs have it, ChaCha20-Poly1305 otherwise, and
// the stream gets through either way.
func TestSecureCipherChoice(t *testing.T) {
	data := randomBytes(3*maxPlain + 5)
	for _, tc := range []struct{ iAES, rAES bool }{{true, true}, {true, false}, {false, true}, {false, false}} {
		want := "ChaCha20-Poly1305"
		if tc.iAES && tc.rAES {
			want = "AES-256-GCM"
		}
		t.Run(fmt.Sprintf("initiator%v/responder%v", tc.iAES, tc.rAES), func(t *testing.T) {
			ci, cr := pipe(t)
			ki, kr := knowledges[0].keys()
			ri, rr := handshakeAES(ci, cr, ki, kr, tc.iAES, tc.rAES)
			if ri.err != nil || rr.err != nil {
				t.Fatalf("handshake: initiator %v, responder %v", ri.err, rr.err)
			}
			si := ri.c
			if si.Cipher() != want || rr.c.Cipher() != want {
				t.Fatalf("ciphers %q and %q; want %q", si.Cipher(), rr.c.Cipher(), want)
			}
			werr := make(chan error, 1)
			go func() {
				_, err := si.Write(data)
				werr <- err
			}()
			got := make([]byte, len(data))
			if _, err := io.ReadFull(rr.c, got); err != nil {
				t.Fatal(err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("data differs")
			}
		})
	}
}

// The key schedule: every combination of knowledge gives one distinct key
// (or none), the same on both sides.
func TestPresharedKey(t *testing.T) {
	seen := map[string]string{}
	for _, kn := range knowledges {
		ki, kr := kn.keys()
		pi := presharedKey(true, ki, kn.rKnows)
		pr := presharedKey(false, kr, kn.iKnows)
		if !bytes.Equal(pi, pr) || (pi == nil) != (kn == knowledges[3]) {
			t.Fatalf("%s: psk %x and %x", kn.name, pi, pr)
		}
		if pi != nil {
			if other, ok := seen[string(pi)]; ok {
				t.Fatalf("%s and %s derive the same psk", kn.name, other)
			}
			seen[string(pi)] = kn.name
		}
	}
}

// The steady state allocates nothing.
func TestSecureAllocs(t *testing.T) {
	si, sr := offline(t, knowledges[0])
	var loop bytes.Buffer
	si.rw, sr.rw = &loop, &loop
	data := randomBytes(maxPlain)
	got := make([]byte, maxPlain)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := si.Write(data); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(sr, got); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.1f allocations per 64 KiB Write+Read", allocs)
	if allocs != 0 {
		t.Errorf("%.1f allocations per 64 KiB Write+Read; want 0", allocs)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("data differs")
	}
}

// Encrypting and decrypting on one goroutine.
// With each cipher (AES-256-GCM as if this CPU had AES hardware).
func BenchmarkSecure64K(b *testing.B) {
	defer func(v bool) { fastAES = v }(fastAES)
	for _, aesGCM := range []bool{true, false} {
		fastAES = aesGCM
		si, sr := offline(b, knowledges[0])
		b.Run(si.Cipher(), func(b *testing.B) {
			var loop bytes.Buffer
			si.rw, sr.rw = &loop, &loop
			data := randomBytes(maxPlain)
			got := make([]byte, maxPlain)
			b.SetBytes(maxPlain)
			b.ReportAllocs()
			for b.Loop() {
				si.Write(data)
				io.ReadFull(sr, got)
			}
		})
	}
}

// Sender and receiver on their own goroutines over net.Pipe, as over UDT.
func BenchmarkSecurePipe64K(b *testing.B) {
	si, sr := connected(b, knowledges[0])
	data := randomBytes(maxPlain)
	b.SetBytes(maxPlain)
	b.ReportAllocs()
	done := make(chan error)
	go func() {
		got := make([]byte, maxPlain)
		for range b.N {
			if _, err := io.ReadFull(sr, got); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	b.ResetTimer()
	for range b.N {
		si.Write(data)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

func BenchmarkSecureHandshake(b *testing.B) {
	ki, kr := knowledges[0].keys()
	for b.Loop() {
		ci, cr := net.Pipe()
		ri, rr := handshake(ci, cr, ki, kr)
		ci.Close()
		cr.Close()
		if ri.err != nil || rr.err != nil {
			b.Fatal(ri.err, rr.err)
		}
	}
}

// FuzzSecureRead feeds the Secure layer what a hostile peer could send.
// mode bit0: we are the initiator; bits1-2: the knowledge combination;
// bits 3-4: 0 = a is everything the peer sends, handshake included;
// 1 = a valid handshake, then a is the peer's transport bytes;
// 2 = a valid handshake, then the peer sends a as records (of sizes from
// edits[0]) and edits (pairs of offset, xor) change the wire.
func FuzzSecureRead(f *testing.F) {
	rec := make([]byte, 3+40)
	rec[2] = 40
	f.Add(uint8(0), []byte{1, 0, 0, 32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}, []byte(nil))
	f.Add(uint8(6), []byte{1, 0, 0, 32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 0, 0, 16}, []byte(nil))
	f.Add(uint8(1), []byte{1, 1, 0, 48}, []byte(nil))
	f.Add(uint8(0), []byte("p2pcat\x00\x01"), []byte(nil))
	f.Add(uint8(8), rec, []byte(nil))
	f.Add(uint8(9|4), []byte{0, 0, 0}, []byte(nil))
	f.Add(uint8(16), []byte("hello, world"), []byte(nil))
	f.Add(uint8(16|3), []byte("hello, world"), []byte{5, 20, 1})
	f.Add(uint8(16|6), randomBytes(3000), []byte{200, 4, 0x80, 250, 1})
	f.Add(uint8(16|1), randomBytes(1000), []byte{0})
	// One handshake per knowledge combination; each input gets copies of
	// the connections as they were right after it.
	var conns [4][2]*SecureConn
	for i, kn := range knowledges {
		conns[i][0], conns[i][1] = offline(f, kn)
	}
	offline := func(_ testing.TB, kn knowledge) (si, sr *SecureConn) {
		i := slices.Index(knowledges, kn)
		ci, cr := *conns[i][0], *conns[i][1]
		return &ci, &cr
	}
	f.Fuzz(func(t *testing.T, mode uint8, a, edits []byte) {
		initiator := mode&1 != 0
		kn := knowledges[mode>>1&3]
		ki, kr := kn.keys()
		ours := kr
		if initiator {
			ours = ki
		}
		var c *SecureConn
		switch mode >> 3 & 3 {
		case 0:
			var err error
			c, err = Secure(readWriter{bytes.NewReader(a), io.Discard}, initiator, ours)
			if err != nil {
				return
			}
			if initiator {
				t.Fatal("handshake completed against random bytes")
			}
		case 1:
			si, sr := offline(t, kn)
			c = sr
			if initiator {
				c = si
			}
			c.rw = readWriter{bytes.NewReader(a), nil}
		default:
			si, sr := offline(t, kn)
			w, r := si, sr
			if !initiator {
				w, r = sr, si
			}
			size := maxPlain
			if len(edits) > 0 && edits[0] != 0 {
				size = int(edits[0])
				edits = edits[1:]
			}
			var wire bytes.Buffer
			w.rw = readWriter{nil, &wire}
			for p := a; len(p) > 0; {
				n := min(size, len(p))
				w.Write(p[:n])
				p = p[n:]
			}
			b := wire.Bytes()
			changed := false
			for i := 0; i+1 < len(edits) && len(b) > 0; i += 2 {
				at := int(edits[i]) * len(b) / 256
				b[at] ^= edits[i+1]
				changed = changed || edits[i+1] != 0
			}
			r.rw = readWriter{bytes.NewReader(b), nil}
			got, err := readAll(t, r)
			if !bytes.HasPrefix(a, got) {
				t.Fatalf("read %d bytes that are not a prefix of what was sent", len(got))
			}
			if !changed && (err != io.EOF || len(got) != len(a)) {
				t.Fatalf("untouched stream: got %d of %d bytes, %v", len(got), len(a), err)
			}
			return
		}
		got, err := readAll(t, c)
		if len(got) != 0 || err == nil {
			t.Fatalf("forged stream: read %d bytes, %v", len(got), err)
		}
	})
}
