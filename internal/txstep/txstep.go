// Package txstep holds what the backends' transactional steps share: the step
// type, generic over the backend's transaction type, and the context value
// through which the engine hands the completion transaction to it.
package txstep

import (
	"context"
	"fmt"

	"github.com/ductwork-go/ductwork/step"
)

type txKey struct{}

// With returns ctx carrying tx, the completion transaction.
func With(ctx context.Context, tx any) context.Context {
	return context.WithValue(ctx, txKey{}, tx)
}

// From returns the completion transaction carried by ctx, if any.
func From(ctx context.Context) (any, bool) {
	tx := ctx.Value(txKey{})
	return tx, tx != nil
}

// Step is a transactional step whose function takes the backend's
// transaction type Tx.
type Step[In, Out, Tx any] struct {
	name string
	kind string
	fn   func(ctx step.Context, tx Tx, in In) (Out, error)
	opts step.Options
}

// New returns a transactional step of the given kind (Capabilities.TxKind of
// the backends it runs on). Without a timeout in opts it gets
// step.DefaultTxTimeout.
func New[In, Out, Tx any](kind, name string, fn func(ctx step.Context, tx Tx, in In) (Out, error), opts ...step.Option) *Step[In, Out, Tx] {
	s := &Step[In, Out, Tx]{name: name, kind: kind, fn: fn}
	for _, o := range opts {
		o(&s.opts)
	}
	if s.opts.Timeout <= 0 {
		s.opts.Timeout = step.DefaultTxTimeout
	}
	return s
}

// Name returns the step's name.
func (s *Step[In, Out, Tx]) Name() string { return s.name }

// StepOptions returns the step's options.
func (s *Step[In, Out, Tx]) StepOptions() step.Options { return s.opts }

// TxKind names the backend kind the step runs on.
func (s *Step[In, Out, Tx]) TxKind() string { return s.kind }

// Execute runs the function with the completion transaction carried by ctx;
// without one (the step was run outside the engine's transactional path) it
// returns an error and does nothing.
func (s *Step[In, Out, Tx]) Execute(ctx step.Context, in In) (Out, error) {
	raw, _ := From(ctx)
	tx, ok := raw.(Tx)
	if !ok || s.fn == nil {
		var zero Out
		if s.fn == nil {
			return zero, step.Permanent(fmt.Errorf("transactional step %q has no function", s.name))
		}
		return zero, step.Permanent(fmt.Errorf("transactional step %q (%s) run without its completion transaction (got %T)", s.name, s.kind, raw))
	}
	return s.fn(ctx, tx, in)
}
