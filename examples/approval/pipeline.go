package main

import (
	"fmt"
	"time"

	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

// Expense is what an employee submits.
type Expense struct {
	ID     string  `json:"id"`
	Who    string  `json:"who"`
	Amount float64 `json:"amount"`
}

// Decision is the manager's answer, the payload of the Approval signal.
type Decision struct {
	Approved bool   `json:"approved"`
	By       string `json:"by"`
	Note     string `json:"note,omitempty"`
}

// Approval is the signal a manager sends. Its payload type is checked by the
// compiler where the pipeline awaits it and where ductwork.Send sends it.
var Approval = flow.Signal[Decision]("manager-approval")

// ApprovalTimeout is how long an expense waits for its manager before it is
// escalated.
const ApprovalTimeout = 48 * time.Hour

// Reviewed is what reaches the routing: the expense and the decision (or a
// timeout).
type Reviewed = flow.Awaited[Expense, Decision]

var (
	submit = step.New("submit", func(_ step.Context, e Expense) (Expense, error) {
		if e.Amount <= 0 {
			return e, step.Permanent(fmt.Errorf("expense %s: amount %.2f is not positive", e.ID, e.Amount))
		}
		return e, nil
	})
	pay = step.New("pay", func(_ step.Context, r Reviewed) (string, error) {
		return fmt.Sprintf("paid %.2f to %s (approved by %s)", r.Input.Amount, r.Input.Who, r.Payload.By), nil
	})
	refuse = step.New("refuse", func(_ step.Context, r Reviewed) (string, error) {
		return fmt.Sprintf("refused by %s: %s", r.Payload.By, r.Payload.Note), nil
	})
	escalate = step.New("escalate", func(_ step.Context, r Reviewed) (string, error) {
		return fmt.Sprintf("no decision on %s in time: escalated", r.Input.ID), nil
	})
	record = step.New("record", func(_ step.Context, outcome string) (string, error) { return outcome, nil })
)

// route is the divert key: the decision, or the timeout.
func route(r Reviewed) string {
	switch {
	case r.TimedOut:
		return flow.TimedOut
	case r.Payload.Approved:
		return "approved"
	default:
		return "refused"
	}
}

// NewExpenses defines the pipeline with the given approval timeout:
//
//	submit ─Await(Approval)─► route: approved → pay | refused → refuse | otherwise (timed out) → escalate ─► record
func NewExpenses(timeout time.Duration) *flow.Definition[Expense, string] {
	return flow.MustDefine("expense-approval", func(p *flow.Pipeline[Expense]) flow.End[string] {
		reviewed := flow.Await(flow.Start(p, submit), Approval, timeout)
		d := flow.Divert(reviewed, route)
		return flow.Converge(record,
			flow.Case(d, "approved", pay),
			flow.Case(d, "refused", refuse),
			flow.Otherwise(d, escalate))
	})
}

// Expenses is the pipeline with the production timeout.
var Expenses = NewExpenses(ApprovalTimeout)
