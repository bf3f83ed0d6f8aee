// Package groupcommit coalesces concurrent callers into groups, so that a
// backend can apply many completions in one transaction and one commit.
//
// There is no goroutine: the first caller to arrive while no group is being
// processed becomes the leader; it takes every item queued so far (up to
// Max), processes them, then hands leadership to the first caller still
// waiting. Every caller returns only after the group holding its item has
// been processed.
package groupcommit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Batcher groups items of type T. The zero value is not usable; set Max.
type Batcher[T any] struct {
	// Max bounds the size of a group.
	Max int

	mu      sync.Mutex
	pending []*entry[T]
	leading bool
}

type entry[T any] struct {
	item     T
	promoted bool
	signal   chan struct{} // closed when processed, or when promoted to leader
}

// Do queues item and returns once run has processed a group containing it.
// run is called by one caller at a time, with at least one item.
func (b *Batcher[T]) Do(item T, run func(group []T)) {
	e := &entry[T]{item: item, signal: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, e)
	lead := !b.leading
	b.leading = true
	b.mu.Unlock()
	if !lead {
		<-e.signal
		if !e.promoted {
			return
		}
	}
	b.mu.Lock()
	n := min(len(b.pending), max(b.Max, 1))
	group := b.pending[:n:n]
	b.pending = b.pending[n:]
	b.mu.Unlock()

	items := make([]T, len(group))
	for i, g := range group {
		items[i] = g.item
	}
	func() {
		// Whatever run does, hand on leadership and release the group.
		defer func() {
			b.mu.Lock()
			if len(b.pending) > 0 {
				next := b.pending[0]
				next.promoted = true
				close(next.signal)
			} else {
				b.leading = false
			}
			b.mu.Unlock()
			for _, g := range group {
				if g != e && !g.promoted {
					close(g.signal)
				}
			}
		}()
		run(items)
	}()
}

// Context returns a context for processing a group whose callers passed
// ctxs: not cancelled when one caller gives up (the others still wait for
// the group), but cancelled once every caller has given up, and bounded by
// the latest of their deadlines, so that a link gone silent cannot hold the
// group, and every caller, for ever. It has no deadline if one of the
// callers has none.
func Context(ctxs []context.Context) (context.Context, context.CancelFunc) {
	var latest time.Time
	bounded := len(ctxs) > 0
	for _, c := range ctxs {
		d, ok := c.Deadline()
		if !ok {
			bounded = false
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if bounded {
		ctx, cancel = context.WithDeadline(context.Background(), latest)
	} else {
		ctx, cancel = context.WithCancel(context.Background())
	}
	// A shutdown cancels its callers' contexts before their deadlines: the
	// group must not outlive the last of them.
	var left atomic.Int64
	left.Store(int64(len(ctxs)))
	stops := make([]func() bool, 0, len(ctxs))
	for _, c := range ctxs {
		stops = append(stops, context.AfterFunc(c, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
