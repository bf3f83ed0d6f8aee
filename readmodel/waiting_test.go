package readmodel_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/internal/testdb"
	"github.com/ductwork-go/ductwork/internal/windowtest"
	"github.com/ductwork-go/ductwork/readmodel"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

var waitingSignal = flow.Signal[string]("window-go-ahead")

// TestWaitingRunAndSteps: a run whose branch awaits a signal is listed as
// waiting, its await step is waiting and its node's state too; once the
// signal arrives it completes.
func TestWaitingRunAndSteps(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *windowtest.Env) {
		start := step.New("start", func(_ step.Context, n int) (int, error) { return n, nil })
		done := step.New("done", func(_ step.Context, a flow.Awaited[int, string]) (string, error) { return a.Payload, nil })
		def := flow.MustDefine("window-waits", func(p *flow.Pipeline[int]) flow.End[string] {
			return flow.Chain(flow.Await(flow.Start(p, start), waitingSignal, 0), done)
		})
		c, err := ductwork.NewClient(e.Backend, &ductwork.Config{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Register(def); err != nil {
			t.Fatal(err)
		}
		sup, err := supervisor.New(c, &supervisor.Config{PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		stopped := make(chan error, 1)
		go func() { stopped <- sup.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-stopped })

		run, err := ductwork.Trigger(ctxFor(t), c, def, 1)
		if err != nil {
			t.Fatal(err)
		}
		testdb.WaitFor(t, 30*time.Second, "the run to wait", func() bool {
			d, err := e.Store.Run(ctxFor(t), run.ID)
			return err == nil && d.Status == backend.RunWaiting
		})
		page, err := e.Store.Runs(ctxFor(t), &readmodel.RunFilter{Statuses: []ductworktype.RunStatus{ductworktype.RunWaiting}})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Runs) != 1 || page.Runs[0].ID != run.ID {
			t.Fatalf("waiting runs %+v; want run %d", page.Runs, run.ID)
		}
		steps, err := e.Store.Steps(ctxFor(t), run.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		var await *readmodel.Step
		for i := range steps {
			if steps[i].Node == "await:"+waitingSignal.Name() {
				await = &steps[i]
			}
		}
		if await == nil || await.Status != readmodel.StepWaiting || await.Wait != backend.WaitSignal {
			t.Fatalf("await step %+v; want status waiting, wait signal", await)
		}
		shape, err := c.Definition(ctxFor(t), backend.DefinitionRef{Pipeline: def.Name(), Fingerprint: def.Fingerprint()})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range readmodel.Tree(shape, steps) {
			if n.Node.ID == await.Node && (n.State != readmodel.StateWaiting || n.Node.Kind != "await") {
				t.Errorf("await node %s: kind %q, state %q; want await, waiting", n.Node.ID, n.Node.Kind, n.State)
			}
		}
		if err := ductwork.Send(ctxFor(t), c, run.ID, waitingSignal, "go"); err != nil {
			t.Fatal(err)
		}
		if out, err := run.Wait(ctxFor(t)); err != nil || out != "go" {
			t.Fatalf("Wait = %q, %v", out, err)
		}
	})
}
