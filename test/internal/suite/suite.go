// Package suite holds what the interop and lab suites (test/interop,
// test/lab) both need before their first test: a p2pcat binary built from
// this module, a work directory on tmpfs when it has room, and source files
// of random bytes with their digests.
package suite

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// DataFile is a source file of random bytes with its digest.
type DataFile struct {
	Path string
	Size int64
	Sum  string // hex sha256
}

// WriteRandom writes size pseudo-random bytes (ChaCha8 from seed: fast,
// repeatable and incompressible) to path.
func WriteRandom(path string, size int64, seed byte) (*DataFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var key [32]byte
	key[0] = seed
	rng := rand.NewChaCha8(key)
	h := sha256.New()
	w := io.MultiWriter(f, h)
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		rng.Read(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			return nil, err
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return &DataFile{Path: path, Size: size, Sum: hex.EncodeToString(h.Sum(nil))}, nil
}

// BuildP2pcat builds the module's main package to out, found by walking up
// from the test's directory to go.mod; who prefixes the log line.
func BuildP2pcat(who, out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	t0 := time.Now()
	cmd := exec.Command("go", "build", "-o", out, "github.com/p2pcat/p2pcat")
	cmd.Dir = root
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build p2pcat in %s: %w", root, err)
	}
	fmt.Fprintf(os.Stderr, "%s: built %s in %.1fs\n", who, out, time.Since(t0).Seconds())
	return nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// WorkDir makes a temporary directory named after pattern in the
// directory $envVar names, else in /dev/shm when it has more than need
// bytes free (so that disk speed never limits a run), else in the default
// temporary directory.
func WorkDir(envVar, pattern string, need uint64) (string, error) {
	parent := os.Getenv(envVar)
	if parent == "" && freeBytes("/dev/shm") > need {
		parent = "/dev/shm"
	}
	return os.MkdirTemp(parent, pattern)
}

// EnvInt is the positive integer in $name, or def; who prefixes the
// warning about a value that is not one.
func EnvInt(who, name string, def int) int {
	if s := os.Getenv(name); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
		fmt.Fprintf(os.Stderr, "%s: ignoring %s=%q (want a positive integer)\n", who, name, s)
	}
	return def
}

// FileSHA256 is the hex sha256 of the file at path and its length.
func FileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
