package ductwork_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

var echo = step.New("echo", func(_ step.Context, n int) (int, error) { return n, nil })

func echoDef(name string, extra ...step.Step[int, int]) *flow.Definition[int, int] {
	return flow.MustDefine(name, func(p *flow.Pipeline[int]) flow.End[int] {
		n := flow.Start(p, echo)
		for _, s := range extra {
			n = flow.Chain(n, s)
		}
		return n
	})
}

func TestTriggerTxRolledBackLeavesNoRun(t *testing.T) {
	def := echoDef("tx")
	e := newEnv(t, def)
	tx, err := e.b.DB().BeginTx(waitCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ductwork.TriggerTx(waitCtx(t), e.client, tx, def, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	assertNoRuns(t, e)
	if _, err := r.Status(waitCtx(t)); !errors.Is(err, ductwork.ErrRunNotFound) {
		t.Fatalf("status of a rolled-back run: %v", err)
	}

	// Committed, it runs.
	tx, _ = e.b.DB().BeginTx(waitCtx(t), nil)
	r, err = ductwork.TriggerTx(waitCtx(t), e.client, tx, def, 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	startSupervisor(t, e.client, nil)
	if out, err := r.Wait(waitCtx(t)); err != nil || out != 7 {
		t.Fatalf("out %d, %v", out, err)
	}
}

func TestTriggerTxWrongType(t *testing.T) {
	def := echoDef("tx-type")
	e := newEnv(t, def)
	if _, err := ductwork.TriggerTx(waitCtx(t), e.client, "not a tx", def, 1); !errors.Is(err, ductwork.ErrUnsupportedTx) {
		t.Fatalf("err = %v, want ErrUnsupportedTx", err)
	}
	if _, err := ductwork.TriggerTx(waitCtx(t), e.client, nil, def, 1); !errors.Is(err, ductwork.ErrUnsupportedTx) {
		t.Fatalf("nil tx: err = %v, want ErrUnsupportedTx", err)
	}
	assertNoRuns(t, e)
}

func TestClosedDatabase(t *testing.T) {
	def := echoDef("closed")
	e := newEnv(t, def)
	if err := e.b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := ductwork.Trigger(waitCtx(t), e.client, def, 1); !errors.Is(err, ductwork.ErrClosed) {
		t.Fatalf("trigger on a closed database: %v, want ErrClosed", err)
	}
	s, err := supervisor.New(e.client, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(waitCtx(t)); !errors.Is(err, ductwork.ErrClosed) {
		t.Fatalf("supervisor on a closed database: %v, want ErrClosed", err)
	}
}

// TestDefinitionDrift: a run started by version 1 of a pipeline is neither
// claimed nor mis-routed by a process that only knows version 2; it is
// reported as stranded, Open names the mismatch, and it completes once a
// process with version 1 runs.
func TestDefinitionDrift(t *testing.T) {
	extra := step.New("extra", func(_ step.Context, n int) (int, error) { return n + 100, nil })
	v1, v2 := echoDef("drift"), echoDef("drift", extra)
	if v1.Fingerprint() == v2.Fingerprint() {
		t.Fatal("versions share a fingerprint")
	}
	e := newEnv(t, v2)
	r1, err := ductwork.Trigger(waitCtx(t), e.client, v1, 5)
	if err != nil {
		t.Fatal(err)
	}
	stranded := make(chan []backend.StrandedDefinition, 1)
	startSupervisor(t, e.client, &supervisor.Config{Hooks: supervisor.Hooks{OnStrandedFunc: func(d []backend.StrandedDefinition) { stranded <- d }}})
	select {
	case d := <-stranded:
		if len(d) != 1 || d[0].Fingerprint != v1.Fingerprint() || d[0].Runs != 1 {
			t.Fatalf("stranded = %+v", d)
		}
	case <-waitCtx(t).Done():
		t.Fatal("stranded definition not reported")
	}
	// The v2 process never claimed it.
	steps, _ := e.client.Steps(waitCtx(t), r1.ID)
	if len(steps) != 1 || steps[0].Status != backend.JobPending {
		t.Fatalf("v1 work was touched by a v2 process: %+v", steps)
	}
	// Open with v2 names the mismatch; with another pipeline too.
	var ude *ductwork.UnknownDefinitionError
	if _, err := ductwork.Open(waitCtx(t), e.client, v2, r1.ID); !errors.As(err, &ude) || ude.Fingerprint != v1.Fingerprint() {
		t.Fatalf("Open(v2) of a v1 run: %v", err)
	}
	if _, err := ductwork.Open(waitCtx(t), e.client, echoDef("other"), r1.ID); !errors.As(err, &ude) {
		t.Fatalf("Open of another pipeline's run: %v", err)
	}
	info, err := e.client.Inspect(waitCtx(t), r1.ID)
	if err != nil || info.Known {
		t.Fatalf("Inspect: %+v %v", info, err)
	}
	// A process that registers v1 too (a rolling deploy) completes it with v1's shape.
	if err := e.client.Register(v1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := startSupervisor(t, e.client, nil)
	s.Wake()
	out, err := r1.Wait(ctx)
	if err != nil || out != 5 {
		t.Fatalf("v1 run: %d, %v (want 5: v1 has no extra step)", out, err)
	}
}
