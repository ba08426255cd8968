// Package seqno implements UDT4's 31-bit sequence-number arithmetic
// (libudt 4.11 CSeqNo): numbers run 0 .. 2^31-1 and wrap to 0, and two
// numbers are compared through a 2^30-1 threshold so that comparisons work
// across the wrap. It is shared by the UDT engine and its congestion
// controllers; it knows nothing else.
package seqno

// Max is the largest sequence number; the next one is 0.
const Max = 1<<31 - 1

// threshold is libudt's m_iSeqNoTH: differences at least this large are
// taken to straddle the wrap.
const threshold = 1<<30 - 1

// Inc returns s+1 modulo 2^31.
func Inc(s int32) int32 {
	if s == Max {
		return 0
	}
	return s + 1
}

// Dec returns s-1 modulo 2^31.
func Dec(s int32) int32 {
	if s == 0 {
		return Max
	}
	return s - 1
}

// Add returns s+n modulo 2^31 for any n (negative too).
func Add(s int32, n int) int32 {
	v := (int64(s) + int64(n)) % (Max + 1)
	if v < 0 {
		v += Max + 1
	}
	return int32(v)
}

// Cmp returns a value <0, 0 or >0 as a is before, equal to or after b.
func Cmp(a, b int32) int {
	d := int64(a) - int64(b)
	if d < 0 {
		if -d < threshold {
			return int(d)
		}
		return int(b - a)
	}
	if d < threshold {
		return int(d)
	}
	return int(b - a)
}

// Off returns the signed distance from a to b (b-a), adjusted across the
// wrap: Off(a, Inc(a)) == 1.
func Off(a, b int32) int {
	d := int64(b) - int64(a)
	if d < -threshold {
		return int(d + Max + 1)
	}
	if d > threshold {
		return int(d - Max - 1)
	}
	return int(d)
}

// Len returns the number of sequence numbers in the inclusive range a..b.
func Len(a, b int32) int {
	if a <= b {
		return int(b-a) + 1
	}
	return int(int64(b)-int64(a)+Max+1) + 1
}

// Valid reports whether s is a 31-bit sequence number.
func Valid(s int32) bool { return s >= 0 }
