//go:build interop && !linux

package interop

import "os/exec"

// The suite targets Linux (libudt, /proc); elsewhere it still compiles and
// falls back to fixed waits.

func setProcAttr(*exec.Cmd) {}

func udpBound(int) (bound, ok bool) { return false, false }
