module github.com/p2pcat/p2pcat

go 1.26.0

require (
	github.com/beevik/ntp v1.6.0
	github.com/creack/pty v1.1.24
	github.com/flynn/noise v1.1.0
	github.com/klauspost/compress v1.20.4
	github.com/pion/stun/v3 v3.1.7
	github.com/rogpeppe/go-internal v1.16.0
	golang.org/x/crypto v0.59.0
	golang.org/x/sys v0.50.0
	golang.org/x/term v0.48.0
)

require (
	github.com/pion/dtls/v3 v3.1.5 // indirect
	github.com/pion/logging v0.2.4 // indirect
	github.com/pion/transport/v4 v4.1.0 // indirect
	github.com/wlynxg/anet v0.0.5 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/tools v0.26.0 // indirect
)
