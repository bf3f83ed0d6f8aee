package readmodel_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/internal/testdb"
	"github.com/ductwork-go/ductwork/internal/windowtest"
	"github.com/ductwork-go/ductwork/readmodel"
)

// TestExecutions: a run's executions are listed oldest first with their
// outcome, error and process; filters by node and step instance keep the
// matching ones; keyset pages cover them once.
func TestExecutions(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *windowtest.Env) {
		c := e.Client(t)
		e.Supervise(t, c)
		bad := "exec-bad-" + e.Kind
		windowtest.Refuse(bad)
		t.Cleanup(func() { windowtest.Heal(bad) })
		halted := e.Trigger(t, c, "a", bad)
		// The run halts when charge[1] fails; charge[0] may end after (until
		// then it is listed, as running).
		testdb.WaitFor(t, 30*time.Second, "three finished executions", func() bool {
			p, err := e.Store.Executions(t.Context(), &readmodel.ExecutionFilter{RunID: halted})
			if err != nil || len(p.Executions) != 3 {
				return false
			}
			for _, x := range p.Executions {
				if x.Outcome == "running" {
					return false
				}
			}
			return true
		})
		ctx := ctxFor(t)

		page, err := e.Store.Executions(ctx, &readmodel.ExecutionFilter{RunID: halted})
		if err != nil {
			t.Fatal(err)
		}
		got := page.Executions
		if len(got) != 3 || page.Next != 0 {
			t.Fatalf("executions of run %d: %+v; want receive and two charges", halted, got)
		}
		if got[0].Node != "receive" || got[0].Outcome != "completed" || got[0].Attempt != 1 || got[0].ProcessID != "window-"+e.Kind {
			t.Errorf("first execution %+v; want receive, completed, attempt 1, by the supervisor", got[0])
		}
		failed := 0
		for _, x := range got[1:] {
			if x.Node != "charge" || x.StartedAt.IsZero() || x.FinishedAt.Before(x.StartedAt.Time) || x.Duration() < 0 {
				t.Errorf("execution %+v: want a charge with its start and end", x)
			}
			if x.Outcome == "failed" {
				failed++
				if !strings.Contains(x.Error, "card declined for "+bad) || x.Scope != "1" {
					t.Errorf("failed execution %+v; want the decline of item 1", x)
				}
			}
		}
		if failed != 1 {
			t.Errorf("%d failed executions; want 1", failed)
		}
		charges, err := e.Store.Executions(ctx, &readmodel.ExecutionFilter{RunID: halted, Node: "charge"})
		if err != nil {
			t.Fatal(err)
		}
		if len(charges.Executions) != 2 {
			t.Errorf("node filter: %d executions; want 2", len(charges.Executions))
		}
		one, err := e.Store.Executions(ctx, &readmodel.ExecutionFilter{RunID: halted, JobID: got[2].JobID})
		if err != nil {
			t.Fatal(err)
		}
		if len(one.Executions) != 1 || one.Executions[0].ID != got[2].ID {
			t.Errorf("job filter: %+v; want execution %d", one.Executions, got[2].ID)
		}
		var paged []int64
		f := readmodel.ExecutionFilter{RunID: halted, Limit: 2}
		for {
			p, err := e.Store.Executions(ctx, &f)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range p.Executions {
				paged = append(paged, x.ID)
			}
			if p.Next == 0 {
				break
			}
			f.After = p.Next
		}
		if len(paged) != 3 || paged[0] != got[0].ID || paged[2] != got[2].ID {
			t.Errorf("pages of 2: %v; want the 3 executions once, in order", paged)
		}
		none, err := e.Store.Executions(ctx, &readmodel.ExecutionFilter{RunID: halted + 1000})
		if err != nil || len(none.Executions) != 0 {
			t.Errorf("unknown run: %+v, %v; want an empty page", none, err)
		}
	})
}

// TestRunsByKey: the key filter keeps the run triggered with that key
// (ductwork.WithKey), alone or with the pipeline.
func TestRunsByKey(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *windowtest.Env) {
		c := e.Client(t)
		ctx := ctxFor(t)
		keyed, err := ductwork.Trigger(ctx, c, windowtest.Orders, []string{"a"}, ductwork.WithKey("order-77"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ductwork.Trigger(ctx, c, windowtest.Orders, []string{"b"}, ductwork.WithKey("order-78")); err != nil {
			t.Fatal(err)
		}
		if _, err := ductwork.Trigger(ctx, c, windowtest.Orders, []string{"c"}); err != nil {
			t.Fatal(err)
		}
		for _, f := range []readmodel.RunFilter{{Key: "order-77"}, {Key: "order-77", Pipeline: "orders"}, {Key: "order-77", Statuses: []ductworktype.RunStatus{ductworktype.RunRunning}}} {
			p, err := e.Store.Runs(ctx, &f)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Runs) != 1 || p.Runs[0].ID != keyed.ID {
				t.Errorf("runs %+v: %v; want run %d", f, ids(p), keyed.ID)
			}
		}
		for _, f := range []readmodel.RunFilter{{Key: "order-7"}, {Key: "order-77", Pipeline: "other"}} {
			p, err := e.Store.Runs(ctx, &f)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Runs) != 0 {
				t.Errorf("runs %+v: %v; want none", f, ids(p))
			}
		}
	})
}
