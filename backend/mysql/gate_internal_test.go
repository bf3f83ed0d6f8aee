package mysql

import (
	"strings"
	"testing"
)

func TestGatedSelectShape(t *testing.T) {
	if !strings.Contains(qGatedSelectHead, "COALESCE(j.gate_key, ''), j.gate_limit") || !strings.Contains(qGatedSelectHead, "j.gated = 1") {
		t.Fatal(qGatedSelectHead)
	}
}

func TestInsertReturning(t *testing.T) {
	for v, want := range map[string]bool{
		"10.11.19-MariaDB-0+deb12u1": true, "10.5.0-MariaDB": true, "11.4.2-MariaDB-log": true,
		"10.4.34-MariaDB": false, "8.0.36": false, "8.4.0-commercial": false, "": false, "MariaDB": false,
	} {
		if got := insertReturning(v); got != want {
			t.Errorf("insertReturning(%q) = %v; want %v", v, got, want)
		}
	}
}

func TestPadded(t *testing.T) {
	for n, want := range map[int]int{0: 0, 1: 2, 2: 2, 3: 4, 5: 8, 8: 8, 9: 16, 32: 32} {
		s := make([]int, n)
		for i := range s {
			s[i] = i
		}
		p := padded(s)
		if len(p) != want {
			t.Fatalf("padded(%d items) has %d; want %d", n, len(p), want)
		}
		for i, v := range p {
			if i < n && v != i || i >= n && v != n-1 {
				t.Fatalf("padded(%d items) = %v", n, p)
			}
		}
	}
}
