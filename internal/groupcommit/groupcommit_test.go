package groupcommit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

// The group's context outlives a caller that gives up while others wait,
// ends when the last caller gives up (a shutdown cancels contexts long
// before their deadlines), and keeps the latest deadline.
func TestContextEndsWithTheLastCaller(t *testing.T) {
	a, cancelA := context.WithTimeout(context.Background(), time.Hour)
	defer cancelA()
	b, cancelB := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancelB()
	ctx, cancel := Context([]context.Context{a, b})
	defer cancel()
	if d, ok := ctx.Deadline(); !ok || time.Until(d) < time.Hour+30*time.Minute {
		t.Fatalf("deadline = %v, %v; want the latest caller's (about 2h)", d, ok)
	}
	cancelA()
	select {
	case <-ctx.Done():
		t.Fatal("the group's context ended when one of two callers gave up")
	case <-time.After(20 * time.Millisecond):
	}
	cancelB()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the group's context outlived every caller")
	}
	// Without deadlines, the same rule.
	c, cancelC := context.WithCancel(context.Background())
	ctx2, cancel2 := Context([]context.Context{c})
	defer cancel2()
	if _, ok := ctx2.Deadline(); ok {
		t.Fatal("a group of callers without deadlines got one")
	}
	cancelC()
	<-ctx2.Done()
}
