package ductwork_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

// TestExecutionHistoryOutcomes: the engine's failures reach the execution
// history with the right outcome: a step that exceeds its step.Timeout is a
// timeout, retried once (a failed execution per attempt), then the run halts;
// a step that errors is failed; the history holds one row per attempt.
func TestExecutionHistoryOutcomes(t *testing.T) {
	slow := step.New("slow", func(ctx step.Context, n int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, step.Timeout(50*time.Millisecond), step.Retries(1), step.Backoff(time.Millisecond, time.Millisecond))
	flaky := step.New("flaky", func(ctx step.Context, n int) (int, error) {
		if ctx.Attempt() == 1 {
			return 0, errors.New("first attempt fails")
		}
		return n, nil
	}, step.Retries(1), step.Backoff(time.Millisecond, time.Millisecond))
	timeouts := flow.MustDefine("history-timeout", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, slow) })
	retried := flow.MustDefine("history-retry", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, flaky) })
	e := newEnv(t, timeouts, retried)
	startSupervisor(t, e.client, nil)

	r1, err := ductwork.Trigger(waitCtx(t), e.client, timeouts, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r1.Wait(waitCtx(t)); err == nil {
		t.Fatal("the timed-out run completed")
	}
	r2, err := ductwork.Trigger(waitCtx(t), e.client, retried, 2)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := r2.Wait(waitCtx(t)); err != nil || out != 2 {
		t.Fatalf("retried run: %d, %v", out, err)
	}
	for _, c := range []struct {
		run  int64
		want []backend.Outcome
		err  string
	}{
		{r1.ID, []backend.Outcome{backend.OutcomeTimeout, backend.OutcomeTimeout}, "timeout"},
		{r2.ID, []backend.Outcome{backend.OutcomeFailed, backend.OutcomeCompleted}, "first attempt fails"},
	} {
		res, err := e.b.ListExecutions(waitCtx(t), &backend.ListExecutionsParams{RunID: c.run})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Executions) != len(c.want) {
			t.Fatalf("run %d: %d executions; want %d", c.run, len(res.Executions), len(c.want))
		}
		for i, x := range res.Executions {
			if x.Outcome != c.want[i] || x.Attempt != i+1 {
				t.Errorf("run %d execution %d: outcome %s attempt %d; want %s, attempt %d", c.run, i, x.Outcome, x.Attempt, c.want[i], i+1)
			}
		}
		if !strings.Contains(res.Executions[0].Error, c.err) {
			t.Errorf("run %d: first execution's error %q; want it to mention %q", c.run, res.Executions[0].Error, c.err)
		}
	}
}
