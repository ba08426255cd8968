// Command pairgap measures what a receiver can see of a path's packets:
// the gaps between the two packets of UDT-style packet pairs, and the
// arrival rate over 100 ms spans, by the kernel's receive stamps
// (SO_TIMESTAMPNS) and by the times a reader gets the packets. It is the
// experiment behind BENCHMARKS.md's "packet pairs through linkemu"
// (session 23); not part of p2pcat or its tests.
//
//	pairgap recv PORT COUNT            (start first; prints the figures)
//	pairgap send HOST:PORT COUNT RATE  (RATE paced packets/s; the packet
//	                                    after each 16th goes at once)
//
// Packets are 1472-byte UDP payloads (1500-byte IP packets, MSS 1500).
package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const payload = 1472

func main() {
	if len(os.Args) < 4 {
		usage()
	}
	n, err := strconv.Atoi(os.Args[3])
	if err != nil || n < 2 {
		usage()
	}
	switch os.Args[1] {
	case "send":
		if len(os.Args) != 5 {
			usage()
		}
		rate, err := strconv.Atoi(os.Args[4])
		if err != nil || rate <= 0 {
			usage()
		}
		err = send(os.Args[2], n, rate)
		check(err)
	case "recv":
		port, err := strconv.Atoi(os.Args[2])
		if err != nil {
			usage()
		}
		check(recv(port, n))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: pairgap recv PORT COUNT | pairgap send HOST:PORT COUNT RATE")
	os.Exit(2)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "pairgap:", err)
		os.Exit(1)
	}
}

func send(addr string, n, rate int) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	b := make([]byte, payload)
	iv := time.Second / time.Duration(rate)
	start := time.Now()
	next := start
	errs := 0
	for i := range n {
		binary.BigEndian.PutUint32(b, uint32(i))
		if _, err := c.Write(b); err != nil {
			errs++
		}
		if i%16 == 0 {
			continue // a pair: the next packet goes at once
		}
		next = next.Add(iv)
		for d := time.Until(next); d > 0; d = time.Until(next) {
			if d > 200*time.Microsecond {
				time.Sleep(d - 100*time.Microsecond)
			}
		}
	}
	fmt.Printf("sent %d packets in %v (%d send errors)\n", n, time.Since(start).Round(time.Millisecond), errs)
	return nil
}

func recv(port, n int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	tv := unix.Timeval{Sec: 5} // the end: 5 s without a packet
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
		return err
	}
	kernel := make(map[uint32]int64, n)
	reader := make(map[uint32]int64, n)
	b := make([]byte, 2048)
	oob := make([]byte, 128)
	for len(reader) < n {
		m, oobn, _, _, err := unix.Recvmsg(fd, b, oob, 0)
		if err == unix.EINTR {
			continue // the Go runtime's preemption signal
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			return err
		}
		at := time.Now().UnixNano()
		if m < 4 {
			continue
		}
		seq := binary.BigEndian.Uint32(b)
		reader[seq] = at
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, cm := range msgs {
			if cm.Header.Level == unix.SOL_SOCKET && cm.Header.Type == unix.SCM_TIMESTAMPNS &&
				len(cm.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
				kernel[seq] = (*unix.Timespec)(unsafe.Pointer(&cm.Data[0])).Nano()
			}
		}
	}
	fmt.Printf("received %d of %d packets\n", len(reader), n)
	for _, s := range []struct {
		name string
		at   map[uint32]int64
	}{{"kernel", kernel}, {"reader", reader}} {
		spans(s.name, s.at)
		gaps(s.name, s.at)
	}
	return nil
}

// spans prints the arrival rate over 100 ms spans (one every ~80
// packets, the first and last 300 ms left out), as a receiver that counts
// packets between two arrivals a round trip apart would see it.
func spans(name string, at map[uint32]int64) {
	var t []int64
	for _, v := range at {
		t = append(t, v)
	}
	slices.Sort(t)
	if len(t) < 1000 {
		return
	}
	lo, hi := t[0]+300e6, t[len(t)-1]-300e6
	var r []float64
	j := 0
	for i := 0; i < len(t); i += 80 {
		if t[i] < lo || t[i] > hi {
			continue
		}
		for j < i && t[i]-t[j+1] >= 100e6 {
			j++
		}
		if t[i]-t[j] >= 100e6 {
			r = append(r, float64(i-j)*1e9/float64(t[i]-t[j]))
		}
	}
	if len(r) == 0 {
		return
	}
	slices.Sort(r)
	fmt.Printf("%s: 100 ms spans n=%d min %.0f p10 %.0f median %.0f p90 %.0f max %.0f; whole run %.0f packets/s\n",
		name, len(r), r[0], quantile(r, .1), quantile(r, .5), quantile(r, .9), r[len(r)-1], float64(len(t)-1)*1e9/float64(t[len(t)-1]-t[0]))
}

// gaps prints the gaps between consecutive packets, the pairs' (a
// seq%16 == 0 packet and the next) apart from the others, in µs.
func gaps(name string, at map[uint32]int64) {
	var pair, other []float64
	for s, v := range at {
		if w, ok := at[s+1]; ok {
			g := float64(w-v) / 1e3
			if s%16 == 0 {
				pair = append(pair, g)
			} else {
				other = append(other, g)
			}
		}
	}
	for _, x := range []struct {
		name string
		g    []float64
	}{{"pairs", pair}, {"others", other}} {
		if len(x.g) == 0 {
			continue
		}
		g := x.g
		slices.Sort(g)
		fmt.Printf("%s: gaps of %s n=%d p10 %.1f p25 %.1f median %.1f p75 %.1f p90 %.1f µs (median as a capacity: %.0f packets/s)\n",
			name, x.name, len(g), quantile(g, .1), quantile(g, .25), quantile(g, .5), quantile(g, .75), quantile(g, .9), 1e6/quantile(g, .5))
	}
}

// quantile is the p-quantile of sorted (nearest rank below).
func quantile(sorted []float64, p float64) float64 {
	return sorted[int(p*float64(len(sorted)-1))]
}
