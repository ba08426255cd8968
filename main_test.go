package main

import (
	"net/netip"
	"os"
	"sync/atomic"
	"testing"

	"github.com/p2pcat/p2pcat/punch"
	"github.com/rogpeppe/go-internal/testscript"
)

// The scripts in testdata/script run the real command: the test binary
// maps the name p2pcat to main.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"p2pcat": func() {
			// Scripts run with --stun none: offer loopback only, so that
			// no packet leaves this machine.
			localCandidates = func(port uint16, _ netip.AddrPort) []netip.AddrPort {
				return []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)}
			}
			// A script that forgets --stun none or --ntp none must not
			// reach the public servers: point the defaults at a closed
			// loopback port (discard).
			punch.DefaultSTUNServers = []string{"127.0.0.1:9"}
			punch.DefaultNTPServers = []string{"127.0.0.1"}
			// No controlling terminal, as in CI, even when go test runs
			// from one (the pty test gives its child a terminal of its own
			// and is already a session leader, so this fails harmlessly).
			detachTerminal()
			os.Exit(run(os.Args[1:]))
		},
	})
}

var nextScript atomic.Int32

func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// retoken FILE: replace the secret of the token in FILE by a
			// fresh one, keeping it well-formed (a token from someone else).
			"retoken": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: retoken FILE")
				}
				tok, err := punch.ParseToken(ts.ReadFile(args[0]))
				ts.Check(err)
				tok.Secret = punch.NewSecret()
				ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(tok.String()+"\n"), 0o600))
			},
		},
		Setup: func(env *testscript.Env) error {
			// Each script gets its own loopback ports.
			base := 20000 + (os.Getpid()*16)%20000 + int(nextScript.Add(1))*8
			env.Setenv("PORTA", itoa(base))
			env.Setenv("PORTB", itoa(base+1))
			env.Setenv("PORTC", itoa(base+2))
			return nil
		},
	})
}

func itoa(n int) string {
	b := []byte{}
	for n > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
