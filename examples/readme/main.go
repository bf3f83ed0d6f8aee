package main

import (
	"context"
	"fmt"
	"log"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// Stand-ins for your types and steps.
type User struct{ ID int64 }
type Enrichment struct{ Source string }
type Result struct {
	User   User
	Status string
}
type Outcome struct{ Note string }
type Final struct{ Note string }
type Summary struct{ Users int }

var QueryUsers = step.New("query-users", func(ctx step.Context, days int) ([]int64, error) { return []int64{1, 2, 3}, nil })
var LoadUser = step.New("load-user", func(ctx step.Context, id int64) (User, error) { return User{ID: id}, nil }, step.Retries(5))
var FetchA = step.New("fetch-a", func(ctx step.Context, u User) (Enrichment, error) { return Enrichment{"a"}, nil })
var FetchB = step.New("fetch-b", func(ctx step.Context, u User) (Enrichment, error) { return Enrichment{"b"}, nil })
var Collate = step.New("collate", func(ctx step.Context, es []Enrichment) (User, error) { return User{}, nil })
var Update = step.New("update", func(ctx step.Context, u User) (Result, error) { return Result{u, "success"}, nil })
var Notify = step.New("notify", func(ctx step.Context, r Result) (Outcome, error) { return Outcome{"notified"}, nil })
var Flag = step.New("flag", func(ctx step.Context, r Result) (Outcome, error) { return Outcome{"flagged"}, nil })
var Finalize = step.New("finalize", func(ctx step.Context, o Outcome) (Final, error) { return Final(o), nil })
var Report = step.New("report", func(ctx step.Context, fs []Final) (Summary, error) { return Summary{len(fs)}, nil })

var Enrich = flow.MustDefine("enrich-all-users", func(p *flow.Pipeline[int]) flow.End[Summary] {
	ids := flow.Start(p, QueryUsers)           // Node[[]int64]
	user := flow.Expand(ids, LoadUser)         // Node[User], one branch per id
	a, b := flow.Divide2(user, FetchA, FetchB) // same input, parallel branches
	collated := flow.Combine(Collate, a, b)    // waits for both; gets []Enrichment in order
	result := flow.Chain(collated, Update)
	d := flow.Divert(result, func(r Result) string { return r.Status })
	final := flow.Converge(Finalize, flow.Case(d, "success", Notify), flow.Otherwise(d, Flag))
	return flow.Collapse(final, Report) // gathers the expansion: []Final in index order
})

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, stop := supervisor.SignalContext(context.Background()) // cancelled by Ctrl-C or SIGTERM
	defer stop()

	b, err := sqlite.Open("app.db", nil) // or postgres.New(pool, nil), mysql.New(db, nil)
	if err != nil {
		return err
	}
	defer b.Close(context.Background())
	if err := b.Migrate(ctx); err != nil {
		return err
	}
	client, err := ductwork.NewClient(b, nil)
	if err != nil {
		return err
	}
	if err := client.Register(Enrich); err != nil {
		return err
	}
	sup, err := supervisor.New(client, nil)
	if err != nil {
		return err
	}
	supCtx, stopSup := context.WithCancel(ctx)
	defer stopSup()
	supDone := make(chan error, 1)
	go func() { supDone <- sup.Run(supCtx) }() // Run returns after a graceful shutdown (nil) or a failed start

	run, err := ductwork.Trigger(ctx, client, Enrich, 7) // typed input; TriggerTx joins your transaction
	if err != nil {
		return err
	}
	summary, err := run.Wait(ctx) // typed output
	fmt.Println(summary, err)

	stopSup() // shut down: in-flight steps finish, claims are released
	return <-supDone
}
