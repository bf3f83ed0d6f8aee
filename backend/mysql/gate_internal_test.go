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
