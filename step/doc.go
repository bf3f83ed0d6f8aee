// Package step defines the unit of work of a Ductwork pipeline: Step, the
// Context a step executes with, per-step Options, and the Codec that encodes
// the values steps hand to each other.
//
// A step is a value made with New, or any type with a Name and an Execute
// method:
//
//	var LoadUser = step.New("load-user", func(ctx step.Context, id int64) (User, error) {
//		return db.LoadUser(ctx, id)
//	}, step.Retries(3))
//
// Steps run at least once: after a crash the same step instance runs again,
// with the same Context.IdempotencyKey. Outputs must be encodable by the
// pipeline's Codec (encoding/json by default); that is checked when the
// pipeline is defined.
package step
