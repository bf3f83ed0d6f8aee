package ductwork

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/internal/graph"
	"github.com/ductwork-go/ductwork/step"
)

// Errors of a signal send, in SignalError.Err. ErrRunNotFound is the fourth.
var (
	// ErrRunFinished: the run completed or was cancelled; nothing in it can
	// receive a signal. It matches ErrRunState too.
	ErrRunFinished = backend.ErrRunFinished
	// ErrUnknownSignal: the run's definition awaits no signal of that name
	// (or awaits it with another payload type).
	ErrUnknownSignal = errors.New("ductwork: the run's definition awaits no such signal")
	// ErrSignalPayload: the payload cannot be encoded, or (SendSignal) does
	// not decode as the signal's payload type.
	ErrSignalPayload = errors.New("ductwork: the signal's payload is not valid")
)

// SignalError reports a signal that was not sent; nothing was stored. Err is
// ErrRunNotFound, ErrRunFinished, ErrUnknownSignal, ErrSignalPayload,
// ErrUnsupportedTx or the backend's error; use errors.Is.
type SignalError struct {
	RunID  int64
	Signal string
	// Reason adds detail, if any.
	Reason string
	Err    error
}

func (e *SignalError) Error() string {
	msg := fmt.Sprintf("ductwork: signal %q to run %d: %v", e.Signal, e.RunID, e.Err)
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	return msg
}

// Unwrap returns Err.
func (e *SignalError) Unwrap() error { return e.Err }

// SendOption chooses which awaits of a run a signal is for. Without one, a
// signal is consumed by one await of its name: the first waiting, else the
// first to reach it.
type SendOption func(*backend.SignalTarget)

// ToScope sends the signal to the await at one scope: inside an expansion,
// the branch of an element ("3" for the fourth element, "3.0" one level
// deeper; StepInfo.Scope shows them).
func ToScope(scope string) SendOption {
	return func(t *backend.SignalTarget) { *t = backend.SignalTarget{Kind: backend.TargetScope, Value: scope} }
}

// ToKey sends the signal to the await whose key (flow.AwaitOptions.Key) is
// key.
func ToKey(key string) SendOption {
	return func(t *backend.SignalTarget) { *t = backend.SignalTarget{Kind: backend.TargetKey, Value: key} }
}

// ToAll delivers the signal to every await of its name in the run, those
// waiting now and those that reach it later, once each.
func ToAll() SendOption {
	return func(t *backend.SignalTarget) { *t = backend.SignalTarget{Kind: backend.TargetAll} }
}

// SendResult says what became of a sent signal.
type SendResult struct {
	// SignalID identifies the stored signal.
	SignalID int64
	// Delivered counts the awaits that received it at once; 0 means it is
	// kept until an await reaches it.
	Delivered int
}

// Send delivers the signal sig with its payload to the run runID. The
// compiler checks the payload's type against the signal's. An await of
// the signal that is waiting receives it at once (its branch resumes within
// the poll interval, at once with notifications); otherwise the signal is
// kept and consumed when a branch reaches an await of it. Each signal is
// consumed once (see ToAll). It returns a *SignalError matching
// ErrRunNotFound for an unknown run, ErrRunFinished for a completed or
// cancelled one, and ErrUnknownSignal when the run's definition awaits no
// such signal.
func Send[P any](ctx context.Context, c *Client, runID int64, sig flow.SignalDef[P], payload P, opts ...SendOption) error {
	_, err := send(ctx, "Send", c, nil, runID, sig.Name(), sig.PayloadType(), payload, nil, opts)
	return err
}

// SendTx is Send in the caller's transaction tx (of the backend's type, as
// for TriggerTx): the signal is stored, and delivered, if and when the
// caller commits. A run triggered in the same transaction can be signalled.
func SendTx[P any](ctx context.Context, c *Client, tx any, runID int64, sig flow.SignalDef[P], payload P, opts ...SendOption) error {
	if tx == nil {
		return &ArgumentError{Func: "SendTx", Arg: "tx", Reason: "is nil"}
	}
	_, err := send(ctx, "SendTx", c, tx, runID, sig.Name(), sig.PayloadType(), payload, nil, opts)
	return err
}

// SendSignal is the untyped Send, for tools (the command line, the
// dashboard): the signal is named, and its payload is given encoded (JSON
// for the default codec). When this client has registered the run's
// definition, the payload must decode as the signal's payload type
// (ErrSignalPayload otherwise); when it has not, the name is checked
// against the run's stored definition, where one is stored.
func (c *Client) SendSignal(ctx context.Context, runID int64, name string, payload []byte, opts ...SendOption) (*SendResult, error) {
	return send(ctx, "SendSignal", c, nil, runID, name, nil, nil, payload, opts)
}

// send checks the run and the signal, encodes typed payloads with the run's
// codec (or checks an encoded one) and stores the signal. typ is nil for
// SendSignal, whose payload is given encoded.
func send(ctx context.Context, fn string, c *Client, tx any, runID int64, name string, typ reflect.Type, value any, encoded []byte, opts []SendOption) (*SendResult, error) {
	if c == nil {
		return nil, &ArgumentError{Func: fn, Arg: "client", Reason: "is nil"}
	}
	fail := func(err error, reason string, args ...any) (*SendResult, error) {
		return nil, &SignalError{RunID: runID, Signal: name, Reason: fmt.Sprintf(reason, args...), Err: err}
	}
	if name == "" {
		return nil, &ArgumentError{Func: fn, Arg: "signal", Reason: "has an empty name (declare it with flow.Signal)"}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = c.eng.WithCallTimeout(ctx)
		defer cancel()
	}
	codec := step.JSON
	run, err := c.b.GetRun(ctx, &backend.GetRunParams{RunID: runID})
	switch {
	case errors.Is(err, backend.ErrRunNotFound) && tx != nil:
		// Perhaps triggered in tx itself: the backend decides, in tx.
	case errors.Is(err, backend.ErrRunNotFound):
		return fail(ErrRunNotFound, "")
	case err != nil:
		return fail(err, "")
	case run.Status == backend.RunCompleted || run.Status == backend.RunCancelled:
		return fail(ErrRunFinished, "the run is %s", run.Status)
	default:
		ref := backend.DefinitionRef{Pipeline: run.Pipeline, Fingerprint: run.Fingerprint}
		if g, ok := c.eng.Lookup(ref); ok {
			codec = g.Codec
			want := awaitedType(g, name)
			switch {
			case want == nil:
				return fail(ErrUnknownSignal, "pipeline %s awaits no signal %q", run.Pipeline, name)
			case typ != nil && typ != want:
				return fail(ErrUnknownSignal, "pipeline %s awaits %q with a %v payload, not %v", run.Pipeline, name, want, typ)
			case typ == nil:
				v := reflect.New(want)
				if err := codec.Unmarshal(encoded, v.Interface()); err != nil {
					return fail(ErrSignalPayload, "does not decode as %v: %v", want, err)
				}
			}
		} else if shape, err := c.Definition(ctx, ref); err == nil {
			if !shapeAwaits(shape, name) {
				return fail(ErrUnknownSignal, "pipeline %s awaits no signal %q", run.Pipeline, name)
			}
		}
	}
	if typ != nil {
		encoded, err = codec.Marshal(value)
		if err != nil {
			return fail(ErrSignalPayload, "encode: %v", err)
		}
	}
	if max := c.eng.MaxPayload; max > 0 && len(encoded) > max {
		return fail(ErrSignalPayload, "%d bytes, above the limit of %d", len(encoded), max)
	}
	p := &backend.SendSignalParams{RunID: runID, Name: name, Payload: encoded, Tx: tx}
	for _, o := range opts {
		if o != nil {
			o(&p.Target)
		}
	}
	res, err := c.b.SendSignal(ctx, p)
	switch {
	case errors.Is(err, backend.ErrRunNotFound):
		return fail(ErrRunNotFound, "")
	case errors.Is(err, backend.ErrRunFinished):
		return fail(ErrRunFinished, "")
	case err != nil:
		return fail(err, "")
	}
	if res.Delivered > 0 && tx == nil {
		c.eng.WakeAll()
	}
	return &SendResult{SignalID: res.SignalID, Delivered: res.Delivered}, nil
}

// awaitedType is the payload type with which g awaits the signal name, or
// nil.
func awaitedType(g *graph.Graph, name string) reflect.Type {
	for _, n := range g.Nodes {
		if n.Wait != nil && n.Wait.Signal == name {
			return n.Wait.SignalType
		}
	}
	return nil
}

func shapeAwaits(s *backend.Shape, name string) bool {
	for _, sig := range s.Signals {
		if sig.Name == name {
			return true
		}
	}
	return false
}
