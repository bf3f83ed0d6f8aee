package conformance

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

func testTrigger(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"GetRun":        triggerGetRun,
		"GetRunMissing": triggerGetRunMissing,
		"TxRollback":    triggerTxRollback,
		"TxCommit":      triggerTxCommit,
		"UnsupportedTx": triggerUnsupportedTx,
		"Concurrent":    triggerConcurrent,
		"CompleteRun":   triggerCompleteRun,
		"Notify":        triggerNotify,
	})
}

// triggerGetRun: a triggered run and its first job read back as written.
func triggerGetRun(t *testing.T, h Harness) {
	b := newBackend(t, h)
	input := enc(t, map[string]any{"days": 7})
	meta := map[string]string{"tenant": "acme", "trace": "abc-123"}
	before := now(t, b)
	res, err := b.Trigger(testCtx(t), &backend.TriggerParams{
		Pipeline: defA.Pipeline, Fingerprint: defA.Fingerprint, Input: input, Metadata: meta,
		First: backend.NewJob{NodeID: "first", Scope: "", Input: input, Priority: 3},
	})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	r := getRun(t, b, res.RunID)
	if r.ID != res.RunID || r.Pipeline != defA.Pipeline || r.Fingerprint != defA.Fingerprint {
		t.Errorf("GetRun = {ID %d, %q, %q}; want {ID %d, %q, %q}",
			r.ID, r.Pipeline, r.Fingerprint, res.RunID, defA.Pipeline, defA.Fingerprint)
	}
	if r.Status != backend.RunRunning {
		t.Errorf("run status = %q; want %q", r.Status, backend.RunRunning)
	}
	if !equalBytes(r.Input, input) {
		t.Errorf("run input = %s; want %s", short(r.Input), short(input))
	}
	if len(r.Output) != 0 || r.Error != "" {
		t.Errorf("new run has output %s, error %q; want neither", short(r.Output), r.Error)
	}
	if !maps.Equal(r.Metadata, meta) {
		t.Errorf("run metadata = %v; want %v", r.Metadata, meta)
	}
	if r.CreatedAt.Before(before.Add(-precision(b))) {
		t.Errorf("run CreatedAt %v is before the database clock read before Trigger (%v)", r.CreatedAt, before)
	}
	jobs := listJobs(t, b, res.RunID)
	if len(jobs) != 1 {
		t.Fatalf("ListJobs = %d jobs; want 1", len(jobs))
	}
	j := jobs[0]
	if j.ID != res.JobID || j.RunID != res.RunID || j.NodeID != "first" || j.Scope != "" {
		t.Errorf("job = {ID %d, run %d, node %q, scope %q}; want {ID %d, run %d, node \"first\", scope \"\"}",
			j.ID, j.RunID, j.NodeID, j.Scope, res.JobID, res.RunID)
	}
	if j.Status != backend.JobPending || j.Attempt != 1 || j.Crashes != 0 || j.Join {
		t.Errorf("job = {status %q, attempt %d, crashes %d, join %v}; want {pending, 1, 0, false}",
			j.Status, j.Attempt, j.Crashes, j.Join)
	}
	if !equalBytes(j.Input, input) {
		t.Errorf("job input = %s; want %s", short(j.Input), short(input))
	}
}

// triggerGetRunMissing: GetRun of an unknown ID is ErrRunNotFound.
func triggerGetRunMissing(t *testing.T, h Harness) {
	b := newBackend(t, h)
	_, err := b.GetRun(testCtx(t), &backend.GetRunParams{RunID: 987654321})
	wantErr(t, "GetRun(unknown)", err, backend.ErrRunNotFound)
}

// triggerTxRollback: a Trigger joined to a rolled-back transaction leaves no
// run and no job.
func triggerTxRollback(t *testing.T, h Harness) {
	if h.BeginTx == nil {
		t.Skip("Harness.BeginTx is nil: cannot test TriggerTx")
	}
	b := newBackend(t, h)
	tx, _, rollback := h.BeginTx(t, b)
	res, err := b.Trigger(testCtx(t), &backend.TriggerParams{
		Pipeline: defA.Pipeline, Fingerprint: defA.Fingerprint, Input: enc(t, 1),
		First: backend.NewJob{NodeID: "root", Input: enc(t, 1)}, Tx: tx,
	})
	if err != nil {
		_ = rollback()
		t.Fatalf("Trigger in a transaction: %v", err)
	}
	if err := rollback(); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	_, err = b.GetRun(testCtx(t), &backend.GetRunParams{RunID: res.RunID})
	wantErr(t, "GetRun after rollback", err, backend.ErrRunNotFound)
	runs, err := b.ListRuns(testCtx(t), &backend.ListRunsParams{})
	if err != nil {
		t.Fatalf("ListRuns: %v", err)
	}
	if len(runs.Runs) != 0 {
		t.Errorf("ListRuns after rollback = %d runs; want 0", len(runs.Runs))
	}
	claimNone(t, b, register(t, b, defA), defA)
}

// triggerTxCommit: a Trigger joined to a committed transaction is visible
// and claimable.
func triggerTxCommit(t *testing.T, h Harness) {
	if h.BeginTx == nil {
		t.Skip("Harness.BeginTx is nil: cannot test TriggerTx")
	}
	b := newBackend(t, h)
	tx, commit, rollback := h.BeginTx(t, b)
	res, err := b.Trigger(testCtx(t), &backend.TriggerParams{
		Pipeline: defA.Pipeline, Fingerprint: defA.Fingerprint, Input: enc(t, 1),
		First: backend.NewJob{NodeID: "root", Input: enc(t, 1)}, Tx: tx,
	})
	if err != nil {
		_ = rollback()
		t.Fatalf("Trigger in a transaction: %v", err)
	}
	if err := commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if r := getRun(t, b, res.RunID); r.Status != backend.RunRunning {
		t.Errorf("run status = %q; want %q", r.Status, backend.RunRunning)
	}
	if j := claimOne(t, b, register(t, b, defA), defA); j.ID != res.JobID {
		t.Errorf("claimed job %d; want %d", j.ID, res.JobID)
	}
}

// triggerUnsupportedTx: a Tx of a foreign type is ErrUnsupportedTx and
// writes nothing.
func triggerUnsupportedTx(t *testing.T, h Harness) {
	b := newBackend(t, h)
	_, err := b.Trigger(testCtx(t), &backend.TriggerParams{
		Pipeline: defA.Pipeline, Fingerprint: defA.Fingerprint,
		First: backend.NewJob{NodeID: "root"}, Tx: struct{ notATx int }{},
	})
	wantErr(t, "Trigger with a foreign Tx", err, backend.ErrUnsupportedTx)
	claimNone(t, b, register(t, b, defA), defA)
}

// triggerConcurrent: 20 concurrent triggers all succeed with distinct IDs.
func triggerConcurrent(t *testing.T, h Harness) {
	b := newBackend(t, h)
	const n = 20
	ctx := testCtx(t)
	results := make([]*backend.TriggerResult, n)
	inputs := make([][]byte, n)
	for i := range inputs {
		inputs[i] = enc(t, i)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			res, err := b.Trigger(ctx, &backend.TriggerParams{
				Pipeline: defA.Pipeline, Fingerprint: defA.Fingerprint, Input: inputs[i],
				First: backend.NewJob{NodeID: "root", Input: inputs[i]},
			})
			if err != nil {
				t.Errorf("concurrent Trigger %d: %v", i, err)
				return
			}
			results[i] = res
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	runs, jobs := map[int64]bool{}, map[int64]bool{}
	for i, r := range results {
		if runs[r.RunID] || jobs[r.JobID] {
			t.Errorf("trigger %d returned a duplicate RunID %d or JobID %d", i, r.RunID, r.JobID)
		}
		runs[r.RunID], jobs[r.JobID] = true, true
		got := getRun(t, b, r.RunID)
		if n, ok := decInt(t, got.Input); ok && n != i {
			t.Errorf("run %d input = %d; want %d", r.RunID, n, i)
		}
	}
	list, err := b.ListRuns(testCtx(t), &backend.ListRunsParams{})
	if err != nil {
		t.Fatalf("ListRuns: %v", err)
	}
	if len(list.Runs) != n {
		t.Errorf("ListRuns = %d runs; want %d", len(list.Runs), n)
	}
}

// triggerCompleteRun: a completion with Plan.CompleteRun finishes the run
// with the job's output.
func triggerCompleteRun(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	out := enc(t, map[string]int{"answer": 42})
	res := complete(t, b, j, proc, out, backend.Plan{CompleteRun: true})
	if !res.RunCompleted || res.NewJobs != 0 || res.JoinFired {
		t.Errorf("CompleteResult = %+v; want RunCompleted only", *res)
	}
	r := getRun(t, b, j.RunID)
	if r.Status != backend.RunCompleted || !equalBytes(r.Output, out) {
		t.Errorf("run = {status %q, output %s}; want {%q, %s}", r.Status, short(r.Output), backend.RunCompleted, short(out))
	}
	info := jobByID(t, b, j.RunID, j.ID)
	if info.Status != backend.JobCompleted || !equalBytes(info.Output, out) || info.FinishedAt == nil {
		t.Errorf("job = {status %q, output %s, finished %v}; want completed with output and FinishedAt",
			info.Status, short(info.Output), info.FinishedAt)
	}
	_, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: j.RunID, Reason: "late"})
	wantErr(t, "CancelRun of a completed run", err, backend.ErrRunState)
}

// triggerNotify: a backend that reports Notify implements backend.Notifier,
// signals after a Trigger, and closes the channel when its context ends.
func triggerNotify(t *testing.T, h Harness) {
	b := newBackend(t, h)
	if !b.Capabilities().Notify {
		t.Skip("Capabilities().Notify is false: callers poll")
	}
	n, ok := b.(backend.Notifier)
	if !ok {
		t.Fatalf("Capabilities().Notify is true but %T does not implement backend.Notifier", b)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	ch := n.Notifications(ctx)
	if ch == nil {
		t.Fatal("Notifications returned a nil channel")
	}
	// The listener may need a moment to be established; trigger again while
	// waiting, and report how many triggers it took.
	deadline := time.After(15 * time.Second)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	triggers := 1
wait:
	for {
		select {
		case _, open := <-ch:
			if !open {
				t.Fatal("notification channel closed while its context is live")
			}
			break wait
		case <-tick.C:
			trigger(t, b, defA, backend.NewJob{NodeID: "root"})
			triggers++
		case <-deadline:
			t.Fatalf("no notification within 15s after %d triggers", triggers)
		}
	}
	if triggers > 1 {
		t.Logf("the first notification arrived only after trigger #%d (the listener was not ready when Notifications returned)", triggers)
	}
	cancel()
	closed := time.After(15 * time.Second)
	for {
		select {
		case _, open := <-ch:
			if !open {
				return
			}
		case <-closed:
			t.Fatal(errors.New("notification channel not closed within 15s after its context was cancelled"))
		}
	}
}
