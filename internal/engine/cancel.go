package engine

import (
	"context"
	"sync"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/ductworktype"
)

// ErrRunCancelled is the context.Cause of a step's context when its run was
// cancelled while the step ran (re-exported as ductwork.ErrCancelled).
var ErrRunCancelled = ductworktype.ErrCancelled

// cancelKeep is how long a cancelled run is remembered after the last of its
// jobs this process held is gone: long enough for a claim made just before
// the cancel to be seen and released.
const cancelKeep = time.Minute

// pruneAt is the number of remembered cancelled runs above which RunCancelled
// prunes.
const pruneAt = 1024

// runs tracks, per run, the jobs this process holds (claimed, queued or
// executing), the cancel functions of the steps executing, and the runs known
// to be cancelled (by a Cancel in this process, or reported by a heartbeat).
// Checking it costs a map lookup: no query per step.
type runs struct {
	mu        sync.Mutex
	held      map[int64]int
	executing map[int64]map[*context.CancelCauseFunc]struct{}
	cancelled map[int64]time.Time
}

// Hold records jobs claimed by this process; each is dropped when Execute
// finishes it or Release gives it back.
func (e *Engine) Hold(jobs ...*backend.Job) {
	if len(jobs) == 0 {
		return
	}
	r := &e.runs
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held == nil {
		r.held = map[int64]int{}
	}
	for _, j := range jobs {
		r.held[j.RunID]++
	}
}

func (e *Engine) drop(job *backend.Job) {
	r := &e.runs
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := r.held[job.RunID]; n > 1 {
		r.held[job.RunID] = n - 1
	} else {
		delete(r.held, job.RunID)
	}
}

// HeldRuns lists the runs of the jobs this process holds, for the heartbeat
// to ask which are cancelled.
func (e *Engine) HeldRuns() []int64 {
	r := &e.runs
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prune()
	out := make([]int64, 0, len(r.held))
	for id := range r.held {
		out = append(out, id)
	}
	return out
}

// prune forgets cancelled runs this process holds nothing of, once
// cancelKeep has passed. r.mu is held.
func (r *runs) prune() {
	now := time.Now()
	for id, at := range r.cancelled {
		if r.held[id] == 0 && now.Sub(at) > cancelKeep {
			delete(r.cancelled, id)
		}
	}
}

// RunCancelled records that runID was cancelled (its CancelRun committed):
// its queued jobs are not started, and the contexts of its executing steps
// are cancelled with ErrRunCancelled as the cause. Waiters of Wait in this
// process are woken.
func (e *Engine) RunCancelled(runID int64) {
	defer e.runFinished(runID)
	r := &e.runs
	r.mu.Lock()
	if r.cancelled == nil {
		r.cancelled = map[int64]time.Time{}
	}
	if len(r.cancelled) >= pruneAt {
		// A process that cancels many runs and holds none (a client
		// without a supervisor) never heartbeats: prune here too.
		r.prune()
	}
	if _, ok := r.cancelled[runID]; !ok {
		r.cancelled[runID] = time.Now()
	}
	var cancels []context.CancelCauseFunc
	for c := range r.executing[runID] {
		cancels = append(cancels, *c)
	}
	r.mu.Unlock()
	for _, c := range cancels {
		c(ErrRunCancelled)
	}
}

// start registers the cancel function of a step about to execute, unless its
// run is known to be cancelled (then it reports false).
func (e *Engine) start(runID int64, cancel *context.CancelCauseFunc) bool {
	r := &e.runs
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.cancelled[runID]; ok {
		return false
	}
	if r.executing == nil {
		r.executing = map[int64]map[*context.CancelCauseFunc]struct{}{}
	}
	m := r.executing[runID]
	if m == nil {
		m = map[*context.CancelCauseFunc]struct{}{}
		r.executing[runID] = m
	}
	m[cancel] = struct{}{}
	return true
}

func (e *Engine) finish(runID int64, cancel *context.CancelCauseFunc) {
	r := &e.runs
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.executing[runID]; m != nil {
		delete(m, cancel)
		if len(m) == 0 {
			delete(r.executing, runID)
		}
	}
}

// isCancelled reports whether runID is known to be cancelled.
func (e *Engine) isCancelled(runID int64) bool {
	r := &e.runs
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.cancelled[runID]
	return ok
}
