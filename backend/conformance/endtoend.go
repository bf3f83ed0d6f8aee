package conformance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

func testEndToEnd(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"EveryTransition":      endToEndEveryTransition,
		"CancelWithPrefetch":   endToEndCancelPrefetch,
		"CancelElsewhere":      endToEndCancelElsewhere,
		"IdempotencyKeyUnique": endToEndIdempotencyKeys,
		"TimeoutAbandons":      endToEndTimeoutAbandons,
		"TimeoutCooperative":   endToEndTimeoutCooperative,
		"ShutdownAbandons":     endToEndShutdownAbandons,
	})
}

// e2ePart is what the branches of the divide hand to the combine.
type e2ePart struct {
	N    int    `json:"n"`
	Text string `json:"text"`
}

// e2eResult is the pipeline's output.
type e2eResult struct {
	Count int      `json:"count"`
	Items []string `json:"items"`
}

// e2ePipeline is a pipeline using every transition:
//
//	source ─Expand─► element ─Divide2─► left ─► left-2 ─► left-3 ─┐
//	                                 └► right ──────────────────┴─Combine─► combine
//	combine ─Divert─► fizz (n%3 == 0) | plain (Otherwise) ─Converge─► converge
//	converge ─Collapse─► collapse ─Chain─► finish
//
// Every execution is counted in execs.
func e2ePipeline(name string, execs *e2eExecs) *flow.Definition[[]int, e2eResult] {
	source := step.New("source", func(ctx step.Context, in []int) ([]int, error) {
		execs.add(ctx)
		return in, nil
	})
	element := step.New("element", func(ctx step.Context, n int) (int, error) {
		execs.add(ctx)
		return n, nil
	})
	left := step.New("left", func(ctx step.Context, n int) (e2ePart, error) {
		execs.add(ctx)
		return e2ePart{N: n, Text: fmt.Sprintf("L%d", n)}, nil
	})
	left2 := step.New("left-2", func(ctx step.Context, p e2ePart) (e2ePart, error) {
		execs.add(ctx)
		p.Text += "a"
		return p, nil
	})
	left3 := step.New("left-3", func(ctx step.Context, p e2ePart) (e2ePart, error) {
		execs.add(ctx)
		p.Text += "b"
		return p, nil
	})
	right := step.New("right", func(ctx step.Context, n int) (e2ePart, error) {
		execs.add(ctx)
		return e2ePart{N: n, Text: fmt.Sprintf("R%d", n*n)}, nil
	})
	combine := step.New("combine", func(ctx step.Context, parts []e2ePart) (e2ePart, error) {
		execs.add(ctx)
		if len(parts) != 2 || parts[0].N != parts[1].N {
			return e2ePart{}, step.Permanent(fmt.Errorf("combine got %+v; want the two branches of one element", parts))
		}
		return e2ePart{N: parts[0].N, Text: parts[0].Text + "+" + parts[1].Text}, nil
	})
	fizz := step.New("fizz", func(ctx step.Context, p e2ePart) (string, error) {
		execs.add(ctx)
		return "fizz:" + p.Text, nil
	})
	plain := step.New("plain", func(ctx step.Context, p e2ePart) (string, error) {
		execs.add(ctx)
		return "plain:" + p.Text, nil
	})
	converge := step.New("converge", func(ctx step.Context, s string) (string, error) {
		execs.add(ctx)
		return "<" + s + ">", nil
	})
	collapse := step.New("collapse", func(ctx step.Context, items []string) ([]string, error) {
		execs.add(ctx)
		if items == nil {
			return nil, step.Permanent(errors.New("collapse got a nil slice; want an empty one for an empty expansion"))
		}
		return items, nil
	})
	finish := step.New("finish", func(ctx step.Context, items []string) (e2eResult, error) {
		execs.add(ctx)
		return e2eResult{Count: len(items), Items: items}, nil
	})
	return flow.MustDefine(name, func(p *flow.Pipeline[[]int]) flow.End[e2eResult] {
		x := flow.Expand(flow.Start(p, source), element)
		l, r := flow.Divide2(x, left, right)
		joined := flow.Combine(combine, flow.Chain(flow.Chain(l, left2), left3), r)
		d := flow.Divert(joined, func(p e2ePart) string {
			if p.N%3 == 0 {
				return "fizz"
			}
			return fmt.Sprintf("rest-%d", p.N%3) // no such case: Otherwise
		})
		c := flow.Converge(converge, flow.Case(d, "fizz", fizz), flow.Otherwise(d, plain))
		return flow.Chain(flow.Collapse(c, collapse), finish)
	})
}

// e2eExecs counts executions per run and step instance.
type e2eExecs struct {
	mu sync.Mutex
	n  map[int64]map[int64]int // run ID -> step ID -> executions
}

func (e *e2eExecs) add(ctx step.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n = map[int64]map[int64]int{}
	}
	if e.n[ctx.RunID()] == nil {
		e.n[ctx.RunID()] = map[int64]int{}
	}
	e.n[ctx.RunID()][ctx.StepID()]++
}

// of returns the executions of one run's step instances.
func (e *e2eExecs) of(runID int64) map[int64]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.n[runID])
}

// e2eExpect computes the pipeline's output for in independently of it.
func e2eExpect(in []int) e2eResult {
	items := make([]string, len(in))
	for i, n := range in {
		text := fmt.Sprintf("L%dab+R%d", n, n*n)
		if n%3 == 0 {
			items[i] = "<fizz:" + text + ">"
		} else {
			items[i] = "<plain:" + text + ">"
		}
	}
	return e2eResult{Count: len(in), Items: items}
}

// e2eWantSteps returns how many step instances of each node a run with in
// creates.
func e2eWantSteps(in []int) map[string]int {
	want := map[string]int{"source": 1, "collapse": 1, "finish": 1}
	for _, n := range in {
		for _, node := range []string{"element", "left", "left-2", "left-3", "right", "combine", "converge"} {
			want[node]++
		}
		if n%3 == 0 {
			want["fizz"]++
		} else {
			want["plain"]++
		}
	}
	return want
}

// endToEndEveryTransition: a real client and supervisor on the backend run a
// pipeline that uses every transition, with an expansion of 20 elements and
// with an empty one. The output is exact, and every step instance was
// committed once and executed once.
func endToEndEveryTransition(t *testing.T, h Harness) {
	b := newBackend(t, h)
	quiet := slog.New(slog.DiscardHandler)
	execs := &e2eExecs{}
	def := e2ePipeline(randomID(t, "conformance-e2e"), execs)
	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quiet})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if err := client.Register(def); err != nil {
		t.Fatalf("Register: %v", err)
	}
	startSupervisor(t, client, &supervisor.Config{PollInterval: 5 * time.Millisecond, Logger: quiet})

	// 20 elements in an order that is neither sorted nor the completion
	// order, so the collapse must restore index order.
	in := make([]int, 20)
	for i := range in {
		in[i] = (i*7 + 3) % 20
	}
	for _, input := range [][]int{in, {}} {
		t.Run(fmt.Sprintf("%d elements", len(input)), func(t *testing.T) {
			run, err := ductwork.Trigger(testCtx(t), client, def, input)
			if err != nil {
				t.Fatalf("Trigger: %v", err)
			}
			out, err := run.Wait(testCtx(t))
			if err != nil {
				t.Fatalf("run %d: %v", run.ID, err)
			}
			want := e2eExpect(input)
			if out.Count != want.Count || !reflect.DeepEqual(out.Items, want.Items) {
				t.Errorf("output = %+v\nwant     %+v", out, want)
			}
			if out.Items == nil {
				t.Errorf("output items are nil; want an empty, non-nil slice from an empty collapse")
			}
			checkE2ESteps(t, client, run.ID, input, execs.of(run.ID))
		})
	}
}

// checkE2ESteps checks that each step instance of the run is completed,
// once, on its first attempt, and that it was executed exactly once (execs:
// step ID -> executions).
func checkE2ESteps(t *testing.T, client *ductwork.Client, runID int64, in []int, execs map[int64]int) {
	t.Helper()
	steps, err := client.Steps(testCtx(t), runID)
	if err != nil {
		t.Fatalf("Steps(run %d): %v", runID, err)
	}
	perNode := map[string]int{}
	instances := map[string]bool{}
	for _, s := range steps {
		perNode[s.Node]++
		id := s.Node + "@" + s.Scope
		if instances[id] {
			t.Errorf("step %s (scope %q) has more than one instance", s.Node, s.Scope)
		}
		instances[id] = true
		if s.Status != backend.JobCompleted || s.Attempt != 1 || s.CrashReruns != 0 || s.FinishedAt == nil || len(s.Output) == 0 {
			t.Errorf("step %s scope %q = {status %q, attempt %d, crash re-runs %d, finished %v, output %s}; want completed once on attempt 1",
				s.Node, s.Scope, s.Status, s.Attempt, s.CrashReruns, s.FinishedAt, short(s.Output))
		}
	}
	want := e2eWantSteps(in)
	if !maps.Equal(perNode, want) {
		t.Errorf("step instances per node = %v; want %v", perNode, want)
	}
	// Each instance ran exactly once: no step executed without committing,
	// none ran twice.
	var ran []string
	for _, s := range steps {
		if n := execs[s.ID]; n != 1 {
			ran = append(ran, fmt.Sprintf("%s scope %q ran %d times", s.Node, s.Scope, n))
		}
		delete(execs, s.ID)
	}
	for id, n := range execs {
		ran = append(ran, fmt.Sprintf("step ID %d, not listed, ran %d times", id, n))
	}
	slices.Sort(ran)
	if len(ran) > 0 {
		t.Errorf("executions differ from one per step instance: %v", ran)
	}
}

// startSupervisor runs a supervisor for client until the test ends.
func startSupervisor(t *testing.T, client *ductwork.Client, cfg *supervisor.Config) *supervisor.Supervisor {
	t.Helper()
	s, err := supervisor.New(client, cfg)
	if err != nil {
		t.Fatalf("supervisor.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("supervisor Run: %v", err)
			}
		case <-time.After(caseTimeout):
			t.Errorf("supervisor Run did not return within %v of shutdown", caseTimeout)
		}
	})
	return s
}
