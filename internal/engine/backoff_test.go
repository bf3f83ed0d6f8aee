package engine_test

import (
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/internal/engine"
)

// samples is how many draws each bound is checked on; the jitter is random.
const samples = 500

func TestBackoffWithinJitterOfDoubling(t *testing.T) {
	const base, maxDelay = 100 * time.Millisecond, time.Hour
	for attempt := 1; attempt <= 12; attempt++ {
		want := base << (attempt - 1) // base*2^(attempt-1), below the cap
		lo, hi := want-want/5, want+want/5
		for range samples {
			if d := engine.Backoff(attempt, base, maxDelay); d < lo || d > hi {
				t.Fatalf("Backoff(%d, %v, %v) = %v; want within ±20%% of %v [%v, %v]", attempt, base, maxDelay, d, want, lo, hi)
			}
		}
	}
}

func TestBackoffGrows(t *testing.T) {
	const base, maxDelay = 10 * time.Millisecond, time.Minute
	// Below the cap the ranges of consecutive attempts do not overlap
	// (1.2x < 1.6x), so every draw of attempt n+1 exceeds every draw of n.
	prevMax := time.Duration(0)
	for attempt := 1; attempt <= 10; attempt++ {
		lo, hi := time.Duration(1<<62), time.Duration(0)
		for range samples {
			d := engine.Backoff(attempt, base, maxDelay)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo <= prevMax {
			t.Fatalf("attempt %d drew %v, not above attempt %d's largest draw %v", attempt, lo, attempt-1, prevMax)
		}
		prevMax = hi
	}
}

func TestBackoffCapped(t *testing.T) {
	const base, maxDelay = 100 * time.Millisecond, 2 * time.Second
	lo, hi := maxDelay-maxDelay/5, maxDelay+maxDelay/5
	for _, attempt := range []int{6, 7, 10, 30, 64, 1000} { // 100ms*2^5 = 3.2s > 2s
		for range samples {
			if d := engine.Backoff(attempt, base, maxDelay); d < lo || d > hi {
				t.Fatalf("Backoff(%d, %v, %v) = %v; want the cap ±20%% [%v, %v]", attempt, base, maxDelay, d, lo, hi)
			}
		}
	}
	// A base above the cap is capped from the first retry on.
	for range samples {
		if d := engine.Backoff(1, time.Minute, maxDelay); d < lo || d > hi {
			t.Fatalf("Backoff(1, 1m, %v) = %v; want within [%v, %v]", maxDelay, d, lo, hi)
		}
	}
}

func TestBackoffJitterSpreads(t *testing.T) {
	const base = time.Second
	seen := map[time.Duration]bool{}
	below, above := false, false
	for range samples {
		d := engine.Backoff(3, base, time.Hour)
		seen[d] = true
		below = below || d < 4*base
		above = above || d > 4*base
	}
	if len(seen) < 10 || !below || !above {
		t.Errorf("%d distinct delays (below %v: %v, above: %v); want jitter on both sides", len(seen), 4*base, below, above)
	}
}

func TestBackoffZeroBase(t *testing.T) {
	if d := engine.Backoff(3, 0, time.Second); d != 0 {
		t.Errorf("Backoff with a zero base = %v; want 0", d)
	}
}
