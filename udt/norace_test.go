//go:build !race

package udt

// raceEnabled is true when the tests run under the race detector, which
// slows the engine about tenfold: the long transfers shrink then.
const raceEnabled = false
