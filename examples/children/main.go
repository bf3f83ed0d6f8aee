// Command children runs its steps in supervised child processes: the
// program re-executes itself as two child workers, one step ignores its
// context past its timeout on its first attempt (only the end of its process
// stops it), and the parent triggers a few runs, prints where each step ran,
// and stops everything gracefully:
//
//	go run ./examples/children
//
// The children run the same main: supervisor.IsChild tells them apart, and
// in a child, Run executes steps.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// Where says which process ran a step.
type Where struct {
	N       int `json:"n"`
	PID     int `json:"pid"`
	Attempt int `json:"attempt"`
}

var (
	// Locate reports the process it runs in. Its first execution for n = 0
	// ignores its context, past its 500ms timeout: the step is abandoned,
	// its child process is replaced, and the retry runs in another child.
	Locate = step.New("locate", func(ctx step.Context, n int) (Where, error) {
		if n == 0 && ctx.Attempt() == 1 {
			select {} // never returns, whatever its context says
		}
		return Where{N: n, PID: os.Getpid(), Attempt: ctx.Attempt()}, nil
	}, step.Timeout(500*time.Millisecond), step.Retries(2), step.Backoff(10*time.Millisecond, time.Second))

	Locations = flow.MustDefine("locations", func(p *flow.Pipeline[int]) flow.End[Where] {
		return flow.Start(p, Locate)
	})
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "children:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := supervisor.SignalContext(context.Background())
	defer stop()
	// The parent picks the database file; its children inherit the
	// environment, so they open the same one.
	if os.Getenv("CHILDREN_DB") == "" {
		dir, err := os.MkdirTemp("", "ductwork-children")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(dir) }()
		if err := os.Setenv("CHILDREN_DB", filepath.Join(dir, "children.db")); err != nil {
			return err
		}
	}
	b, err := sqlite.Open(os.Getenv("CHILDREN_DB"), nil)
	if err != nil {
		return err
	}
	defer func() { _ = b.Close(context.Background()) }()
	if !supervisor.IsChild() {
		if err := b.Migrate(ctx); err != nil {
			return err
		}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quiet})
	if err != nil {
		return err
	}
	if err := client.Register(Locations); err != nil {
		return err
	}
	sup, err := supervisor.New(client, &supervisor.Config{
		Processes: 2, Workers: 4, StuckGrace: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond, Logger: quiet,
		Children: supervisor.Children{MaxSteps: 3},
	})
	if err != nil {
		return err
	}
	if supervisor.IsChild() {
		return sup.Run(ctx) // executes steps until the parent stops it
	}

	supCtx, stopSup := context.WithCancel(ctx)
	defer stopSup()
	supDone := make(chan error, 1)
	go func() { supDone <- sup.Run(supCtx) }()
	fmt.Println("parent", os.Getpid())
	for n := range 4 {
		r, err := ductwork.Trigger(ctx, client, Locations, n)
		if err != nil {
			return err
		}
		w, err := r.Wait(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("step %d ran in child %d (attempt %d)\n", w.N, w.PID, w.Attempt)
	}
	stopSup() // SIGTERM to the children; they finish and deregister
	if err := <-supDone; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
