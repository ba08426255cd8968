//go:build interop && linux

package interop

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// setProcAttr makes every child die with the test binary, so that a
// `go test -timeout` panic or a killed CI job never leaves a UDT peer
// running.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// udpBound reports whether some UDP socket is bound to local port, going by
// /proc/net/udp{,6}. ok is false when that cannot be known.
func udpBound(port int) (bound, ok bool) {
	want := strings.ToUpper(strconv.FormatInt(int64(port), 16))
	for len(want) < 4 {
		want = "0" + want
	}
	for _, name := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		ok = true
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			local := fields[1] // ADDR:PORT in hex
			if i := strings.LastIndexByte(local, ':'); i >= 0 && local[i+1:] == want {
				f.Close()
				return true, true
			}
		}
		f.Close()
	}
	return false, ok
}
