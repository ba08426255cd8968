package udt

import (
	"errors"
	"os"
)

var (
	// ErrClosed is returned by operations on a closed connection.
	ErrClosed = errors.New("udt: use of closed connection")
	// ErrPeerTimeout means the peer fell silent for longer than
	// Config.PeerTimeout.
	ErrPeerTimeout = errors.New("udt: peer timed out")
	// ErrPeerClosed is returned by Write after the peer sent Shutdown.
	ErrPeerClosed = errors.New("udt: connection closed by peer")
	// ErrRejected means a listener refused the connection.
	ErrRejected = errors.New("udt: connection rejected by peer")
	// ErrProtocol means the peer sent something that breaks UDT4's rules
	// badly enough that the connection cannot continue.
	ErrProtocol = errors.New("udt: protocol violation by peer")
)

// errInvalidWrite: a writer reported more written than it was given.
var errInvalidWrite = errors.New("udt: invalid count from a writer")

// errDeadline is returned when a deadline passes; it matches
// os.ErrDeadlineExceeded and is a net.Error with Timeout() true.
var errDeadline error = os.ErrDeadlineExceeded
