package gate

import (
	"slices"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// TestPickConcurrency: a key takes up to its limit, a held job holds back the
// later jobs of its key only, and max caps the claim.
func TestPickConcurrency(t *testing.T) {
	cs := []Candidate{{ID: 1, Key: "a", Limit: 2}, {ID: 2, Key: "a", Limit: 2}, {ID: 3, Key: "a", Limit: 2}, {ID: 4, Key: "b", Limit: 1}, {ID: 5, Key: "b", Limit: 1}}
	st := &State{Running: map[string]int{"a": 1}, TAT: map[string]time.Time{}}
	ids, _, _ := Pick(cs, st, nil, 10)
	if !slices.Equal(ids, []int64{1, 4}) {
		t.Fatalf("Pick = %v; want [1 4]", ids)
	}
	st = &State{Running: map[string]int{}, TAT: map[string]time.Time{}}
	if ids, _, _ := Pick(cs, st, nil, 1); !slices.Equal(ids, []int64{1}) {
		t.Fatalf("Pick(max 1) = %v; want [1]", ids)
	}
}

// TestPickRate: the generic cell rate algorithm lets Burst start at once,
// then one per Interval, keeps the limit's jobs in order and says when the
// next token is due; an unknown limit holds its jobs.
func TestPickRate(t *testing.T) {
	now := time.Unix(1000, 0)
	rates := RateMap([]backend.RateLimit{{Name: "r", Interval: 100 * time.Millisecond, Burst: 2}})
	cs := []Candidate{{ID: 1, Rate: "r"}, {ID: 2, Rate: "r"}, {ID: 3, Rate: "r"}, {ID: 4, Rate: "x"}, {ID: 5}}
	st := &State{Running: map[string]int{}, TAT: map[string]time.Time{}, Now: now}
	ids, changed, retry := Pick(cs, st, rates, 10)
	if !slices.Equal(ids, []int64{1, 2, 5}) {
		t.Fatalf("Pick = %v; want [1 2 5]", ids)
	}
	if want := now.Add(200 * time.Millisecond); !changed["r"].Equal(want) {
		t.Fatalf("tat = %v; want %v", changed["r"], want)
	}
	if retry != 100*time.Millisecond {
		t.Fatalf("retryIn = %v; want 100ms", retry)
	}
	st.Now = now.Add(100 * time.Millisecond)
	ids, _, _ = Pick(cs[2:3], st, rates, 10)
	if !slices.Equal(ids, []int64{3}) {
		t.Fatalf("Pick after the interval = %v; want [3]", ids)
	}
}

// TestRowsSorted: rows come sorted and once each.
func TestRowsSorted(t *testing.T) {
	got := Rows([]Candidate{{Key: "b", Rate: "z"}, {Key: "a"}, {Key: "b"}})
	if !slices.Equal(got, []string{"c:a", "c:b", "r:z"}) {
		t.Fatalf("Rows = %v", got)
	}
}
