package ductwork_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

// Pipelines the crash helper registers: one awaits a signal, one sleeps.
var (
	crashApproval = flow.Signal[string]("crash-approval")
	crashAwaitDef = flow.MustDefine("crash-await", func(p *flow.Pipeline[int]) flow.End[int] {
		got := step.New("got", func(_ step.Context, a flow.Awaited[int, string]) (int, error) { return a.Input + len(a.Payload), nil })
		return flow.Chain(flow.Await(flow.Start(p, crashPrep), crashApproval, 0), got)
	})
	crashSleepDef = flow.MustDefine("crash-sleep", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Chain(flow.Sleep(flow.Start(p, crashPrep), 800*time.Millisecond), crashAfter)
	})
)

// waitRunStatus waits until the run's stored status is want.
func waitRunStatus(t *testing.T, e *env, runID int64, want string) {
	t.Helper()
	waitFor(t, func() bool {
		r, err := e.b.GetRun(waitCtx(t), &backend.GetRunParams{RunID: runID})
		return err == nil && r.Status == want
	})
}

// noClaims checks that the run holds no claim.
func noClaims(t *testing.T, e *env, runID int64) {
	t.Helper()
	res, err := e.b.ListJobs(waitCtx(t), &backend.ListJobsParams{RunID: runID, Status: backend.JobRunning})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Jobs) != 0 {
		t.Fatalf("the waiting run holds %d claims", len(res.Jobs))
	}
}

// TestSignalAcrossKill9: a helper process runs a run up to its await and is
// SIGKILLed while the run waits (holding nothing); the signal is sent while
// no process runs; a new helper process finishes the run with it.
func TestSignalAcrossKill9(t *testing.T) {
	e := newEnv(t, crashAwaitDef)
	marks := t.TempDir() + "/marks"
	r, err := ductwork.Trigger(waitCtx(t), e.client, crashAwaitDef, 5)
	if err != nil {
		t.Fatal(err)
	}
	helper := startHelper(t, e, marks)
	waitRunStatus(t, e, r.ID, backend.RunWaiting)
	noClaims(t, e, r.ID)
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	if err := ductwork.Send(waitCtx(t), e.client, r.ID, crashApproval, "ok"); err != nil {
		t.Fatal(err)
	}
	startHelper(t, e, marks)
	if out, err := r.Wait(waitCtx(t)); err != nil || out != 7 {
		t.Fatalf("out = %d, %v; want 7", out, err)
	}
	if n := len(marksOf(t, marks, "prepare")); n != 1 {
		t.Fatalf("prepare ran %d times; want once", n)
	}
}

// TestSleepAcrossKill9: a helper process is SIGKILLed while its run sleeps;
// a new helper finishes the run after the sleep's due time.
func TestSleepAcrossKill9(t *testing.T) {
	e := newEnv(t, crashSleepDef)
	marks := t.TempDir() + "/marks"
	start, err := e.b.Now(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ductwork.Trigger(waitCtx(t), e.client, crashSleepDef, 5)
	if err != nil {
		t.Fatal(err)
	}
	helper := startHelper(t, e, marks)
	waitRunStatus(t, e, r.ID, backend.RunWaiting)
	noClaims(t, e, r.ID)
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	startHelper(t, e, marks)
	if out, err := r.Wait(waitCtx(t)); err != nil || out != 10 {
		t.Fatalf("out = %d, %v; want 10", out, err)
	}
	end, err := e.b.Now(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if d := end.Sub(start); d < 800*time.Millisecond {
		t.Fatalf("the run finished %v after its trigger, before its 800ms sleep ended", d)
	}
}
