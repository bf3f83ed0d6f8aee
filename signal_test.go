package ductwork_test

import (
	"errors"
	"testing"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

type verdict struct {
	OK bool `json:"ok"`
}

var verdictSignal = flow.Signal[verdict]("verdict")

func awaitDef(name string) *flow.Definition[int, bool] {
	done := step.New("done", func(_ step.Context, a flow.Awaited[int, verdict]) (bool, error) { return a.Payload.OK, nil })
	return flow.MustDefine(name, func(p *flow.Pipeline[int]) flow.End[bool] {
		return flow.Chain(flow.Await(flow.Start(p, echo), verdictSignal, 0), done)
	})
}

// TestSendBadInput: a nil client, an unnamed signal, a nil or foreign
// transaction and an unknown run are refused with typed errors, and nothing
// is stored: the run still completes with the one valid signal.
func TestSendBadInput(t *testing.T) {
	def := awaitDef("send-bad-input")
	e := newEnv(t, def)
	run, err := ductwork.Trigger(waitCtx(t), e.client, def, 1)
	if err != nil {
		t.Fatal(err)
	}
	var ae *ductwork.ArgumentError
	if err := ductwork.Send(waitCtx(t), nil, run.ID, verdictSignal, verdict{}); !errors.As(err, &ae) || ae.Arg != "client" {
		t.Errorf("Send(nil client) = %v; want *ArgumentError on client", err)
	}
	if err := ductwork.Send(waitCtx(t), e.client, run.ID, flow.Signal[verdict](""), verdict{}); !errors.As(err, &ae) || ae.Arg != "signal" {
		t.Errorf("Send(unnamed signal) = %v; want *ArgumentError on signal", err)
	}
	if err := ductwork.SendTx(waitCtx(t), e.client, nil, run.ID, verdictSignal, verdict{}); !errors.As(err, &ae) || ae.Arg != "tx" {
		t.Errorf("SendTx(nil tx) = %v; want *ArgumentError on tx", err)
	}
	var se *ductwork.SignalError
	if err := ductwork.SendTx(waitCtx(t), e.client, "not a tx", run.ID, verdictSignal, verdict{}); !errors.Is(err, ductwork.ErrUnsupportedTx) || !errors.As(err, &se) {
		t.Errorf("SendTx(foreign tx) = %v; want a *SignalError matching ErrUnsupportedTx", err)
	}
	other := flow.Signal[string]("verdict")
	if err := ductwork.Send(waitCtx(t), e.client, run.ID, other, "yes"); !errors.Is(err, ductwork.ErrUnknownSignal) {
		t.Errorf("Send(same name, other payload type) = %v; want ErrUnknownSignal", err)
	}
	if err := ductwork.Send(waitCtx(t), e.client, run.ID+1000, verdictSignal, verdict{}); !errors.Is(err, ductwork.ErrRunNotFound) {
		t.Errorf("Send(unknown run) = %v; want ErrRunNotFound", err)
	}
	if _, err := e.client.SendSignal(waitCtx(t), run.ID, "verdict", []byte("{not json")); !errors.Is(err, ductwork.ErrSignalPayload) {
		t.Errorf("SendSignal(bad JSON) = %v; want ErrSignalPayload", err)
	}
	startSupervisor(t, e.client, nil)
	if err := ductwork.Send(waitCtx(t), e.client, run.ID, verdictSignal, verdict{OK: true}); err != nil {
		t.Fatal(err)
	}
	ok, err := run.Wait(waitCtx(t))
	if err != nil || !ok {
		t.Fatalf("Wait = %v, %v; want true (the one valid signal)", ok, err)
	}
}
