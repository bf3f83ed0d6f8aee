package conformance

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// detachedPipelines: a real client and supervisor run pipelines whose
// branches end with flow.Detach. Wait returns only once every detached
// branch has finished, with the end node's output.
func detachedPipelines(t *testing.T, h Harness) {
	b := newBackend(t, h)
	quiet := slog.New(slog.DiscardHandler)
	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quiet})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	var (
		divide  = newDetachedDivide(t)
		expand  = newDetachedExpand(t)
		nested  = newDetachedNested(t)
		halting = newDetachedHalting(t)
		cancel  = newDetachedCancelRun(t)
	)
	if err := client.Register(divide.def, expand.def, nested.def, halting.def, cancel.def); err != nil {
		t.Fatalf("Register: %v", err)
	}
	startSupervisor(t, client, &supervisor.Config{PollInterval: 5 * time.Millisecond, Logger: quiet})
	// The subtests share the supervisor, so they run one after another.
	t.Run("DivideDifferentLengths", func(t *testing.T) { divide.check(t, client) })
	t.Run("ExpandNoCollapse", func(t *testing.T) { expand.check(t, client) })
	t.Run("NestedInDivide", func(t *testing.T) { nested.check(t, client) })
	t.Run("HaltRevive", func(t *testing.T) { halting.check(t, client) })
	t.Run("Cancel", func(t *testing.T) { cancel.check(t, client) })
}

// intStep is a step that applies fn.
func intStep[In, Out any](name string, fn func(In) Out) step.Step[In, Out] {
	return step.New(name, func(_ step.Context, in In) (Out, error) { return fn(in), nil })
}

// stepsByNode lists a run's steps and counts its instances per node; it
// fails the test unless every instance is completed.
func stepsByNode(t *testing.T, client *ductwork.Client, runID int64) map[string]int {
	t.Helper()
	steps, err := client.Steps(testCtx(t), runID)
	if err != nil {
		t.Fatalf("Steps(run %d): %v", runID, err)
	}
	per := map[string]int{}
	for _, s := range steps {
		per[s.Node]++
		if s.Status != backend.JobCompleted {
			t.Errorf("step %s scope %q is %q when the run finished; want completed", s.Node, s.Scope, s.Status)
		}
	}
	return per
}

// stepStatus returns the status of the first instance of node in the run,
// "" if there is none.
func stepStatus(t *testing.T, client *ductwork.Client, runID int64, node string) string {
	t.Helper()
	steps, err := client.Steps(testCtx(t), runID)
	if err != nil {
		t.Fatalf("Steps(run %d): %v", runID, err)
	}
	for _, s := range steps {
		if s.Node == node {
			return string(s.Status)
		}
	}
	return ""
}

// detachedDivide: a Divide into three branches: one of three steps and one
// of one step end detached, the third is combined and leads to the end. The
// last step of the long branch waits for release, so the end node finishes
// first and the run must wait for it.
type detachedDivide struct {
	def     *flow.Definition[int, int]
	release chan struct{}
}

func newDetachedDivide(t *testing.T) *detachedDivide {
	d := &detachedDivide{release: make(chan struct{})}
	inc := func(n int) int { return n + 1 }
	last := step.New("long-3", func(ctx step.Context, n int) (int, error) {
		select {
		case <-d.release:
			return n + 1, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	d.def = flow.MustDefine(randomID(t, "detached-divide"), func(p *flow.Pipeline[int]) flow.End[int] {
		src := flow.Start(p, intStep("src", inc))
		br := flow.Divide(src, intStep("long-1", inc), intStep("short", inc), intStep("joined", func(n int) int { return n * 10 }))
		flow.Detach(flow.Chain(flow.Chain(br[0], intStep("long-2", inc)), last))
		flow.Detach(br[1])
		combined := flow.Combine(intStep("combine", func(ns []int) int { return ns[0] + 1 }), br[2])
		return flow.Chain(combined, intStep("end", inc))
	})
	return d
}

func (d *detachedDivide) check(t *testing.T, client *ductwork.Client) {
	run, err := ductwork.Trigger(testCtx(t), client, d.def, 1)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	waitFor(t, time.Minute, "the end node to complete", func() bool {
		return stepStatus(t, client, run.ID, "end") == backend.JobCompleted
	})
	if st, err := run.Status(testCtx(t)); err != nil || st != ductwork.RunRunning {
		t.Fatalf("run status with a detached branch outstanding = %q, %v; want running", st, err)
	}
	close(d.release)
	out, err := run.Wait(testCtx(t))
	if err != nil || out != 22 {
		t.Fatalf("Wait = %d, %v; want the end node's output 22", out, err)
	}
	want := map[string]int{"src": 1, "long-1": 1, "long-2": 1, "long-3": 1, "short": 1, "joined": 1, "combine": 1, "end": 1}
	if got := stepsByNode(t, client, run.ID); !maps.Equal(got, want) {
		t.Errorf("step instances = %v; want %v", got, want)
	}
}

// detachedExpand: an Expand with no Collapse, each branch two steps long,
// opened after the end node (the first step), with 0, 1 and 200 elements
// (Detached/Expansion covers 1,000 branches completed concurrently at the
// backend level; 1,000 here would take minutes on MariaDB under CI load).
type detachedExpand struct {
	def  *flow.Definition[int, []int]
	logs atomic.Int64
}

func newDetachedExpand(t *testing.T) *detachedExpand {
	d := &detachedExpand{}
	d.def = flow.MustDefine(randomID(t, "detached-expand"), func(p *flow.Pipeline[int]) flow.End[[]int] {
		users := flow.Start(p, intStep("users", func(n int) []int {
			ids := make([]int, n)
			for i := range ids {
				ids[i] = i
			}
			return ids
		}))
		sent := flow.Expand(users, intStep("email", func(id int) string { return fmt.Sprintf("mail-%d", id) }))
		flow.Detach(flow.Chain(sent, step.New("log", func(_ step.Context, s string) (string, error) {
			d.logs.Add(1)
			return s, nil
		})))
		return users
	})
	return d
}

func (d *detachedExpand) check(t *testing.T, client *ductwork.Client) {
	for _, n := range []int{0, 1, 200} {
		t.Run(fmt.Sprintf("%d elements", n), func(t *testing.T) {
			before := d.logs.Load()
			run, err := ductwork.Trigger(testCtx(t), client, d.def, n)
			if err != nil {
				t.Fatalf("Trigger: %v", err)
			}
			out, err := run.Wait(testCtx(t))
			if err != nil || len(out) != n {
				t.Fatalf("Wait = %d ids, %v; want %d", len(out), err, n)
			}
			if got := d.logs.Load() - before; got != int64(n) {
				t.Errorf("the run completed after %d of its %d detached branches", got, n)
			}
			want := map[string]int{"users": 1}
			if n > 0 {
				want["email"], want["log"] = n, n
			}
			if got := stepsByNode(t, client, run.ID); !maps.Equal(got, want) {
				t.Errorf("step instances = %v; want %v", got, want)
			}
		})
	}
}

// detachedNested: inside an expansion, a Divide whose first branch expands
// again into detached branches (so that branch ends detached as a whole)
// and whose second branch is combined and collapsed into the end node.
type detachedNested struct {
	def   *flow.Definition[[]int, int]
	items atomic.Int64
}

func newDetachedNested(t *testing.T) *detachedNested {
	d := &detachedNested{}
	d.def = flow.MustDefine(randomID(t, "detached-nested"), func(p *flow.Pipeline[[]int]) flow.End[int] {
		groups := flow.Expand(flow.Start(p, intStep("sizes", func(s []int) []int { return s })),
			intStep("group", func(size int) []int { return make([]int, size) }))
		fan, count := flow.Divide2(groups, intStep("fan", func(g []int) []int { return g }),
			intStep("count", func(g []int) int { return len(g) }))
		flow.Detach(flow.Expand(fan, step.New("item", func(_ step.Context, v int) (int, error) {
			d.items.Add(1)
			return v, nil
		})))
		counted := flow.Combine(intStep("counted", func(ns []int) int { return ns[0] }), count)
		return flow.Collapse(counted, intStep("total", func(ns []int) int {
			sum := 0
			for _, n := range ns {
				sum += n
			}
			return sum
		}))
	})
	return d
}

func (d *detachedNested) check(t *testing.T, client *ductwork.Client) {
	sizes := []int{3, 0, 2}
	run, err := ductwork.Trigger(testCtx(t), client, d.def, sizes)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	out, err := run.Wait(testCtx(t))
	if err != nil || out != 5 {
		t.Fatalf("Wait = %d, %v; want 5", out, err)
	}
	if got := d.items.Load(); got != 5 {
		t.Errorf("the run completed after %d of its 5 nested detached branches", got)
	}
	want := map[string]int{"sizes": 1, "group": 3, "fan": 3, "count": 3, "item": 5, "counted": 3, "total": 1}
	if got := stepsByNode(t, client, run.ID); !maps.Equal(got, want) {
		t.Errorf("step instances = %v; want %v", got, want)
	}
}

// detachedHalting: a detached branch whose step fails for good on its first
// execution halts the run; Revive runs it again and the run completes with
// the end node's output.
type detachedHalting struct {
	def   *flow.Definition[int, int]
	tries atomic.Int64
}

func newDetachedHalting(t *testing.T) *detachedHalting {
	d := &detachedHalting{}
	flaky := step.New("flaky", func(_ step.Context, n int) (int, error) {
		if d.tries.Add(1) == 1 {
			return 0, step.Permanent(errors.New("first try fails"))
		}
		return n, nil
	})
	d.def = flow.MustDefine(randomID(t, "detached-halting"), func(p *flow.Pipeline[int]) flow.End[int] {
		side, main := flow.Divide2(flow.Start(p, intStep("src", func(n int) int { return n })), flaky,
			intStep("main", func(n int) int { return n * 2 }))
		flow.Detach(side)
		return flow.Combine(intStep("end", func(ns []int) int { return ns[0] + 1 }), main)
	})
	return d
}

func (d *detachedHalting) check(t *testing.T, client *ductwork.Client) {
	run, err := ductwork.Trigger(testCtx(t), client, d.def, 20)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	var halted *ductwork.HaltedError
	if _, err := run.Wait(testCtx(t)); !errors.As(err, &halted) {
		t.Fatalf("Wait = %v; want *HaltedError from the detached branch", err)
	}
	if err := client.Revive(testCtx(t), run.ID); err != nil {
		t.Fatalf("Revive: %v", err)
	}
	out, err := run.Wait(testCtx(t))
	if err != nil || out != 41 {
		t.Fatalf("Wait after Revive = %d, %v; want 41", out, err)
	}
	if got := d.tries.Load(); got != 2 {
		t.Errorf("the detached step ran %d times; want 2 (failed, then revived)", got)
	}
}

// detachedCancelRun: cancelling a run while a detached branch is in flight
// stops that branch: the step after it never runs.
type detachedCancelRun struct {
	def              *flow.Definition[int, int]
	started, release chan struct{}
	after            atomic.Int64
}

func newDetachedCancelRun(t *testing.T) *detachedCancelRun {
	d := &detachedCancelRun{started: make(chan struct{}), release: make(chan struct{})}
	blocker := step.New("blocker", func(ctx step.Context, n int) (int, error) {
		close(d.started)
		select {
		case <-d.release:
		case <-ctx.Done():
		}
		return n, nil
	})
	d.def = flow.MustDefine(randomID(t, "detached-cancel"), func(p *flow.Pipeline[int]) flow.End[int] {
		src := flow.Start(p, intStep("src", func(n int) int { return n }))
		flow.Detach(flow.Chain(flow.Divide(src, blocker)[0], step.New("after", func(_ step.Context, n int) (int, error) {
			d.after.Add(1)
			return n, nil
		})))
		return src
	})
	return d
}

func (d *detachedCancelRun) check(t *testing.T, client *ductwork.Client) {
	run, err := ductwork.Trigger(testCtx(t), client, d.def, 1)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	select {
	case <-d.started:
	case <-testCtx(t).Done():
		t.Fatal("the detached branch never started")
	}
	if err := client.Cancel(testCtx(t), run.ID, "stop the detached branch"); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	close(d.release)
	waitFor(t, time.Minute, "the in-flight detached step to finish", func() bool {
		return stepStatus(t, client, run.ID, "blocker") != backend.JobRunning
	})
	if _, err := run.Wait(testCtx(t)); !errors.Is(err, ductwork.ErrCancelled) {
		t.Fatalf("Wait = %v; want ErrCancelled", err)
	}
	if st := stepStatus(t, client, run.ID, "after"); d.after.Load() != 0 || st == backend.JobRunning || st == backend.JobCompleted {
		t.Fatalf("the step after the cancelled detached branch ran (%d executions, status %q)", d.after.Load(), st)
	}
}
