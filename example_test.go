package ductwork_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// A pipeline that splits a sentence into words, upper-cases each word on its
// own branch, and joins them back in order.
func Example() {
	split := step.New("split", func(_ step.Context, s string) ([]string, error) { return strings.Fields(s), nil })
	upper := step.New("upper", func(_ step.Context, w string) (string, error) { return strings.ToUpper(w), nil })
	join := step.New("join", func(_ step.Context, ws []string) (string, error) { return strings.Join(ws, " "), nil })
	shout := flow.MustDefine("shout", func(p *flow.Pipeline[string]) flow.End[string] {
		return flow.Collapse(flow.Expand(flow.Start(p, split), upper), join)
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
	client, _ := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
	_ = client.Register(shout)
	sup, _ := supervisor.New(client, nil)
	supCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- sup.Run(supCtx) }()
	defer func() { stop(); <-done }()

	run, err := ductwork.Trigger(ctx, client, shout, "durable work in order")
	if err != nil {
		panic(err)
	}
	out, err := run.Wait(ctx)
	fmt.Println(out, err)
	// Output: DURABLE WORK IN ORDER <nil>
}

// Define reports a broken rule with the pipeline, the node and the rule.
func ExampleDefinitionError() {
	load := step.New("load", func(_ step.Context, n int) (int, error) { return n, nil })
	report := step.New("report", func(_ step.Context, ns []int) (int, error) { return len(ns), nil })
	_, err := flow.Define("broken", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Collapse(flow.Start(p, load), report) // no Expand to collapse
	})
	fmt.Println(err)
	// Output: flow: pipeline "broken", node "load": Collapse without an open Expand on this branch (collapsing into "report")
}
