package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

// User is a user record being enriched.
type User struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Score int    `json:"score"`
}

// Enrichment is what one source knows about a user.
type Enrichment struct {
	Source string `json:"source"`
	UserID int64  `json:"user_id"`
	Score  int    `json:"score"`
}

// Result is the outcome of updating a user.
type Result struct {
	User   User   `json:"user"`
	Status string `json:"status"`
}

// Outcome is what was done with the result.
type Outcome struct {
	UserID int64  `json:"user_id"`
	Action string `json:"action"`
}

// Final is the finalized record of one user.
type Final struct {
	UserID int64  `json:"user_id"`
	Action string `json:"action"`
}

// Summary is the run's output.
type Summary struct {
	Users    int `json:"users"`
	Notified int `json:"notified"`
	Flagged  int `json:"flagged"`
}

var errSourceFlaky = errors.New("source temporarily unavailable")

// The steps, with fake sources. Some fail once and succeed on retry.
var (
	QueryUsers = step.New("query-users", func(ctx step.Context, daysOutdated int) ([]int64, error) {
		ids := make([]int64, 100)
		for i := range ids {
			ids[i] = int64(i + 1)
		}
		return ids, nil
	})
	LoadUser = step.New("load-user", func(ctx step.Context, id int64) (User, error) {
		return User{ID: id, Name: fmt.Sprintf("user-%03d", id)}, nil
	})
	FetchA = step.New("fetch-source-a", func(ctx step.Context, u User) (Enrichment, error) {
		if u.ID%10 == 3 && ctx.Attempt() == 1 {
			return Enrichment{}, errSourceFlaky
		}
		return Enrichment{Source: "a", UserID: u.ID, Score: int(u.ID % 7)}, nil
	}, step.Retries(3))
	FetchB = step.New("fetch-source-b", func(ctx step.Context, u User) (Enrichment, error) {
		if u.ID%25 == 0 && ctx.Attempt() == 1 {
			return Enrichment{}, errSourceFlaky
		}
		return Enrichment{Source: "b", UserID: u.ID, Score: int(u.ID % 5)}, nil
	}, step.Retries(3))
	Collate = step.New("collate-user-data", func(ctx step.Context, es []Enrichment) (User, error) {
		u := User{ID: es[0].UserID, Name: fmt.Sprintf("user-%03d", es[0].UserID)}
		for _, e := range es {
			u.Score += e.Score
		}
		return u, nil
	})
	Update = step.New("update-user-data", func(ctx step.Context, u User) (Result, error) {
		status := "success"
		if u.Score < 3 {
			status = "needs-review"
		}
		return Result{User: u, Status: status}, nil
	})
	Notify = step.New("notify-user", func(ctx step.Context, r Result) (Outcome, error) {
		return Outcome{UserID: r.User.ID, Action: "notified"}, nil
	})
	Flag = step.New("flag-for-review", func(ctx step.Context, r Result) (Outcome, error) {
		return Outcome{UserID: r.User.ID, Action: "flagged"}, nil
	})
	Finalize = step.New("finalize-user-record", func(ctx step.Context, o Outcome) (Final, error) {
		return Final(o), nil
	})
	Report = step.New("report-enrichment", func(ctx step.Context, fs []Final) (Summary, error) {
		s := Summary{Users: len(fs)}
		for _, f := range fs {
			if f.Action == "notified" {
				s.Notified++
			} else {
				s.Flagged++
			}
		}
		return s, nil
	})
)

// Enrich is the pipeline of the design document.
var Enrich = flow.MustDefine("enrich-all-users", func(p *flow.Pipeline[int]) flow.End[Summary] {
	ids := flow.Start(p, QueryUsers)
	user := flow.Expand(ids, LoadUser)
	a, b := flow.Divide2(user, FetchA, FetchB)
	collated := flow.Combine(Collate, a, b)
	result := flow.Chain(collated, Update)
	d := flow.Divert(result, func(r Result) string { return r.Status })
	final := flow.Converge(Finalize, flow.Case(d, "success", Notify), flow.Otherwise(d, Flag))
	return flow.Collapse(final, Report)
}, flow.Backoff(10*time.Millisecond, time.Second))
