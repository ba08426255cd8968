// Package lab holds p2pcat's end-to-end suite in the NAT lab of
// shared/lab: network namespaces with emulated NATs of every type, real
// STUN servers (stund, coturn), an NTP server (chronyd) and optionally a
// lying one, and impaired uplinks. Each test brings a lab up, runs the
// p2pcat binary in the peers' namespaces exactly as a user would (tokens
// exchanged through files, default 10 s slots), and tears the lab down,
// pass or fail.
//
// The tests carry the build tag "lab" so that a plain `go test ./...`
// never runs them. They need root (namespaces, nftables) and a built copy
// of the lab (shared/lab is read-only):
//
//	../shared/lab/install-deps.sh               # apt packages, once
//	cp -R ../shared/lab /tmp/lab && chmod -R u+w /tmp/lab && make -C /tmp/lab
//	P2PCAT_LAB_DIR=/tmp/lab go test -tags lab -v -count=1 -timeout 60m ./test/lab/
//
// Every packet stays inside the lab: p2pcat is always given the lab's
// STUN (192.0.2.10:3478, 192.0.2.20:3478) and NTP (192.0.2.10, or the
// skewed 192.0.2.30) servers, and the namespaces have no route out.
//
// Optional environment:
//
//	P2PCAT_LAB_P2PCAT=path    use this p2pcat binary instead of building one
//	P2PCAT_LAB_PREFIX=p       namespace name prefix (default "p2lab-"), so that the
//	                          suite never touches a lab someone else runs by hand
//	P2PCAT_LAB_RUN=dir        the lab's state directory (default /run/netlab-p2lab)
//	P2PCAT_LAB_MIB=N          size of the unimpaired matrix runs (default 64)
//	P2PCAT_LAB_SMALL_MIB=N    size of the impaired and other runs (default 16)
//	P2PCAT_LAB_WORKDIR=dir    where data, tokens and logs go (default /dev/shm if roomy)
//	P2PCAT_LAB_KEEP=1         keep the work dir (stderr of every p2pcat) after the run
//
// One suite runs at a time per prefix (a lock file in /run). Before its
// deadline (-timeout) or on SIGINT/SIGTERM the suite tears its lab down
// and exits, so that no namespace or server outlives it.
//
// This package must not import p2pcat's own packages: it tests the binary
// from the outside, through its command line, exit status and stderr. The
// forged-probe test re-runs the test binary itself as a small raw-socket
// packet forger inside the lab (see forge_test.go).
package lab
