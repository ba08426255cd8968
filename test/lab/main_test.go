//go:build lab && linux

package lab

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/p2pcat/p2pcat/test/internal/suite"
)

// The lab's fixed servers. Nothing else is ever given to p2pcat.
const (
	stund      = "192.0.2.10:3478"
	coturn     = "192.0.2.20:3478"
	ntpGood    = "192.0.2.10"
	ntpSkewed  = "192.0.2.30"
	wanA       = "198.51.100.2" // natA's public address
	wanB       = "203.0.113.2"  // natB's public address
	publicA    = "198.51.100.70"
	publicB    = "203.0.113.70"
	slotLength = 10 * time.Second // p2pcat's default --slot
)

// connectBar is the bar for "both tokens known -> connected": one
// slot plus 5 s, met by at least barShare of the runs.
const (
	connectBar = slotLength + 5*time.Second
	barShare   = 0.95
)

const (
	defaultMiB      = 64
	defaultSmallMiB = 16
	helperEnv       = "P2PCAT_LAB_HELPER" // set: this process is a helper, not the suite
)

// env is the suite's configuration, filled in by TestMain.
var env struct {
	skip    string // non-empty: why every test skips
	labDir  string
	netlab  string
	prefix  string
	run     string
	p2pcat  string
	self    string // this test binary, re-run as the forger
	workDir string
	keep    bool
	big     *dataFile
	small   *dataFile
	lock    *os.File
}

type dataFile = suite.DataFile

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "forge" {
		os.Exit(forgeMain())
	}
	flag.Parse()
	code, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab: setup: %v\n", err)
		cleanupSuite()
		os.Exit(1)
	}
	if env.skip != "" {
		fmt.Fprintf(os.Stderr, "lab: skipping: %s\n", env.skip)
		code = m.Run() // each test skips with the reason
		cleanupSuite()
		os.Exit(code)
	}
	stop := guard()
	code = m.Run()
	stop()
	printSummary()
	cleanupSuite()
	os.Exit(code)
}

func setup() (int, error) {
	if os.Geteuid() != 0 {
		env.skip = "the NAT lab needs root (network namespaces, nftables): run as root"
		return 0, nil
	}
	env.labDir = os.Getenv("P2PCAT_LAB_DIR")
	if env.labDir == "" {
		env.skip = "P2PCAT_LAB_DIR is not set: copy ../shared/lab somewhere writable, run its install-deps.sh " +
			"and `make -C COPY`, and set P2PCAT_LAB_DIR=COPY"
		return 0, nil
	}
	env.netlab = filepath.Join(env.labDir, "netlab.sh")
	for _, p := range []string{env.netlab, filepath.Join(env.labDir, "bin", "linkemu"), filepath.Join(env.labDir, "bin", "probe")} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			return 1, fmt.Errorf("P2PCAT_LAB_DIR=%s: %s is missing or not executable (run `make -C %s`)", env.labDir, p, env.labDir)
		}
	}
	for _, tool := range []string{"ip", "nft", "stund", "turnserver", "chronyd"} {
		if _, err := exec.LookPath(tool); err != nil {
			return 1, fmt.Errorf("%s not found: run %s/install-deps.sh", tool, env.labDir)
		}
	}
	env.prefix = envString("P2PCAT_LAB_PREFIX", "p2lab-")
	env.run = envString("P2PCAT_LAB_RUN", "/run/netlab-p2lab")
	env.keep = os.Getenv("P2PCAT_LAB_KEEP") == "1"
	self, err := os.Executable()
	if err != nil {
		return 1, err
	}
	env.self = self

	// One suite per prefix at a time: the stale-lab cleanup below would
	// otherwise tear down a concurrent run's namespaces.
	lockPath := "/run/p2pcat-lab-" + sanitize(env.prefix) + ".lock"
	env.lock, err = os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return 1, err
	}
	if err := syscall.Flock(int(env.lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return 1, fmt.Errorf("another lab suite holds %s (namespaces %s*): wait for it, or set P2PCAT_LAB_PREFIX and P2PCAT_LAB_RUN", lockPath, env.prefix)
	}
	// A lab left behind by a suite that was SIGKILLed.
	if out, err := netlab(context.Background(), "down", "--force"); err != nil {
		return 1, fmt.Errorf("netlab down (stale lab): %v\n%s", err, out)
	} else if strings.Contains(out, "deleted namespace") {
		fmt.Fprintf(os.Stderr, "lab: removed a stale lab:\n%s", out)
	}

	dir, err := makeWorkDir()
	if err != nil {
		return 1, err
	}
	env.workDir = dir
	if p := os.Getenv("P2PCAT_LAB_P2PCAT"); p != "" {
		env.p2pcat = p
	} else {
		// Built here, in the host namespace: a lab namespace has no DNS
		// and no route to the module proxy.
		env.p2pcat = filepath.Join(dir, "p2pcat")
		if err := suite.BuildP2pcat("lab", env.p2pcat); err != nil {
			return 1, err
		}
	}
	t0 := time.Now()
	env.big, err = suite.WriteRandom(filepath.Join(dir, "big.bin"), int64(suite.EnvInt("lab", "P2PCAT_LAB_MIB", defaultMiB))<<20, 1)
	if err != nil {
		return 1, err
	}
	env.small, err = suite.WriteRandom(filepath.Join(dir, "small.bin"), int64(suite.EnvInt("lab", "P2PCAT_LAB_SMALL_MIB", defaultSmallMiB))<<20, 2)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(os.Stderr, "lab: work dir %s, data %d MiB + %d MiB generated in %.1fs; lab %s, namespaces %s*, state %s\n",
		dir, env.big.Size>>20, env.small.Size>>20, time.Since(t0).Seconds(), env.labDir, env.prefix, env.run)
	return 0, nil
}

// guard tears the lab down and exits before `go test -timeout` would
// panic (a panic runs no t.Cleanup, and the lab's servers are not our
// children), and on SIGINT/SIGTERM. It returns a function that disarms it.
func guard() func() {
	done := make(chan struct{})
	var deadline <-chan time.Time
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, ok := f.Value.(flag.Getter).Get().(time.Duration); ok && d > 0 {
			margin := min(d/10, 30*time.Second)
			deadline = time.After(d - margin)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		var why string
		code := 1
		select {
		case <-done:
			return
		case <-deadline:
			why = "the -timeout deadline is near"
		case s := <-sigs:
			why = "got " + s.String()
			code = 130
		}
		fmt.Fprintf(os.Stderr, "\nlab: %s: killing p2pcat processes and tearing the lab down\n", why)
		netlabMu.Lock() // never unlocked: test cleanups must not run netlab.sh any more
		killAllProcs()
		out, _ := netlabLocked(context.Background(), "down", "--force")
		fmt.Fprint(os.Stderr, out)
		printSummary()
		cleanupSuite()
		os.Exit(code)
	}()
	return func() { close(done); signal.Stop(sigs) }
}

func cleanupSuite() {
	if env.workDir != "" {
		if env.keep {
			fmt.Fprintf(os.Stderr, "lab: kept %s (P2PCAT_LAB_KEEP=1)\n", env.workDir)
		} else {
			os.RemoveAll(env.workDir)
		}
	}
	if env.lock != nil {
		env.lock.Close()
	}
}

func envString(name, def string) string {
	if s := os.Getenv(name); s != "" {
		return s
	}
	return def
}

// makeWorkDir picks tmpfs when it has room, so that disk speed never
// limits a run. Every namespace sees the same filesystem, so token files
// and data here are shared with the peers.
func makeWorkDir() (string, error) {
	return suite.WorkDir("P2PCAT_LAB_WORKDIR", "p2pcat-lab-", 1<<30)
}

// requireEnv skips the test when the suite cannot run here.
func requireEnv(t *testing.T) {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
}

// ---- results -------------------------------------------------------------

// result is one p2pcat meeting, for the summary table.
type result struct {
	test     string
	failed   bool
	connect  string // p2pcat's own figure, "-" if it did not connect
	external string // measured by the suite
	path     string
	mbps     string
	note     string
	// problems: why it failed, repeated under the table so that a log
	// cut to its tail still says why.
	problems []string
}

var (
	resultsMu sync.Mutex
	results   []result
)

func record(r result) {
	resultsMu.Lock()
	results = append(results, r)
	resultsMu.Unlock()
}

var summaryOnce sync.Once

// printSummary lists every meeting of the suite in one table, so that CI
// logs show the whole picture in one place.
func printSummary() {
	summaryOnce.Do(func() {
		resultsMu.Lock()
		defer resultsMu.Unlock()
		if len(results) == 0 {
			return
		}
		var b strings.Builder
		fmt.Fprintf(&b, "\nlab summary: connect = p2pcat's \"after both tokens were known\" (slower side) / "+
			"measured by the suite (later token file written -> both connected); MB/s = receiver's report (10^6 B/s)\n")
		fmt.Fprintf(&b, "  %-4s %-62s %8s %8s  %-15s %8s  %s\n", "", "run", "connect", "measured", "path", "MB/s", "note")
		for _, r := range results {
			status := "ok"
			if r.failed {
				status = "FAIL"
			}
			fmt.Fprintf(&b, "  %-4s %-62s %8s %8s  %-15s %8s  %s\n", status, r.test, r.connect, r.external, r.path, r.mbps, r.note)
		}
		for _, r := range results {
			for _, p := range r.problems {
				if len(p) > 400 {
					p = p[:400] + "..."
				}
				fmt.Fprintf(&b, "  FAIL %s: %s\n", r.test, strings.ReplaceAll(p, "\n", " | "))
			}
		}
		fmt.Print(b.String())
	})
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, s)
}
