package windowtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/internal/testdb"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// failing holds the items the charge step refuses, until Heal.
var failing sync.Map

// Refuse makes the charge step fail for item (with its text in the error)
// until Heal.
func Refuse(item string) { failing.Store(item, true) }

// panicking holds the items the charge step panics on, until Heal.
var panicking sync.Map

// Explode makes the charge step panic for item (with its text in the panic
// value, so the failure carries a stack) until Heal.
func Explode(item string) { panicking.Store(item, true) }

// Heal lets the charge step succeed for item again.
func Heal(item string) { failing.Delete(item); panicking.Delete(item) }

// Receive, Charge and Report are the steps of Orders.
var (
	Receive = step.New("receive", func(_ step.Context, items []string) ([]string, error) { return items, nil })
	Charge  = step.New("charge", func(_ step.Context, item string) (string, error) {
		if _, boom := panicking.Load(item); boom {
			panic("charge exploded on " + item)
		}
		if _, bad := failing.Load(item); bad {
			return "", fmt.Errorf("card declined for %s", item)
		}
		return "charged " + item, nil
	}, step.Retries(0))
	Report = step.New("report", func(_ step.Context, done []string) (int, error) { return len(done), nil })
)

// Orders is the pipeline of the window tests: receive, one charge per item
// (an expansion), report (its collapse).
var Orders = flow.MustDefine("orders", func(p *flow.Pipeline[[]string]) flow.End[int] {
	items := flow.Start(p, Receive)
	charged := flow.Expand(items, Charge)
	return flow.Collapse(charged, Report)
})

// Quiet is a logger that discards everything.
var Quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Client returns a client on e's backend with Orders registered.
func (e *Env) Client(t *testing.T) *ductwork.Client {
	t.Helper()
	c, err := ductwork.NewClient(e.Backend, &ductwork.Config{Logger: Quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(Orders); err != nil {
		t.Fatal(err)
	}
	return c
}

// Supervise runs a supervisor on c until the test ends, and waits until
// its process row exists.
func (e *Env) Supervise(t *testing.T, c *ductwork.Client) {
	t.Helper()
	s, err := supervisor.New(c, &supervisor.Config{PollInterval: 5 * time.Millisecond, Logger: Quiet, ProcessID: "window-" + e.Kind})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("supervisor: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("supervisor did not stop within 30s")
		}
	})
	testdb.WaitFor(t, 30*time.Second, "the supervisor's process row and stored definition", func() bool {
		ps, err := e.Store.Processes(t.Context())
		if err != nil || len(ps) == 0 {
			return false
		}
		_, err = e.Store.Shape(t.Context(), backend.DefinitionRef{Pipeline: Orders.Name(), Fingerprint: Orders.Fingerprint()})
		return err == nil
	})
}

// Trigger starts a run of Orders over items and waits until it is no
// longer running.
func (e *Env) Trigger(t *testing.T, c *ductwork.Client, items ...string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r, err := ductwork.Trigger(ctx, c, Orders, items)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = r.Wait(ctx)
	if ctx.Err() != nil {
		t.Fatalf("run %d did not finish", r.ID)
	}
	return r.ID
}

// Decision is the payload of the Approval signal.
type Decision struct {
	OK bool   `json:"ok"`
	By string `json:"by"`
}

// Approval is the signal the Approvals pipeline awaits.
var Approval = flow.Signal[Decision]("approval")

// Approvals is a pipeline that waits for a person: ask, await Approval
// (no timeout), then decide.
var Approvals = flow.MustDefine("approvals", func(p *flow.Pipeline[string]) flow.End[string] {
	asked := flow.Start(p, step.New("ask", func(_ step.Context, what string) (string, error) { return what, nil }))
	answered := flow.Await(asked, Approval, 0)
	return flow.Chain(answered, step.New("decide", func(_ step.Context, a flow.Awaited[string, Decision]) (string, error) {
		if a.Payload.OK {
			return a.Input + " approved by " + a.Payload.By, nil
		}
		return a.Input + " refused by " + a.Payload.By, nil
	}))
})
