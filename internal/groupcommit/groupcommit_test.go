package groupcommit

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestEveryItemProcessedOnceAndGroupsBounded(t *testing.T) {
	b := &Batcher[*int]{Max: 8}
	var running atomic.Int32
	var mu sync.Mutex
	seen := map[int]int{}
	groups := 0
	var wg sync.WaitGroup
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := i
			b.Do(&v, func(g []*int) {
				if running.Add(1) != 1 {
					t.Error("two groups processed at once")
				}
				defer running.Add(-1)
				if len(g) == 0 || len(g) > 8 {
					t.Errorf("group of %d", len(g))
				}
				mu.Lock()
				groups++
				for _, x := range g {
					seen[*x]++
				}
				mu.Unlock()
			})
			mu.Lock()
			n := seen[v]
			mu.Unlock()
			if n != 1 {
				t.Errorf("item %d processed %d times when Do returned", v, n)
			}
		}()
	}
	wg.Wait()
	if len(seen) != 500 {
		t.Fatalf("%d items processed, want 500", len(seen))
	}
	t.Logf("%d groups for 500 items", groups)
}

func TestPanicInRunReleasesTheGroup(t *testing.T) {
	b := &Batcher[int]{Max: 4}
	func() {
		defer func() { _ = recover() }()
		b.Do(1, func([]int) { panic("boom") })
	}()
	done := false
	b.Do(2, func([]int) { done = true })
	if !done {
		t.Fatal("the batcher is stuck after a panic")
	}
}
