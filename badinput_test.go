package ductwork_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/postgres"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
	"github.com/jackc/pgx/v5/pgxpool"
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

func TestPayloadLimit(t *testing.T) {
	big := step.New("big", func(_ step.Context, n int) (string, error) { return strings.Repeat("x", n), nil })
	def := flow.MustDefine("payload-limit", func(p *flow.Pipeline[int]) flow.End[string] { return flow.Start(p, big) })
	strDef := flow.MustDefine("payload-limit-in", func(p *flow.Pipeline[string]) flow.End[string] {
		return flow.Start(p, step.New("echo-s", func(_ step.Context, s string) (string, error) { return s, nil }))
	})
	e := newEnv(t, def, strDef)
	client, err := ductwork.NewClient(e.b, &ductwork.Config{Logger: quietLogger(), MaxPayloadBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	_ = client.Register(def, strDef)

	// At trigger: typed error, nothing written.
	_, err = ductwork.Trigger(waitCtx(t), client, strDef, strings.Repeat("y", 200))
	var pe *ductwork.PayloadTooLargeError
	if !errors.As(err, &pe) || pe.Size <= 100 || pe.Max != 100 {
		t.Fatalf("trigger above the limit: %v", err)
	}
	assertNoRuns(t, e)

	// At commit: the run halts with the typed reason and no output is stored.
	startSupervisor(t, client, nil)
	r, err := ductwork.Trigger(waitCtx(t), client, def, 500)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Wait(waitCtx(t))
	var he *ductwork.HaltedError
	if !errors.As(err, &he) || !strings.Contains(he.Reason, "above the limit of 100") || he.Cause != ductwork.HaltTooLarge {
		t.Fatalf("output above the limit: %v", err)
	}
	steps, _ := r.Steps(waitCtx(t))
	if len(steps) != 1 || steps[0].Output != nil {
		t.Fatalf("steps: %+v", steps)
	}
	ok, err := ductwork.Trigger(waitCtx(t), client, def, 50)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := ok.Wait(waitCtx(t)); err != nil || len(out) != 50 {
		t.Fatalf("under the limit: %d bytes, %v", len(out), err)
	}
}

// TestDatabaseUnreachableAtStart: a supervisor whose database does not
// answer keeps retrying registration with backoff (no crash loop, no panic)
// and returns the connection error when its context ends.
func TestDatabaseUnreachableAtStart(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/test?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	b, err := postgres.New(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int32
	logger := slog.New(countingHandler{msg: "cannot register process", n: &attempts})
	client, _ := ductwork.NewClient(b, &ductwork.Config{Logger: logger})
	_ = client.Register(echoDef("unreachable"))
	s, err := supervisor.New(client, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = s.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "register process") {
		t.Fatalf("Run against an unreachable database: %v", err)
	}
	if n := attempts.Load(); n < 2 || n > 10 {
		t.Fatalf("%d registration attempts in 2s; want a few, with backoff", n)
	}
}

// countingHandler counts log records whose message contains msg.
type countingHandler struct {
	msg string
	n   *atomic.Int32
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.msg) {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }
