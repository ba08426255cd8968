// Package interop holds p2pcat's end-to-end interoperability suite: the
// p2pcat binary against the reference UDT4 implementation (libudt 4.11,
// through the udtpeer and udprelay tools in shared/interop), and p2pcat
// against itself when a process is killed mid-stream.
//
// The tests carry the build tag "interop" so that a plain `go test ./...`
// never runs them. They need the oracle tools:
//
//	make -C ../shared/interop   # or a copy of it
//	P2PCAT_INTEROP_BIN=/path/to/dir/with/udtpeer/and/udprelay \
//	  go test -tags interop -v -count=1 -timeout 30m ./test/interop/
//
// Optional environment:
//
//	P2PCAT_INTEROP_P2PCAT=path  use this p2pcat binary instead of building one
//	P2PCAT_INTEROP_SELFTEST=1   dry run: udtpeer stands in for p2pcat, to check
//	                            the harness itself (p2pcat-only tests then fail
//	                            the way libudt semantics dictate)
//	P2PCAT_INTEROP_MIB=N        size of the big loopback runs (default 256)
//	P2PCAT_INTEROP_SMALL_MIB=N  size of the relay and p2pcat<->p2pcat runs (default 64)
//	P2PCAT_INTEROP_WORKDIR=dir  where data files go (default /dev/shm if roomy)
//
// This package must not import p2pcat's own packages: it tests the binary
// from the outside, as a user would run it, and speaks only through its
// command line, its exit status and its stderr.
package interop
