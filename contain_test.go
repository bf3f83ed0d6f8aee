package ductwork_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

var allBackends = []string{"sqlite", "postgres", "mysql"}

type card struct{ Country string }

type payment struct {
	Amount int
	Card   *card
}

// TestDivertKeyPanicHaltsRun: a divert key function that dereferences a nil
// field panics on every attempt. The supervisor (in this test process)
// survives, the run halts after its retries with a panic cause, the node,
// the attempt count and the stack apart from the reason, and the same
// supervisor goes on to complete a run whose key does not panic.
func TestDivertKeyPanicHaltsRun(t *testing.T) {
	for _, kind := range allBackends {
		t.Run(kind, func(t *testing.T) {
			var charged atomic.Int32
			charge := step.New("charge", func(_ step.Context, p payment) (payment, error) { charged.Add(1); return p, nil })
			domestic := step.New("domestic", func(_ step.Context, p payment) (string, error) { return "domestic", nil })
			abroad := step.New("abroad", func(_ step.Context, p payment) (string, error) { return "abroad", nil })
			done := step.New("done", func(_ step.Context, s string) (string, error) { return s, nil })
			var halts atomic.Int32
			var haltInfo atomic.Pointer[flow.Halt]
			def := flow.MustDefine("divert-panic", func(p *flow.Pipeline[payment]) flow.End[string] {
				d := flow.Divert(flow.Start(p, charge), func(p payment) string { return p.Card.Country })
				return flow.Converge(done, flow.Case(d, "FR", domestic), flow.Otherwise(d, abroad))
			}, flow.Retries(2), flow.Backoff(time.Millisecond, 5*time.Millisecond), flow.OnHalt(func(_ context.Context, h flow.Halt) {
				halts.Add(1)
				haltInfo.Store(&h)
			}))

			b, _ := openCrashBackend(t, kind)
			client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			if err := client.Register(def); err != nil {
				t.Fatal(err)
			}
			startSupervisor(t, client, nil)

			r, err := ductwork.Trigger(waitCtx(t), client, def, payment{Amount: 10})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Wait(waitCtx(t))
			var he *ductwork.HaltedError
			if !errors.As(err, &he) {
				t.Fatalf("Wait = %v; want *HaltedError", err)
			}
			if he.Cause != ductwork.HaltPanic || he.Node != "charge" || he.Scope != "" || he.Attempt != 3 {
				t.Fatalf("halt = {cause %q, node %q, scope %q, attempt %d}; want {panic, charge, \"\", 3}", he.Cause, he.Node, he.Scope, he.Attempt)
			}
			var pe *ductwork.PanicError
			if !errors.As(err, &pe) || !strings.Contains(he.Reason, "nil pointer dereference") {
				t.Fatalf("err %v (reason %q): want a *PanicError for the nil dereference", err, he.Reason)
			}
			if !strings.Contains(he.Stack, "contain_test.go") || strings.Contains(he.Reason, "goroutine ") || len(he.Reason) > 512 {
				t.Fatalf("stack %q / reason %q: want the stack (pointing at the key func) apart from a short reason", he.Stack, he.Reason)
			}
			if n := charged.Load(); n != 3 {
				t.Fatalf("charge ran %d times; want 3 (the first attempt and 2 retries)", n)
			}
			waitFor(t, func() bool { return halts.Load() == 1 })
			if h := haltInfo.Load(); h.Cause != backend.HaltPanic || h.Node != "charge" || !errors.As(h.Err, &pe) {
				t.Fatalf("OnHalt got %+v; want the panic at charge", h)
			}
			steps, err := r.Steps(waitCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if len(steps) != 1 || steps[0].Status != backend.JobFailed || steps[0].Attempt != 3 || !strings.Contains(steps[0].Stack, "contain_test.go") {
				t.Fatalf("steps = %+v; want charge failed on attempt 3 with its stack", steps)
			}

			// The supervisor is still alive and working.
			r2, err := ductwork.Trigger(waitCtx(t), client, def, payment{Amount: 5, Card: &card{Country: "FR"}})
			if err != nil {
				t.Fatal(err)
			}
			if out, err := r2.Wait(waitCtx(t)); err != nil || out != "domestic" {
				t.Fatalf("second run: %q, %v; want domestic", out, err)
			}
		})
	}
}

// panicCodec panics when asked to encode the value "poison" or to decode
// the value "bomb".
type panicCodec struct{ step.Codec }

func (c panicCodec) Unmarshal(data []byte, v any) error {
	if string(data) == `"bomb"` {
		panic("codec cannot decode a bomb")
	}
	return c.Codec.Unmarshal(data, v)
}

func (c panicCodec) Marshal(v any) ([]byte, error) {
	if s, ok := v.(string); ok && s == "poison" {
		panic("codec cannot take poison")
	}
	return c.Codec.Marshal(v)
}

// panicHooks panic on every call.
type panicHooks struct{}

func (panicHooks) StepStart(context.Context, *ductworktype.Execution) (context.Context, func(ductworktype.StepEnd)) {
	panic("step hook")
}
func (panicHooks) RunHalted(context.Context, *ductworktype.Execution, string) { panic("halt hook") }
func (panicHooks) Claimed(context.Context, string, []*ductworktype.Execution) { panic("claim hook") }

// TestCodecAndHookPanicsAreContained: a codec that panics on a step's
// output or while decoding its input (and, at Trigger, on an input: an
// *EncodeError) halts that run with a panic cause; hooks that panic on every call
// are logged and skipped; OnHalt panicking does not matter either. The
// process survives all of it (SQLite; the containment is in the engine).
func TestCodecAndHookPanicsAreContained(t *testing.T) {
	emit := step.New("emit", func(_ step.Context, s string) (string, error) { return s + "son", nil })
	def := flow.MustDefine("codec-panic", func(p *flow.Pipeline[string]) flow.End[string] {
		return flow.Start(p, emit)
	}, flow.WithCodec(panicCodec{step.JSON}), flow.Retries(1), flow.Backoff(time.Millisecond, time.Millisecond),
		flow.OnHalt(func(context.Context, flow.Halt) { panic("on halt") }))
	e := newEnv(t)
	c, err := ductwork.NewClient(e.b, &ductwork.Config{Logger: quietLogger(), Hooks: []ductwork.Hook{panicHooks{}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(def); err != nil {
		t.Fatal(err)
	}
	var ee *ductwork.EncodeError
	if _, err := ductwork.Trigger(waitCtx(t), c, def, "poison"); !errors.As(err, &ee) {
		t.Fatalf("Trigger with an input the codec panics on = %v; want *EncodeError", err)
	}
	startSupervisor(t, c, nil)
	r, err := ductwork.Trigger(waitCtx(t), c, def, "poi") // the step's output is "poison"
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Wait(waitCtx(t))
	var he *ductwork.HaltedError
	if !errors.As(err, &he) || he.Cause != ductwork.HaltPanic || he.Attempt != 2 || !strings.Contains(he.Reason, "codec cannot take poison") {
		t.Fatalf("Wait = %v; want a panic halt on attempt 2", err)
	}
	// A stored input the codec panics on while decoding it.
	rb, err := ductwork.Trigger(waitCtx(t), c, def, "bomb")
	if err != nil {
		t.Fatal(err)
	}
	_, err = rb.Wait(waitCtx(t))
	var de *ductwork.DecodeError
	if !errors.As(err, &he) || he.Cause != ductwork.HaltPanic || he.Attempt != 2 || !errors.As(err, &de) || !strings.Contains(he.Reason, "cannot decode a bomb") {
		t.Fatalf("Wait = %v; want a panic halt while decoding, on attempt 2", err)
	}
	r2, err := ductwork.Trigger(waitCtx(t), c, def, "fine")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := r2.Wait(waitCtx(t)); err != nil || out != "fineson" {
		t.Fatalf("second run: %q, %v", out, err)
	}
}

// TestPermanentStepErrorIsReachable: Wait's *HaltedError wraps the error the
// step returned, so errors.Is finds the step's own sentinel, and
// step.IsPermanent holds.
func TestPermanentStepErrorIsReachable(t *testing.T) {
	errDeclined := errors.New("card declined")
	s := step.New("pay", func(_ step.Context, n int) (int, error) { return 0, step.Permanent(errDeclined) })
	def := flow.MustDefine("declined", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, s) })
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, _ := ductwork.Trigger(waitCtx(t), e.client, def, 1)
	_, err := r.Wait(waitCtx(t))
	var he *ductwork.HaltedError
	if !errors.As(err, &he) || he.Cause != ductwork.HaltPermanent || he.Attempt != 1 || he.Node != "pay" {
		t.Fatalf("Wait = %v; want a permanent halt at pay on attempt 1", err)
	}
	if !errors.Is(err, errDeclined) || !step.IsPermanent(err) {
		t.Fatalf("errors.Is(err, errDeclined) = %v, step.IsPermanent = %v; want both", errors.Is(err, errDeclined), step.IsPermanent(err))
	}
	// A client that did not halt the run rebuilds what it can from the
	// stored record.
	other, err := ductwork.NewClient(e.b, &ductwork.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ductwork.Open(waitCtx(t), other, def, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r2.Wait(waitCtx(t))
	if !errors.As(err, &he) || he.Cause != ductwork.HaltPermanent || !step.IsPermanent(err) || !strings.Contains(err.Error(), "card declined") {
		t.Fatalf("Wait from another client = %v; want the stored permanent halt", err)
	}
}

// TestUnstorableErrorTextIsStoredSafely: a step error whose text holds a NUL
// byte and invalid UTF-8 (which PostgreSQL text refuses) and runs to 100 KB
// still halts the run, with a readable, bounded reason, on every backend.
func TestUnstorableErrorTextIsStoredSafely(t *testing.T) {
	for _, kind := range allBackends {
		t.Run(kind, func(t *testing.T) {
			msg := "bad\x00byte\xff" + strings.Repeat("x", 100<<10)
			s := step.New("garbled", func(_ step.Context, n int) (int, error) { return 0, step.Permanent(errors.New(msg)) })
			def := flow.MustDefine("garbled", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, s) })
			b, _ := openCrashBackend(t, kind)
			client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			if err := client.Register(def); err != nil {
				t.Fatal(err)
			}
			startSupervisor(t, client, nil)
			r, err := ductwork.Trigger(waitCtx(t), client, def, 1)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Wait(waitCtx(t))
			var he *ductwork.HaltedError
			if !errors.As(err, &he) || he.Cause != ductwork.HaltPermanent || !strings.HasPrefix(he.Reason, "bad") ||
				strings.ContainsRune(he.Reason, 0) || !utf8.ValidString(he.Reason) || len(he.Reason) > 9<<10 {
				t.Fatalf("Wait = %v; want a permanent halt with a clean reason of at most 9 KiB", err)
			}
			if he.Err == nil || he.Err.Error() != msg {
				t.Fatal("the underlying error (with its full text) is not reachable in the process that halted the run")
			}
		})
	}
}
