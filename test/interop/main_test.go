//go:build interop

package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/test/internal/suite"
)

// Knobs of the suite. The floor is what "no run may crawl" means on
// loopback: libudt does ~200 MB/s here, and its known pathologies (first
// flight lost in rendezvous, rate collapse after early loss) show up as
// 2-5 MB/s, so 20 MB/s separates them cleanly.
const (
	// minLoopbackMBps is the slowest acceptable loopback transfer, in MB/s
	// (10^6 bytes/s), measured from the start of the second process to the
	// receiver's exit.
	minLoopbackMBps = 20.0

	// defaultBigMiB and defaultSmallMiB are the transfer sizes of the
	// loopback runs and of the relay / p2pcat<->p2pcat runs.
	defaultBigMiB   = 256
	defaultSmallMiB = 64

	// connectAllowance is what a loopback run may spend on top of
	// size/minLoopbackMBps and its start gap: process start, handshake,
	// hashing nothing (the hash is taken afterwards), Shutdown.
	connectAllowance = 12 * time.Second

	// relayRunTimeout bounds one 64 MiB run through the lossy relay. libudt
	// as sender needs 26-48 s for it (2 % loss, 20 ms delay); a lost Shutdown
	// (1 % control loss) adds libudt's ~46 s dead-peer timeout.
	relayRunTimeout = 130 * time.Second

	// deathNoticeLimit is how long a survivor may take to exit after its
	// peer was killed.
	deathNoticeLimit = 10 * time.Second
)

// env is the suite's configuration, filled in by TestMain.
var env struct {
	skip     string // non-empty: why every test skips
	udtpeer  string
	udprelay string
	p2pcat   string
	selftest bool // udtpeer stands in for p2pcat
	workDir  string
	big      *dataFile
	small    *dataFile
}

type dataFile = suite.DataFile

func TestMain(m *testing.M) {
	code, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "interop: setup: %v\n", err)
		os.Exit(1)
	}
	if env.skip == "" {
		code = m.Run()
		printSummary()
	} else {
		fmt.Fprintf(os.Stderr, "interop: skipping: %s\n", env.skip)
		code = m.Run() // each test skips with the reason
	}
	if env.workDir != "" {
		os.RemoveAll(env.workDir)
	}
	os.Exit(code)
}

func setup() (int, error) {
	bin := os.Getenv("P2PCAT_INTEROP_BIN")
	if bin == "" {
		env.skip = "P2PCAT_INTEROP_BIN is not set: build the libudt oracle with make in a writable copy of ../shared/interop " +
			"(needs libudt-dev g++ make) and set P2PCAT_INTEROP_BIN to the directory holding udtpeer and udprelay"
		return 0, nil
	}
	env.udtpeer = filepath.Join(bin, "udtpeer")
	env.udprelay = filepath.Join(bin, "udprelay")
	for _, p := range []string{env.udtpeer, env.udprelay} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			return 1, fmt.Errorf("P2PCAT_INTEROP_BIN=%s: %s is missing or not executable", bin, p)
		}
	}
	env.selftest = os.Getenv("P2PCAT_INTEROP_SELFTEST") == "1"

	dir, err := makeWorkDir()
	if err != nil {
		return 1, err
	}
	env.workDir = dir

	switch p := os.Getenv("P2PCAT_INTEROP_P2PCAT"); {
	case env.selftest:
		fmt.Fprintf(os.Stderr, "interop: SELFTEST: udtpeer stands in for p2pcat; results say nothing about p2pcat\n")
	case p != "":
		env.p2pcat = p
	default:
		env.p2pcat = filepath.Join(dir, "p2pcat")
		if err := suite.BuildP2pcat("interop", env.p2pcat); err != nil {
			return 1, err
		}
	}

	bigMiB := suite.EnvInt("interop", "P2PCAT_INTEROP_MIB", defaultBigMiB)
	smallMiB := suite.EnvInt("interop", "P2PCAT_INTEROP_SMALL_MIB", defaultSmallMiB)
	t0 := time.Now()
	env.big, err = suite.WriteRandom(filepath.Join(dir, "big.bin"), int64(bigMiB)<<20, 1)
	if err != nil {
		return 1, err
	}
	env.small, err = suite.WriteRandom(filepath.Join(dir, "small.bin"), int64(smallMiB)<<20, 2)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(os.Stderr, "interop: work dir %s, data %d MiB + %d MiB generated in %.1fs\n",
		dir, bigMiB, smallMiB, time.Since(t0).Seconds())
	return 0, nil
}

// makeWorkDir picks tmpfs when it has room for the source files and one
// received copy of the big file, so that disk speed never limits a run.
func makeWorkDir() (string, error) {
	return suite.WorkDir("P2PCAT_INTEROP_WORKDIR", "p2pcat-interop-", 2<<30)
}

// requireEnv skips the test when the oracle is not configured.
func requireEnv(t *testing.T) {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
}

// printSummary lists every transfer of the suite, slowest first within
// the loopback group, so that CI logs show the whole picture in one place.
func printSummary() {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\ninterop summary (MB = 10^6 bytes; wall = second start -> receiver exit):\n")
	for _, r := range results {
		status := "ok"
		if r.failed {
			status = "FAIL"
		}
		fmt.Fprintf(&b, "  %-4s %-70s %8.1f MB/s  %s\n", status, r.name, r.mbps, r.note)
	}
	if env.selftest {
		fmt.Fprintf(&b, "  (SELFTEST: udtpeer stood in for p2pcat)\n")
	}
	fmt.Print(b.String())
}
