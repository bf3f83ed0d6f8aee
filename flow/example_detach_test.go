package flow_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// Branches nobody waits on: once an order is placed, a receipt is sent, the
// CRM is updated in two steps, and every follower is notified, each on a
// branch of its own that ends with flow.Detach. No dummy join is needed.
// The run's output is the placed order; the run completes when the order is
// placed and every detached branch has finished.
func ExampleDetach() {
	var (
		mu  sync.Mutex
		log []string
	)
	did := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		log = append(log, s)
	}
	place := step.New("place-order", func(_ step.Context, id int) (int, error) { return id, nil })
	receipt := step.New("send-receipt", func(_ step.Context, id int) (string, error) {
		did(fmt.Sprintf("receipt for order %d", id))
		return "sent", nil
	})
	customer := step.New("find-customer", func(_ step.Context, id int) (string, error) { return "ada", nil })
	crm := step.New("update-crm", func(_ step.Context, name string) (bool, error) {
		did("crm updated for " + name)
		return true, nil
	})
	followers := step.New("list-followers", func(_ step.Context, id int) ([]string, error) {
		return []string{"bob", "eve"}, nil
	})
	notify := step.New("notify", func(_ step.Context, name string) (bool, error) {
		did("notified " + name)
		return true, nil
	})
	orders := flow.MustDefine("orders", func(p *flow.Pipeline[int]) flow.End[int] {
		order := flow.Start(p, place)
		r, c, f := flow.Divide3(order, receipt, customer, followers)
		flow.Detach(r)
		flow.Detach(flow.Chain(c, crm))
		flow.Detach(flow.Expand(f, notify)) // one branch per follower, no Collapse
		return order
	})

	dir, _ := os.MkdirTemp("", "ductwork-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	b, err := sqlite.Open(filepath.Join(dir, "example.db"), nil)
	if err != nil {
		panic(err)
	}
	defer b.Close(ctx)
	if err := b.Migrate(ctx); err != nil {
		panic(err)
	}
	client, _ := ductwork.NewClient(b, &ductwork.Config{Logger: slog.New(slog.DiscardHandler)})
	_ = client.Register(orders)
	sup, _ := supervisor.New(client, &supervisor.Config{Logger: slog.New(slog.DiscardHandler)})
	supCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- sup.Run(supCtx) }()
	defer func() { stop(); <-done }()

	run, err := ductwork.Trigger(ctx, client, orders, 42)
	if err != nil {
		panic(err)
	}
	out, err := run.Wait(ctx)
	fmt.Println("order", out, err)
	mu.Lock()
	slices.Sort(log) // the branches ran in parallel
	for _, s := range log {
		fmt.Println(s)
	}
	mu.Unlock()
	// Output:
	// order 42 <nil>
	// crm updated for ada
	// notified bob
	// notified eve
	// receipt for order 42
}
