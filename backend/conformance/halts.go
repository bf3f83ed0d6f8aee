package conformance

import (
	"strings"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
)

func testHalts(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"Detail":        haltDetail,
		"LimitsRefused": haltLimitsRefused,
	})
}

// haltDetail: a retried failure keeps its stack with the job; the halting
// failure of a job at a scope records, with the run, the job's node, scope
// and attempt, the cause and the stack, apart from the reason.
func haltDetail(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, enc(t, 1), backend.Plan{Jobs: []backend.NewJob{{NodeID: "child", Scope: "3", Input: enc(t, 1)}}})
	j := claimOne(t, b, proc, defA)
	ctx := testCtx(t)
	if _, err := b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Error: "first",
		Stack: "stack one", Retry: true}); err != nil {
		t.Fatalf("Fail(Retry): %v", err)
	}
	if info := jobByID(t, b, j.RunID, j.ID); info.Error != "first" || info.Stack != "stack one" {
		t.Errorf("retried job = {error %q, stack %q}; want {first, stack one}", info.Error, info.Stack)
	}
	if r := getRun(t, b, j.RunID); r.HaltCause != "" || r.HaltNode != "" || r.HaltAttempt != 0 {
		t.Errorf("running run has halt fields {%q %q %d}; want none", r.HaltCause, r.HaltNode, r.HaltAttempt)
	}
	j2 := claimOne(t, b, proc, defA)
	stack := "goroutine 1 [running]:\n" + strings.Repeat("main.f()\n\t/src/x.go:1 +0x1\n", 100)
	res, err := b.Fail(ctx, &backend.FailParams{JobID: j2.ID, ProcessID: proc, Fence: j2.Fence, Error: "step panicked: boom",
		Stack: stack, Cause: backend.HaltPanic})
	if err != nil || !res.Halted {
		t.Fatalf("Fail(halt) = %+v, %v; want Halted", res, err)
	}
	r := getRun(t, b, j.RunID)
	if r.Status != backend.RunHalted || r.Error != "step panicked: boom" || r.HaltNode != "child" || r.HaltScope != "3" ||
		r.HaltCause != backend.HaltPanic || r.HaltAttempt != 2 || r.HaltStack != stack {
		t.Errorf("halted run = {status %q, error %q, node %q, scope %q, cause %q, attempt %d, stack of %d bytes}; "+
			"want {halted, \"step panicked: boom\", child, 3, panic, 2, the %d-byte stack}",
			r.Status, r.Error, r.HaltNode, r.HaltScope, r.HaltCause, r.HaltAttempt, len(r.HaltStack), len(stack))
	}
	if info := jobByID(t, b, j.RunID, j.ID); info.Status != backend.JobFailed || info.Stack != stack {
		t.Errorf("failed job = {status %q, stack of %d bytes}; want failed with the stack", info.Status, len(info.Stack))
	}
	res2, err := b.ListRuns(ctx, &backend.ListRunsParams{Status: backend.RunHalted})
	if err != nil || len(res2.Runs) != 1 || res2.Runs[0].HaltCause != backend.HaltPanic || res2.Runs[0].HaltNode != "child" {
		t.Errorf("ListRuns(halted) = %+v, %v; want the run with its halt fields", res2, err)
	}
}

// haltLimitsRefused: values above the limits a backend declares
// (Capabilities.Limits) are refused with a permanent error
// (backend.IsPermanent) before anything is written.
func haltLimitsRefused(t *testing.T, h Harness) {
	b := newBackend(t, h)
	l := b.Capabilities().Limits
	if l.MaxPipelineBytes == 0 && l.MaxNodeIDBytes == 0 && l.MaxScopeBytes == 0 {
		t.Skip("the backend declares no limits on names")
	}
	ctx := testCtx(t)
	if l.MaxPipelineBytes > 0 {
		_, err := b.Trigger(ctx, &backend.TriggerParams{Pipeline: strings.Repeat("p", l.MaxPipelineBytes+1), Fingerprint: defA.Fingerprint,
			First: backend.NewJob{NodeID: "root"}})
		if err == nil || !backend.IsPermanent(err) {
			t.Errorf("Trigger with a pipeline name over MaxPipelineBytes = %v; want a permanent error", err)
		}
		if res, err := b.ListRuns(ctx, &backend.ListRunsParams{}); err != nil || len(res.Runs) != 0 {
			t.Errorf("after a refused Trigger ListRuns = %+v, %v; want no run", res, err)
		}
	}
	proc, j := startRoot(t, b, defA)
	for _, nj := range []backend.NewJob{
		{NodeID: strings.Repeat("n", max(l.MaxNodeIDBytes, 1)+1)},
		{NodeID: "next", Scope: strings.Repeat("1", max(l.MaxScopeBytes, 1)+1)},
	} {
		if (l.MaxNodeIDBytes == 0 && len(nj.NodeID) > 4) || (l.MaxScopeBytes == 0 && nj.Scope != "") {
			continue
		}
		_, err := b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Output: enc(t, 1),
			Plan: backend.Plan{Jobs: []backend.NewJob{nj}}})
		if err == nil || !backend.IsPermanent(err) {
			t.Errorf("Complete with a new job {node %d bytes, scope %d bytes} = %v; want a permanent error", len(nj.NodeID), len(nj.Scope), err)
		}
	}
	if info := jobByID(t, b, j.RunID, j.ID); info.Status != backend.JobRunning || len(listJobs(t, b, j.RunID)) != 1 {
		t.Fatalf("after refused completions the job is %q with %d jobs in the run; want running, alone", info.Status, len(listJobs(t, b, j.RunID)))
	}
	complete(t, b, j, proc, enc(t, 1), backend.Plan{CompleteRun: true})
}
