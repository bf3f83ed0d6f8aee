package conformance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

func testSignals(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"UnknownRun":         signalUnknownRun,
		"FinishedRun":        signalFinishedRun,
		"AfterAwait":         signalAfterAwait,
		"BeforeAwait":        signalBeforeAwait,
		"SentTwice":          signalSentTwice,
		"AwaitTimeout":       signalAwaitTimeout,
		"AcrossRestart":      signalAcrossRestart,
		"SleepAcrossRestart": sleepAcrossRestart,
		"ExpansionTargets":   signalExpansionTargets,
		"InCallersTx":        signalInCallersTx,
		"ConcurrentSends":    signalConcurrentSends,
	})
}

// sigDecision is the payload of the suite's signal.
type sigDecision struct {
	OK   bool   `json:"ok"`
	Note string `json:"note"`
}

// sigOrder is the input of the suite's signal pipelines.
type sigOrder struct {
	ID string `json:"id"`
}

var sigApproval = flow.Signal[sigDecision]("conformance-approval")

// sigEnv is a client on a migrated backend, with supervisors that can be
// stopped and started again (as process restarts).
type sigEnv struct {
	b      backend.Backend
	client *ductwork.Client
}

func newSigEnv(t *testing.T, h Harness, defs ...ductwork.Definition) *sigEnv {
	t.Helper()
	b := newBackend(t, h)
	return &sigEnv{b: b, client: sigClient(t, b, defs...)}
}

func sigClient(t *testing.T, b backend.Backend, defs ...ductwork.Definition) *ductwork.Client {
	t.Helper()
	c, err := ductwork.NewClient(b, &ductwork.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if err := c.Register(defs...); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return c
}

// startStoppable runs a supervisor for client and returns a function that
// stops it gracefully and waits for it (also called at the end of the test).
func startStoppable(t *testing.T, client *ductwork.Client) (stop func()) {
	t.Helper()
	s, err := supervisor.New(client, &supervisor.Config{
		PollInterval: 5 * time.Millisecond, SignalSweepInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("supervisor.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
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
	}
	t.Cleanup(stop)
	return stop
}

// sigApprovalPipeline: start, await the approval (no timeout), finish with
// the note.
func sigApprovalPipeline(name string, gate <-chan struct{}) *flow.Definition[sigOrder, string] {
	start := step.New("start", func(ctx step.Context, o sigOrder) (sigOrder, error) {
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return o, ctx.Err()
			}
		}
		return o, nil
	})
	finish := step.New("finish", func(_ step.Context, a flow.Awaited[sigOrder, sigDecision]) (string, error) {
		if a.TimedOut {
			return a.Input.ID + ":timed-out", nil
		}
		return a.Input.ID + ":" + a.Payload.Note, nil
	})
	return flow.MustDefine(name, func(p *flow.Pipeline[sigOrder]) flow.End[string] {
		return flow.Chain(flow.Await(flow.Start(p, start), sigApproval, 0), finish)
	})
}

// waitStatus waits until the run's status is want.
func waitStatus(t *testing.T, b backend.Backend, runID int64, want string) {
	t.Helper()
	var last string
	waitFor(t, 30*time.Second, "run status "+want, func() bool {
		r, err := b.GetRun(testCtx(t), &backend.GetRunParams{RunID: runID})
		if err != nil {
			t.Fatalf("GetRun(%d): %v", runID, err)
		}
		last = r.Status
		return last == want
	})
}

// checkHoldsNothing checks that no job of the run is claimed.
func checkHoldsNothing(t *testing.T, b backend.Backend, runID int64) {
	t.Helper()
	res, err := b.ListJobs(testCtx(t), &backend.ListJobsParams{RunID: runID, Status: backend.JobRunning})
	if err != nil {
		t.Fatalf("ListJobs: %v", err)
	}
	if len(res.Jobs) > 0 {
		t.Errorf("a waiting run holds %d claimed jobs (first: %s)", len(res.Jobs), res.Jobs[0].NodeID)
	}
}

func waitOutput[Out any](t *testing.T, run *ductwork.Run[Out]) Out {
	t.Helper()
	out, err := run.Wait(testCtx(t))
	if err != nil {
		t.Fatalf("run %d: %v", run.ID, err)
	}
	return out
}

// signalUnknownRun: SendSignal to a run that does not exist returns
// ErrRunNotFound and stores nothing.
func signalUnknownRun(t *testing.T, h Harness) {
	b := newBackend(t, h)
	_, err := b.SendSignal(testCtx(t), &backend.SendSignalParams{RunID: 1 << 40, Name: "s", Payload: []byte(`{}`)})
	if !errors.Is(err, backend.ErrRunNotFound) {
		t.Fatalf("SendSignal(unknown run) = %v; want ErrRunNotFound", err)
	}
	c := sigClient(t, b)
	err = ductwork.Send(testCtx(t), c, 1<<40, sigApproval, sigDecision{OK: true})
	var se *ductwork.SignalError
	if !errors.Is(err, ductwork.ErrRunNotFound) || !errors.As(err, &se) || se.Signal != sigApproval.Name() {
		t.Fatalf("Send(unknown run) = %v; want a *SignalError matching ErrRunNotFound", err)
	}
}

// signalFinishedRun: a signal to a completed or cancelled run returns
// ErrRunFinished (which matches ErrRunState), in the backend and through
// Send.
func signalFinishedRun(t *testing.T, h Harness) {
	b := newBackend(t, h)
	cancelled := trigger(t, b, defA, backend.NewJob{Input: []byte(`1`)})
	if _, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: cancelled.RunID, Reason: "test"}); err != nil {
		t.Fatalf("CancelRun: %v", err)
	}
	_, err := b.SendSignal(testCtx(t), &backend.SendSignalParams{RunID: cancelled.RunID, Name: "s", Payload: []byte(`{}`)})
	if !errors.Is(err, backend.ErrRunFinished) || !errors.Is(err, backend.ErrRunState) {
		t.Fatalf("SendSignal(cancelled run) = %v; want ErrRunFinished", err)
	}

	def := sigApprovalPipeline(randomID(t, "conformance-sig-finished"), nil)
	c := sigClient(t, b, def)
	startStoppable(t, c)
	run, err := ductwork.Trigger(testCtx(t), c, def, sigOrder{ID: "o1"})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	if err := ductwork.Send(testCtx(t), c, run.ID, sigApproval, sigDecision{OK: true, Note: "first"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if out := waitOutput(t, run); out != "o1:first" {
		t.Fatalf("output %q; want o1:first", out)
	}
	err = ductwork.Send(testCtx(t), c, run.ID, sigApproval, sigDecision{OK: true, Note: "late"})
	if !errors.Is(err, ductwork.ErrRunFinished) {
		t.Fatalf("Send(completed run) = %v; want ErrRunFinished", err)
	}
}

// signalAfterAwait: a run that reaches its await is waiting and holds no
// claim; a signal sent then is delivered and the run completes with it.
// Sending an unknown signal name, or a payload that does not decode, is
// refused before anything is stored.
func signalAfterAwait(t *testing.T, h Harness) {
	def := sigApprovalPipeline(randomID(t, "conformance-sig-after"), nil)
	e := newSigEnv(t, h, def)
	startStoppable(t, e.client)
	run, err := ductwork.Trigger(testCtx(t), e.client, def, sigOrder{ID: "o2"})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	waitStatus(t, e.b, run.ID, backend.RunWaiting)
	checkHoldsNothing(t, e.b, run.ID)

	if _, err := e.client.SendSignal(testCtx(t), run.ID, "no-such-signal", []byte(`{}`)); !errors.Is(err, ductwork.ErrUnknownSignal) {
		t.Errorf("SendSignal(unknown name) = %v; want ErrUnknownSignal", err)
	}
	if _, err := e.client.SendSignal(testCtx(t), run.ID, sigApproval.Name(), []byte(`{"ok": "yes"}`)); !errors.Is(err, ductwork.ErrSignalPayload) {
		t.Errorf("SendSignal(bad payload) = %v; want ErrSignalPayload", err)
	}
	res, err := e.client.SendSignal(testCtx(t), run.ID, sigApproval.Name(), []byte(`{"ok": true, "note": "approved"}`))
	if err != nil {
		t.Fatalf("SendSignal: %v", err)
	}
	if res.Delivered != 1 {
		t.Errorf("SendSignal delivered to %d awaits; want 1 (the run was waiting)", res.Delivered)
	}
	if out := waitOutput(t, run); out != "o2:approved" {
		t.Fatalf("output %q; want o2:approved", out)
	}
}

// signalBeforeAwait: a signal sent while the branch has not reached the
// await yet is kept and consumed there.
func signalBeforeAwait(t *testing.T, h Harness) {
	gate := make(chan struct{})
	def := sigApprovalPipeline(randomID(t, "conformance-sig-before"), gate)
	e := newSigEnv(t, h, def)
	startStoppable(t, e.client)
	run, err := ductwork.Trigger(testCtx(t), e.client, def, sigOrder{ID: "o3"})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	if err := ductwork.Send(testCtx(t), e.client, run.ID, sigApproval, sigDecision{OK: true, Note: "early"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	close(gate)
	if out := waitOutput(t, run); out != "o3:early" {
		t.Fatalf("output %q; want o3:early", out)
	}
}

// signalSentTwice: two signals of one name to a run with two awaits of it
// in a row: each await consumes exactly one, in the order they were sent,
// whether they were sent before or after the first await was reached.
func signalSentTwice(t *testing.T, h Harness) {
	finish := step.New("finish", func(_ step.Context, a flow.Awaited[flow.Awaited[sigOrder, sigDecision], sigDecision]) (string, error) {
		return a.Input.Input.ID + ":" + a.Input.Payload.Note + "," + a.Payload.Note, nil
	})
	start := step.New("start", func(_ step.Context, o sigOrder) (sigOrder, error) { return o, nil })
	def, err := flow.Define(randomID(t, "conformance-sig-twice"), func(p *flow.Pipeline[sigOrder]) flow.End[string] {
		first := flow.AwaitWith(flow.Start(p, start), sigApproval, flow.AwaitOptions[sigOrder]{Name: "first"})
		second := flow.AwaitWith(first, sigApproval, flow.AwaitOptions[flow.Awaited[sigOrder, sigDecision]]{Name: "second"})
		return flow.Chain(second, finish)
	})
	if err != nil {
		t.Fatalf("Define: %v", err)
	}
	e := newSigEnv(t, h, def)
	// Both sent before any supervisor runs: both are kept.
	run, err := ductwork.Trigger(testCtx(t), e.client, def, sigOrder{ID: "o4"})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	for _, note := range []string{"one", "two"} {
		if err := ductwork.Send(testCtx(t), e.client, run.ID, sigApproval, sigDecision{Note: note}); err != nil {
			t.Fatalf("Send(%s): %v", note, err)
		}
	}
	startStoppable(t, e.client)
	if out := waitOutput(t, run); out != "o4:one,two" {
		t.Fatalf("output %q; want o4:one,two", out)
	}
	// A third run gets one signal before and one after its first await.
	run2, err := ductwork.Trigger(testCtx(t), e.client, def, sigOrder{ID: "o5"})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	if err := ductwork.Send(testCtx(t), e.client, run2.ID, sigApproval, sigDecision{Note: "a"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	waitStatus(t, e.b, run2.ID, backend.RunWaiting)
	if err := ductwork.Send(testCtx(t), e.client, run2.ID, sigApproval, sigDecision{Note: "b"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if out := waitOutput(t, run2); out != "o5:a,b" {
		t.Fatalf("output %q; want o5:a,b", out)
	}
}

// signalAwaitTimeout: an await whose timeout passes (by the database's
// clock) yields TimedOut, which a Divert routes; a signal sent afterwards
// finds the run finished.
func signalAwaitTimeout(t *testing.T, h Harness) {
	start := step.New("start", func(_ step.Context, o sigOrder) (sigOrder, error) { return o, nil })
	approved := step.New("approved", func(_ step.Context, a flow.Awaited[sigOrder, sigDecision]) (string, error) {
		return "approved:" + a.Payload.Note, nil
	})
	escalate := step.New("escalate", func(_ step.Context, a flow.Awaited[sigOrder, sigDecision]) (string, error) {
		return "escalated:" + a.Input.ID, nil
	})
	done := step.New("done", func(_ step.Context, s string) (string, error) { return s, nil })
	def, err := flow.Define(randomID(t, "conformance-sig-timeout"), func(p *flow.Pipeline[sigOrder]) flow.End[string] {
		a := flow.Await(flow.Start(p, start), sigApproval, 300*time.Millisecond)
		d := flow.Divert(a, flow.Awaited[sigOrder, sigDecision].Outcome)
		return flow.Converge(done, flow.Case(d, flow.Received, approved), flow.Otherwise(d, escalate))
	})
	if err != nil {
		t.Fatalf("Define: %v", err)
	}
	e := newSigEnv(t, h, def)
	startStoppable(t, e.client)
	run, err := ductwork.Trigger(testCtx(t), e.client, def, sigOrder{ID: "o6"})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	if out := waitOutput(t, run); out != "escalated:o6" {
		t.Fatalf("output %q; want escalated:o6", out)
	}
	if err := ductwork.Send(testCtx(t), e.client, run.ID, sigApproval, sigDecision{Note: "late"}); !errors.Is(err, ductwork.ErrRunFinished) {
		t.Fatalf("Send after the timeout = %v; want ErrRunFinished", err)
	}
}

// signalAcrossRestart: the run waits on its await, every process stops; the
// signal is sent from another handle while none runs; a new process on
// another handle finishes the run.
func signalAcrossRestart(t *testing.T, h Harness) {
	name := randomID(t, "conformance-sig-restart")
	def := sigApprovalPipeline(name, nil)
	e := newSigEnv(t, h, def)
	stop := startStoppable(t, e.client)
	run, err := ductwork.Trigger(testCtx(t), e.client, def, sigOrder{ID: "o7"})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	waitStatus(t, e.b, run.ID, backend.RunWaiting)
	stop()

	b2 := e.b
	if h.Reopen != nil {
		b2 = h.Reopen(t, e.b)
	}
	def2 := sigApprovalPipeline(name, nil)
	c2 := sigClient(t, b2, def2)
	if err := ductwork.Send(testCtx(t), c2, run.ID, sigApproval, sigDecision{Note: "after-restart"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	startStoppable(t, c2)
	run2, err := ductwork.Open(testCtx(t), c2, def2, run.ID)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if out := waitOutput(t, run2); out != "o7:after-restart" {
		t.Fatalf("output %q; want o7:after-restart", out)
	}
}

// sleepAcrossRestart: a run sleeps (waiting, holding nothing), its process
// stops before the due time, and a new process started after it finishes
// the run; the sleep lasted at least its duration by the database's clock.
func sleepAcrossRestart(t *testing.T, h Harness) {
	const nap = 700 * time.Millisecond
	name := randomID(t, "conformance-sleep-restart")
	mk := func() *flow.Definition[int, int] {
		start := step.New("start", func(_ step.Context, n int) (int, error) { return n + 1, nil })
		finish := step.New("finish", func(_ step.Context, n int) (int, error) { return n * 10, nil })
		return flow.MustDefine(name, func(p *flow.Pipeline[int]) flow.End[int] {
			return flow.Chain(flow.Sleep(flow.Start(p, start), nap), finish)
		})
	}
	def := mk()
	e := newSigEnv(t, h, def)
	stop := startStoppable(t, e.client)
	before, err := e.b.Now(testCtx(t))
	if err != nil {
		t.Fatalf("Now: %v", err)
	}
	run, err := ductwork.Trigger(testCtx(t), e.client, def, 4)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	waitStatus(t, e.b, run.ID, backend.RunWaiting)
	checkHoldsNothing(t, e.b, run.ID)
	stop()

	b2 := e.b
	if h.Reopen != nil {
		b2 = h.Reopen(t, e.b)
	}
	def2 := mk()
	c2 := sigClient(t, b2, def2)
	startStoppable(t, c2)
	run2, err := ductwork.Open(testCtx(t), c2, def2, run.ID)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if out := waitOutput(t, run2); out != 50 {
		t.Fatalf("output %d; want 50", out)
	}
	after, err := b2.Now(testCtx(t))
	if err != nil {
		t.Fatalf("Now: %v", err)
	}
	if d := after.Sub(before); d < nap-precision(b2) {
		t.Errorf("the run finished %v after its trigger; the sleep alone is %v", d, nap)
	}
}

// signalExpansionTargets: inside an expansion, a signal reaches one branch
// by scope or by key, or every branch.
func signalExpansionTargets(t *testing.T, h Harness) {
	split := step.New("split", func(_ step.Context, ids []string) ([]string, error) { return ids, nil })
	item := step.New("item", func(_ step.Context, id string) (sigOrder, error) { return sigOrder{ID: id}, nil })
	note := step.New("note", func(_ step.Context, a flow.Awaited[sigOrder, sigDecision]) (string, error) {
		return a.Input.ID + "=" + a.Payload.Note, nil
	})
	gather := step.New("gather", func(_ step.Context, s []string) ([]string, error) { return s, nil })
	def, err := flow.Define(randomID(t, "conformance-sig-expand"), func(p *flow.Pipeline[[]string]) flow.End[[]string] {
		x := flow.Expand(flow.Start(p, split), item)
		a := flow.AwaitWith(x, sigApproval, flow.AwaitOptions[sigOrder]{Key: func(o sigOrder) string { return "k-" + o.ID }})
		return flow.Collapse(flow.Chain(a, note), gather)
	})
	if err != nil {
		t.Fatalf("Define: %v", err)
	}
	e := newSigEnv(t, h, def)
	startStoppable(t, e.client)
	run, err := ductwork.Trigger(testCtx(t), e.client, def, []string{"a", "b", "c", "d"})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	waitStatus(t, e.b, run.ID, backend.RunWaiting)
	send := func(note string, opts ...ductwork.SendOption) {
		t.Helper()
		if err := ductwork.Send(testCtx(t), e.client, run.ID, sigApproval, sigDecision{Note: note}, opts...); err != nil {
			t.Fatalf("Send(%s): %v", note, err)
		}
	}
	send("by-key", ductwork.ToKey("k-c"))
	send("by-scope", ductwork.ToScope("1"))
	waitFor(t, 30*time.Second, "two branches to finish", func() bool {
		steps, err := e.client.Steps(testCtx(t), run.ID)
		if err != nil {
			t.Fatalf("Steps: %v", err)
		}
		n := 0
		for _, s := range steps {
			if s.Node == "note" && s.Status == backend.JobCompleted {
				n++
			}
		}
		return n == 2
	})
	send("to-all", ductwork.ToAll())
	got := waitOutput(t, run)
	want := []string{"a=to-all", "b=by-scope", "c=by-key", "d=to-all"}
	if len(got) != len(want) {
		t.Fatalf("output %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("output %v; want %v", got, want)
		}
	}
}

// signalInCallersTx: SendTx joins the caller's transaction: rolled back,
// nothing is delivered; committed, the signal is.
func signalInCallersTx(t *testing.T, h Harness) {
	if h.BeginTx == nil {
		t.Skip("Harness.BeginTx is nil")
	}
	def := sigApprovalPipeline(randomID(t, "conformance-sig-tx"), nil)
	e := newSigEnv(t, h, def)
	startStoppable(t, e.client)
	run, err := ductwork.Trigger(testCtx(t), e.client, def, sigOrder{ID: "o8"})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	waitStatus(t, e.b, run.ID, backend.RunWaiting)
	tx, _, rollback := h.BeginTx(t, e.b)
	if err := ductwork.SendTx(testCtx(t), e.client, tx, run.ID, sigApproval, sigDecision{Note: "rolled-back"}); err != nil {
		t.Fatalf("SendTx: %v", err)
	}
	if err := rollback(); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	tx, commit, _ := h.BeginTx(t, e.b)
	if err := ductwork.SendTx(testCtx(t), e.client, tx, run.ID, sigApproval, sigDecision{Note: "committed"}); err != nil {
		t.Fatalf("SendTx: %v", err)
	}
	if err := commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if out := waitOutput(t, run); out != "o8:committed" {
		t.Fatalf("output %q; want o8:committed", out)
	}
}

// signalConcurrentSends: 24 signals sent at once, from as many goroutines,
// to a run whose expansion has 24 branches awaiting them (some sent before
// the branches arrive, some after): every branch receives exactly one, and
// every signal is consumed exactly once.
func signalConcurrentSends(t *testing.T, h Harness) {
	const n = 24
	split := step.New("split", func(_ step.Context, k int) ([]int, error) {
		return make([]int, k), nil
	})
	item := step.New("item", func(_ step.Context, i int) (int, error) { return i, nil })
	note := step.New("note", func(_ step.Context, a flow.Awaited[int, sigDecision]) (string, error) { return a.Payload.Note, nil })
	gather := step.New("gather", func(_ step.Context, s []string) ([]string, error) { return s, nil })
	def, err := flow.Define(randomID(t, "conformance-sig-concurrent"), func(p *flow.Pipeline[int]) flow.End[[]string] {
		x := flow.Expand(flow.Start(p, split), item)
		return flow.Collapse(flow.Chain(flow.Await(x, sigApproval, 0), note), gather)
	})
	if err != nil {
		t.Fatalf("Define: %v", err)
	}
	e := newSigEnv(t, h, def)
	run, err := ductwork.Trigger(testCtx(t), e.client, def, n)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sendAll := func(from, to int) {
		for i := from; i < to; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- ductwork.Send(testCtx(t), e.client, run.ID, sigApproval, sigDecision{Note: fmt.Sprintf("s%02d", i)})
			}()
		}
	}
	sendAll(0, n/3) // before any branch exists
	startStoppable(t, e.client)
	startStoppable(t, sigClient(t, e.b, def)) // a second process delivering too
	sendAll(n/3, n)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	got := waitOutput(t, run)
	seen := map[string]int{}
	for _, s := range got {
		seen[s]++
	}
	for i := range n {
		if c := seen[fmt.Sprintf("s%02d", i)]; c != 1 {
			t.Errorf("signal s%02d received by %d branches; want exactly 1 (output %v)", i, c, got)
		}
	}
	if len(got) != n {
		t.Errorf("%d branches; want %d", len(got), n)
	}
}
