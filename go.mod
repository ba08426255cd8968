module github.com/p2pcat/p2pcat

go 1.24
