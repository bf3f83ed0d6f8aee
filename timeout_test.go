package ductwork_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

// TestTimeoutHaltSeenFromAnotherClient: a run halted by a step's timeout,
// waited on through a client that did not halt it (another process), gives
// a *HaltedError with cause timeout whose Err is a *TimeoutError rebuilt
// from the stored reason, matching context.DeadlineExceeded.
func TestTimeoutHaltSeenFromAnotherClient(t *testing.T) {
	slow := step.New("slow", func(ctx step.Context, n int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, step.Timeout(20*time.Millisecond), step.Retries(0))
	def := flow.MustDefine("timeout-elsewhere", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, slow) })
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(waitCtx(t)); err == nil {
		t.Fatal("Wait succeeded; want a halt")
	}
	other, err := ductwork.NewClient(e.b, &ductwork.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ductwork.Open(waitCtx(t), other, def, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r2.Wait(waitCtx(t))
	var (
		he *ductwork.HaltedError
		te *ductwork.TimeoutError
	)
	if !errors.As(err, &he) || he.Cause != ductwork.HaltTimeout {
		t.Fatalf("Wait = %v; want a *HaltedError with cause timeout", err)
	}
	if !errors.As(err, &te) || te.Step != "slow" || !errors.Is(err, context.DeadlineExceeded) || te.Error() != he.Reason {
		t.Fatalf("Wait error = %#v; want a *TimeoutError for slow carrying the stored reason %q", he.Err, he.Reason)
	}
}
