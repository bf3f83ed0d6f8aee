package ductwork_test

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// crashDetachedDef: prepare, then a detached branch (the victim, which
// blocks in the helper process) beside the branch that leads to the end
// node.
var crashDetachedDef = flow.MustDefine("crash-detached", func(p *flow.Pipeline[int]) flow.End[int] {
	side, main := flow.Divide2(flow.Start(p, crashPrep), crashVictim,
		step.New("main", func(ctx step.Context, n int) (int, error) { mark(ctx); return n * 2, nil }))
	flow.Detach(side)
	return flow.Combine(step.New("end", func(ctx step.Context, ns []int) (int, error) { mark(ctx); return ns[0] + 1, nil }), main)
})

// TestCrashBetweenEndAndDetachedBranch: a helper process finishes the end
// node and is SIGKILLed inside the last detached branch. The run stays
// running; this process reaps the helper, re-runs the branch, and that
// completion completes the run with the end node's output, every step
// instance committed once.
func TestCrashBetweenEndAndDetachedBranch(t *testing.T) {
	e := newEnv(t, crashDetachedDef)
	marks := filepath.Join(t.TempDir(), "marks")
	r, err := ductwork.Trigger(waitCtx(t), e.client, crashDetachedDef, 20)
	if err != nil {
		t.Fatal(err)
	}
	helper := startHelper(t, e, marks)
	waitFor(t, func() bool {
		if len(marksOf(t, marks, "victim")) != 1 {
			return false
		}
		steps, err := r.Steps(waitCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range steps {
			if s.Node == "end" && s.Status == backend.JobCompleted {
				return true
			}
		}
		return false
	})
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	if st, err := r.Status(waitCtx(t)); err != nil || st != ductwork.RunRunning {
		t.Fatalf("status with the end node done and a detached branch in a dead process = %q, %v; want running", st, err)
	}

	t.Setenv("DW_MARKS", marks)
	startSupervisor(t, e.client, &supervisor.Config{HeartbeatInterval: 50 * time.Millisecond, ReapThreshold: 300 * time.Millisecond, ReapInterval: 50 * time.Millisecond})
	out, err := r.Wait(waitCtx(t))
	if err != nil || out != 41 {
		t.Fatalf("out = %d, %v; want the end node's 41", out, err)
	}
	if v := marksOf(t, marks, "victim"); len(v) != 2 || v[0][4] == v[1][4] {
		t.Fatalf("victim executions: %v; want one in the helper and one here", v)
	}
	steps, err := r.Steps(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 4 {
		t.Fatalf("%d step instances, want 4", len(steps))
	}
	for _, s := range steps {
		wantCrashes := 0
		if s.Node == "victim" {
			wantCrashes = 1
		}
		if s.Status != backend.JobCompleted || s.Attempt != 1 || s.CrashReruns != wantCrashes {
			t.Fatalf("step %s: %s attempt %d crash re-runs %d; want completed, 1, %d", s.Node, s.Status, s.Attempt, s.CrashReruns, wantCrashes)
		}
	}
	for _, node := range []string{"prepare", "main", "end"} {
		if n := len(marksOf(t, marks, node)); n != 1 {
			t.Fatalf("%s ran %d times; want once", node, n)
		}
	}
}
