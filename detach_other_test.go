//go:build !unix

package main

// detachTerminal does nothing where there are no sessions.
func detachTerminal() {}
