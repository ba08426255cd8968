package seqno

import "testing"

func TestWrap(t *testing.T) {
	if Inc(Max) != 0 || Dec(0) != Max {
		t.Fatalf("Inc(Max)=%d Dec(0)=%d", Inc(Max), Dec(0))
	}
	if Add(Max-1, 3) != 1 || Add(1, -3) != Max-1 {
		t.Fatalf("Add wrong: %d %d", Add(Max-1, 3), Add(1, -3))
	}
	if Cmp(0, Max) <= 0 || Cmp(Max, 0) >= 0 {
		t.Fatalf("Cmp across wrap: %d %d", Cmp(0, Max), Cmp(Max, 0))
	}
	if Off(Max, 0) != 1 || Off(0, Max) != -1 || Off(Max-5, 5) != 11 {
		t.Fatalf("Off across wrap: %d %d %d", Off(Max, 0), Off(0, Max), Off(Max-5, 5))
	}
	if Len(Max, 0) != 2 || Len(5, 5) != 1 || Len(Max-1, 1) != 4 {
		t.Fatalf("Len: %d %d %d", Len(Max, 0), Len(5, 5), Len(Max-1, 1))
	}
}

func TestOffMatchesAdd(t *testing.T) {
	for _, base := range []int32{0, 1, 1000, 1 << 30, Max - 100, Max} {
		for _, n := range []int{-1000, -1, 0, 1, 77, 1 << 20} {
			b := Add(base, n)
			if got := Off(base, b); got != n {
				t.Fatalf("Off(%d, Add(%d,%d)=%d) = %d", base, base, n, b, got)
			}
			if c := Cmp(b, base); (c > 0) != (n > 0) || (c == 0) != (n == 0) {
				t.Fatalf("Cmp(%d,%d)=%d for n=%d", b, base, c, n)
			}
		}
	}
}
