package engine

import (
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// TestCancelledRunsAreForgotten: a cancelled run is remembered while this
// process holds a job of it, and forgotten cancelKeep after the last one is
// gone, so the set stays bounded in a process that cancels many runs.
func TestCancelledRunsAreForgotten(t *testing.T) {
	e := New(nil, nil, nil)
	held := &backend.Job{RunID: 1}
	e.Hold(held)
	e.RunCancelled(1)
	for id := int64(2); id < pruneAt+10; id++ {
		e.RunCancelled(id)
	}
	// Age every entry past cancelKeep.
	e.runs.mu.Lock()
	for id := range e.runs.cancelled {
		e.runs.cancelled[id] = time.Now().Add(-2 * cancelKeep)
	}
	e.runs.mu.Unlock()
	if got := e.HeldRuns(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("HeldRuns = %v; want [1]", got)
	}
	if !e.isCancelled(1) {
		t.Error("run 1 is still held here, but its cancel was forgotten")
	}
	if e.isCancelled(2) {
		t.Error("run 2 is held nowhere here and its cancel is old, but it is still remembered")
	}
	e.drop(held)
	e.HeldRuns()
	if e.isCancelled(1) || len(e.runs.cancelled) != 0 {
		t.Errorf("after the last job was dropped %d cancelled runs are remembered; want 0", len(e.runs.cancelled))
	}
}
