// Command approval is a human-in-the-loop example: an expense waits for its
// manager's decision (a typed signal) for up to 48 hours, holding no worker
// while it waits, and is paid, refused or escalated. One command runs the
// workers, another submits expenses, a third approves them, all on one
// SQLite file:
//
//	go run ./examples/approval -db approval.db worker &          # runs the steps
//	go run ./examples/approval -db approval.db submit -who ana -amount 120
//	go run ./examples/approval -db approval.db status -run 1    # waiting
//	go run ./examples/approval -db approval.db approve -run 1 -by bob
//	go run ./examples/approval -db approval.db status -run 1    # completed: paid 120.00 to ana
//
// `serve -addr :8080` runs the workers with an HTTP endpoint instead
// (POST /approve?run=N with a JSON Decision), see ApproveHandler.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/supervisor"
)

func main() {
	ctx, stop := supervisor.SignalContext(context.Background())
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "approval:", err)
		os.Exit(1)
	}
}

const usage = "usage: approval [-db file] worker|serve|submit|approve|status [flags]"

// run executes one command. It is main without the process around it, so
// the test runs the commands as a user would.
func run(ctx context.Context, args []string, w io.Writer) error {
	top := flag.NewFlagSet("approval", flag.ContinueOnError)
	dbPath := top.String("db", "approval.db", "SQLite database file shared by the commands")
	if err := top.Parse(args); err != nil {
		return err
	}
	if top.NArg() == 0 {
		return errors.New(usage)
	}
	b, err := sqlite.Open(*dbPath, nil)
	if err != nil {
		return err
	}
	defer func() { _ = b.Close(context.WithoutCancel(ctx)) }()
	if err := b.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: logger})
	if err != nil {
		return err
	}
	if err := client.Register(Expenses); err != nil {
		return err
	}

	cmd, rest := top.Arg(0), top.Args()[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	switch cmd {
	case "worker", "serve":
		addr := fs.String("addr", ":8080", "serve: HTTP address")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		sup, err := supervisor.New(client, &supervisor.Config{Logger: logger})
		if err != nil {
			return err
		}
		if cmd == "serve" {
			mux := http.NewServeMux()
			mux.Handle("/approve", ApproveHandler(client))
			srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			go func() { _ = srv.ListenAndServe() }()
			defer func() { _ = srv.Shutdown(context.WithoutCancel(ctx)) }()
		}
		fmt.Fprintln(w, "running; interrupt to stop")
		return sup.Run(ctx)
	case "submit":
		who := fs.String("who", "ana", "who spent it")
		amount := fs.Float64("amount", 0, "how much")
		id := fs.String("id", "", "expense ID (default: generated)")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if *id == "" {
			*id = fmt.Sprintf("exp-%d", time.Now().UnixNano())
		}
		r, err := ductwork.Trigger(ctx, client, Expenses, Expense{ID: *id, Who: *who, Amount: *amount})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "run %d: expense %s submitted\n", r.ID, *id)
		return nil
	case "approve":
		runID := fs.Int64("run", 0, "the run to decide")
		by := fs.String("by", "manager", "who decides")
		reject := fs.Bool("reject", false, "refuse instead of approving")
		note := fs.String("note", "", "a note")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		err := ductwork.Send(ctx, client, *runID, Approval, Decision{Approved: !*reject, By: *by, Note: *note})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "run %d: decision sent\n", *runID)
		return nil
	case "status":
		runID := fs.Int64("run", 0, "the run")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		r, err := ductwork.Open(ctx, client, Expenses, *runID)
		if err != nil {
			return err
		}
		st, err := r.Status(ctx)
		if err != nil {
			return err
		}
		if st != ductwork.RunCompleted {
			fmt.Fprintf(w, "run %d: %s\n", *runID, st)
			return nil
		}
		out, err := r.Wait(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "run %d: %s: %s\n", *runID, st, out)
		return nil
	default:
		return errors.New(usage)
	}
}
