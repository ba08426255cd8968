//go:build unix

package main

import "syscall"

// detachTerminal starts a new session: the process has no controlling
// terminal, so /dev/tty cannot be opened.
func detachTerminal() { syscall.Setsid() }
