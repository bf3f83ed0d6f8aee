package conformance

import (
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
)

// testDedup: deduplicated triggers whose key binds only while the run is
// active (TriggerParams.KeyWhileActive).
func testDedup(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"WhileActive":     dedupWhileActive,
		"WhileActiveTx":   dedupWhileActiveTx,
		"WhileActiveRace": dedupWhileActiveRace,
	})
}

func keyedTrigger(t *testing.T, b backend.Backend, tx any, key string, whileActive bool, input []byte) (*backend.TriggerResult, error) {
	t.Helper()
	return b.Trigger(testCtx(t), &backend.TriggerParams{Pipeline: defA.Pipeline, Fingerprint: defA.Fingerprint, Tx: tx,
		Input: input, Key: key, KeyWhileActive: whileActive, First: backend.NewJob{NodeID: "root", Input: input}})
}

// finishRun completes the run's first job as its end node.
func finishRun(t *testing.T, b backend.Backend, res *backend.TriggerResult) {
	t.Helper()
	proc := register(t, b, defA)
	j := claimOne(t, b, proc, defA)
	if j.RunID != res.RunID {
		t.Fatalf("claimed a job of run %d; want run %d", j.RunID, res.RunID)
	}
	complete(t, b, j, proc, enc(t, "done"), backend.Plan{CompleteRun: true})
}

// dedupWhileActive: while its run is active (running, or halted) a key
// returns that run; once the run completed (or was cancelled) a trigger
// with KeyWhileActive starts a new run, whatever its input, and the key is
// then bound to the new run, also for triggers that bind "ever". Without
// KeyWhileActive a finished run keeps its key.
func dedupWhileActive(t *testing.T, h Harness) {
	b := newBackend(t, h)
	key := randomID(t, "order")
	first, err := keyedTrigger(t, b, nil, key, true, enc(t, 1))
	if err != nil || first.Existing {
		t.Fatalf("first trigger = %+v, %v; want a new run", first, err)
	}
	again, err := keyedTrigger(t, b, nil, key, true, enc(t, 1))
	if err != nil || !again.Existing || again.RunID != first.RunID {
		t.Fatalf("trigger while the run is active = %+v, %v; want Existing run %d", again, err, first.RunID)
	}
	finishRun(t, b, first)
	ever, err := keyedTrigger(t, b, nil, key, false, enc(t, 1))
	if err != nil || !ever.Existing || ever.RunID != first.RunID {
		t.Fatalf("trigger binding ever after the run completed = %+v, %v; want Existing run %d", ever, err, first.RunID)
	}
	second, err := keyedTrigger(t, b, nil, key, true, enc(t, 2))
	if err != nil || second.Existing || second.RunID == first.RunID {
		t.Fatalf("trigger while active after the run completed = %+v, %v; want a new run", second, err)
	}
	if r := getRun(t, b, first.RunID); r.Status != backend.RunCompleted {
		t.Fatalf("the first run is %s; want completed, unchanged", r.Status)
	}
	ever, err = keyedTrigger(t, b, nil, key, false, enc(t, 2))
	if err != nil || !ever.Existing || ever.RunID != second.RunID {
		t.Fatalf("trigger binding ever = %+v, %v; want Existing run %d (the key moved)", ever, err, second.RunID)
	}
	// A cancelled run frees the key too; a halted one does not.
	if _, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: second.RunID, Reason: "test"}); err != nil {
		t.Fatalf("CancelRun: %v", err)
	}
	third, err := keyedTrigger(t, b, nil, key, true, enc(t, 3))
	if err != nil || third.Existing {
		t.Fatalf("trigger after the run was cancelled = %+v, %v; want a new run", third, err)
	}
	proc := register(t, b, defA)
	j := claimOne(t, b, proc, defA)
	if _, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Error: "boom", Cause: backend.HaltRetriesExhausted}); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	halted, err := keyedTrigger(t, b, nil, key, true, enc(t, 3))
	if err != nil || !halted.Existing || halted.RunID != third.RunID {
		t.Fatalf("trigger while the run is halted = %+v, %v; want Existing run %d", halted, err, third.RunID)
	}
}

// dedupWhileActiveTx: inside the caller's transaction, a key whose run
// finished starts a new run that exists only if the transaction commits.
func dedupWhileActiveTx(t *testing.T, h Harness) {
	if h.BeginTx == nil {
		t.Skip("Harness.BeginTx is nil")
	}
	b := newBackend(t, h)
	key := randomID(t, "order")
	first, err := keyedTrigger(t, b, nil, key, true, enc(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	finishRun(t, b, first)
	tx, commit, _ := h.BeginTx(t, b)
	in, err := keyedTrigger(t, b, tx, key, true, enc(t, 2))
	if err != nil || in.Existing {
		t.Fatalf("trigger in a transaction = %+v, %v; want a new run", in, err)
	}
	dup, err := keyedTrigger(t, b, tx, key, true, enc(t, 2))
	if err != nil || !dup.Existing || dup.RunID != in.RunID {
		t.Fatalf("repeated trigger in the transaction = %+v, %v; want Existing run %d", dup, err, in.RunID)
	}
	if err := commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	after, err := keyedTrigger(t, b, nil, key, true, enc(t, 2))
	if err != nil || !after.Existing || after.RunID != in.RunID {
		t.Fatalf("trigger after the commit = %+v, %v; want Existing run %d", after, err, in.RunID)
	}
}

// dedupWhileActiveRace: many triggers race for a key whose run finished:
// exactly one new run starts, and every other trigger returns it.
func dedupWhileActiveRace(t *testing.T, h Harness) {
	b := newBackend(t, h)
	key := randomID(t, "order")
	first, err := keyedTrigger(t, b, nil, key, true, enc(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	finishRun(t, b, first)
	const n = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		runs = map[int64]int{}
		news int
	)
	for range n {
		wg.Go(func() {
			res, err := keyedTrigger(t, b, nil, key, true, enc(t, 2))
			if err != nil {
				t.Errorf("Trigger: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			runs[res.RunID]++
			if !res.Existing {
				news++
			}
		})
	}
	wg.Wait()
	if news != 1 || len(runs) != 1 {
		t.Fatalf("%d racing triggers started %d runs (%v); want exactly one new run, returned to all", n, news, runs)
	}
	if _, ok := runs[first.RunID]; ok {
		t.Fatalf("a racing trigger returned the finished run %d", first.RunID)
	}
}
