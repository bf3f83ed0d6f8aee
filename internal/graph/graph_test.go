package graph_test

import (
	"testing"

	"github.com/ductwork-go/ductwork/internal/graph"
)

func TestChildScopeParentScopeRoundTrip(t *testing.T) {
	for _, parent := range []string{"", "0", "3", "3.0", "12.7.0", "0.0.0.0"} {
		for _, i := range []int{0, 1, 9, 10, 99, 12345} {
			child := graph.ChildScope(parent, i)
			gotParent, gotIndex, err := graph.ParentScope(child)
			if err != nil {
				t.Fatalf("ParentScope(ChildScope(%q, %d) = %q): %v", parent, i, child, err)
			}
			if gotParent != parent || gotIndex != i {
				t.Errorf("ParentScope(%q) = (%q, %d); want (%q, %d)", child, gotParent, gotIndex, parent, i)
			}
		}
	}
}

func TestChildScopeFormat(t *testing.T) {
	for _, tc := range []struct {
		parent string
		i      int
		want   string
	}{
		{"", 0, "0"},
		{"", 3, "3"},
		{"3", 0, "3.0"},
		{"3.0", 12, "3.0.12"},
	} {
		if got := graph.ChildScope(tc.parent, tc.i); got != tc.want {
			t.Errorf("ChildScope(%q, %d) = %q; want %q", tc.parent, tc.i, got, tc.want)
		}
	}
}

func TestParentScopeRejectsScopesOutsideAnExpansion(t *testing.T) {
	for _, s := range []string{"", "x", "3.", "3.x", "1.2.a"} {
		if p, i, err := graph.ParentScope(s); err == nil {
			t.Errorf("ParentScope(%q) = (%q, %d, nil); want an error", s, p, i)
		}
	}
}
