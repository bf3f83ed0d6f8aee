package ductwork_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// The doomed pipeline: its one step kills its own process (as os.Exit or a
// fatal runtime error would) when it runs in a helper process. The step's
// crash budget (2) overrides the pipeline's (5).
var (
	doomedStep = step.New("doomed", func(ctx step.Context, n int) (int, error) {
		mark(ctx)
		if os.Getenv(helperEnv) != "" {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
		return n, nil
	}, step.MaxCrashes(2))
	doomedDef = flow.MustDefine("doomed", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Start(p, doomedStep)
	}, flow.MaxCrashes(5))
)

// TestCrashBudgetHaltsAStepThatKeepsKillingItsProcess: helper processes run
// a step that SIGKILLs its own process. After each death this process reaps
// the dead one (a crash re-run). The first execution and its 2 crash re-runs
// kill 3 processes; the 4th process to claim the step halts the run with a
// crash-budget cause instead of running it, and stays alive.
func TestCrashBudgetHaltsAStepThatKeepsKillingItsProcess(t *testing.T) {
	for _, kind := range allBackends {
		t.Run(kind, func(t *testing.T) {
			b, env := openCrashBackend(t, kind)
			client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			r, err := ductwork.Trigger(waitCtx(t), client, doomedDef, 7)
			if err != nil {
				t.Fatal(err)
			}
			marks := filepath.Join(t.TempDir(), "marks")
			start := func() (*exec.Cmd, chan error) {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), helperEnv+"=1", "DW_MARKS="+marks)
				cmd.Env = append(cmd.Env, env...)
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
				return cmd, done
			}
			for i := 1; i <= 3; i++ {
				_, done := start()
				select {
				case err := <-done:
					var ee *exec.ExitError
					if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
						t.Fatalf("helper %d: %v; want death by SIGKILL inside the step", i, err)
					}
					done <- err // for the cleanup
				case <-time.After(60 * time.Second):
					t.Fatalf("helper %d never ran the step", i)
				}
				// Reap the dead process: the step becomes a crash re-run.
				waitFor(t, func() bool {
					res, err := b.Reap(waitCtx(t), &backend.ReapParams{ProcessID: "budget-reaper", Threshold: 100 * time.Millisecond})
					return err == nil && res.Jobs == 1
				})
			}
			cmd, done := start()
			_, err = r.Wait(waitCtx(t))
			var he *ductwork.HaltedError
			if !errors.As(err, &he) {
				t.Fatalf("Wait = %v; want *HaltedError", err)
			}
			if he.Cause != ductwork.HaltCrashBudget || he.Node != "doomed" || he.Attempt != 1 || !strings.Contains(he.Reason, "crash budget is 2") {
				t.Fatalf("halt = {cause %q, node %q, attempt %d, reason %q}; want the crash budget of 2 at doomed, attempt 1", he.Cause, he.Node, he.Attempt, he.Reason)
			}
			if n := len(marksOf(t, marks, "doomed")); n != 3 {
				t.Fatalf("doomed ran %d times; want 3 (the first execution and 2 crash re-runs), none in the halting process", n)
			}
			steps, err := r.Steps(waitCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if len(steps) != 1 || steps[0].Status != backend.JobFailed || steps[0].CrashReruns != 3 || steps[0].Attempt != 1 {
				t.Fatalf("steps = %+v; want doomed failed with 3 crash re-runs on attempt 1", steps)
			}
			// The process that halted the run is alive, and stops cleanly.
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatalf("the 4th helper is gone: %v", err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("the 4th helper exited with %v; want a clean shutdown", err)
				}
				done <- err
			case <-time.After(30 * time.Second):
				t.Fatal("the 4th helper did not shut down")
			}
		})
	}
}

// TestCrashBudgetPipelineOption: with flow.MaxCrashes(1), a step instance
// whose owner was reaped twice (processes registered, claiming, then found
// dead) halts when claimed again, without running; the pipeline's budget
// applies to steps that set none.
func TestCrashBudgetPipelineOption(t *testing.T) {
	for _, kind := range allBackends {
		t.Run(kind, func(t *testing.T) {
			var ran atomic.Int32
			s := step.New("fragile", func(_ step.Context, n int) (int, error) { ran.Add(1); return n, nil })
			def := flow.MustDefine("fragile", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, s) }, flow.MaxCrashes(1))
			b, _ := openCrashBackend(t, kind)
			client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			if err := client.Register(def); err != nil {
				t.Fatal(err)
			}
			r, err := ductwork.Trigger(waitCtx(t), client, def, 1)
			if err != nil {
				t.Fatal(err)
			}
			ref := backend.DefinitionRef{Pipeline: def.Name(), Fingerprint: def.Fingerprint()}
			for i, ghost := range []string{"ghost-1", "ghost-2"} {
				ctx := waitCtx(t)
				if _, err := b.RegisterProcess(ctx, &backend.RegisterProcessParams{ProcessID: ghost, Definitions: []backend.DefinitionRef{ref}}); err != nil {
					t.Fatal(err)
				}
				res, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: ghost, Limit: 1, Definitions: []backend.DefinitionRef{ref}})
				if err != nil || len(res.Jobs) != 1 || res.Jobs[0].Crashes != i {
					t.Fatalf("ghost claim #%d: %+v, %v", i+1, res, err)
				}
				waitFor(t, func() bool {
					res, err := b.Reap(ctx, &backend.ReapParams{ProcessID: "reaper", Threshold: time.Millisecond})
					return err == nil && res.Jobs == 1
				})
			}
			startSupervisor(t, client, nil)
			_, err = r.Wait(waitCtx(t))
			var he *ductwork.HaltedError
			if !errors.As(err, &he) || he.Cause != ductwork.HaltCrashBudget {
				t.Fatalf("Wait = %v; want a crash-budget halt", err)
			}
			var cb *ductwork.CrashBudgetError
			if !errors.As(err, &cb) || cb.Crashes != 2 || cb.Max != 1 {
				t.Fatalf("err = %v; want *CrashBudgetError{Crashes: 2, Max: 1} (this process halted the run)", err)
			}
			if ran.Load() != 0 {
				t.Fatalf("the step ran %d times; a step over its crash budget must not run", ran.Load())
			}
		})
	}
}

// TestGracefulReleaseDoesNotSpendCrashBudget: a step interrupted by a
// supervisor's shutdown (its claim released) runs again and completes even
// with a crash budget of 0: a release is not a crash.
func TestGracefulReleaseDoesNotSpendCrashBudget(t *testing.T) {
	var runs atomic.Int32
	started := make(chan struct{}, 1)
	s := step.New("slow", func(ctx step.Context, n int) (int, error) {
		if runs.Add(1) == 1 {
			started <- struct{}{}
			<-ctx.Done() // shutdown cancels it after the grace period
			return 0, ctx.Err()
		}
		return n * 2, nil
	}, step.MaxCrashes(0))
	def := flow.MustDefine("released", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, s) })
	e := newEnv(t, def)
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, 21)
	if err != nil {
		t.Fatal(err)
	}
	sup, err := supervisor.New(e.client, &supervisor.Config{PollInterval: 5 * time.Millisecond, ShutdownGrace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- sup.Run(ctx) }()
	<-started
	cancel()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	steps, _ := r.Steps(waitCtx(t))
	if len(steps) != 1 || steps[0].Status != backend.JobPending || steps[0].CrashReruns != 0 {
		t.Fatalf("after a graceful release: %+v; want pending with no crash counted", steps)
	}
	startSupervisor(t, e.client, nil)
	if out, err := r.Wait(waitCtx(t)); err != nil || out != 42 {
		t.Fatalf("out = %d, %v; want 42", out, err)
	}
}
