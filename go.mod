module github.com/p2pcat/p2pcat

go 1.26.0

require golang.org/x/sys v0.50.0
