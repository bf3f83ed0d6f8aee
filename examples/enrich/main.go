// Command enrich runs the example pipeline of the design document end to end:
// 100 users are loaded, enriched from two flaky sources in parallel, collated,
// updated, routed by status and summarised. It needs nothing but Go: the
// default backend is a SQLite file in a temporary directory.
//
//	go run ./examples/enrich                 # SQLite in a temp dir
//	go run ./examples/enrich -db ./enrich.db # keep the database
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/supervisor"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "enrich:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	dbPath := flag.String("db", "", "SQLite database file to use and keep (default: a file in a temporary directory)")
	workers := flag.Int("workers", 16, "steps executed at once")
	verbose := flag.Bool("v", false, "log what the supervisor does")
	flag.Parse()

	ctx, stop := supervisor.SignalContext(context.Background())
	defer stop()

	logLevel := slog.LevelWarn
	if *verbose {
		logLevel = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))

	b, cleanup, err := openBackend(*dbPath)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := b.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: logger})
	if err != nil {
		return err
	}
	if err := client.Register(Enrich); err != nil {
		return err
	}
	sup, err := supervisor.New(client, &supervisor.Config{Workers: *workers})
	if err != nil {
		return err
	}
	supCtx, stopSup := context.WithCancel(ctx)
	defer stopSup()
	supDone := make(chan error, 1)
	go func() { supDone <- sup.Run(supCtx) }()

	start := time.Now()
	r, err := ductwork.Trigger(ctx, client, Enrich, 7)
	if err != nil {
		return err
	}
	summary, err := r.Wait(ctx)
	elapsed := time.Since(start)
	stopSup()
	if serr := <-supDone; serr != nil {
		return serr
	}
	if err != nil {
		return err
	}
	steps, err := r.Steps(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "run %d completed: %d users, %d notified, %d flagged for review\n", r.ID, summary.Users, summary.Notified, summary.Flagged)
	fmt.Fprintf(w, "%d steps in %s (%.0f steps/s)\n\n", len(steps), elapsed.Round(time.Millisecond), float64(len(steps))/elapsed.Seconds())
	printTable(w, steps)
	return nil
}

func openBackend(path string) (backend.Backend, func(), error) {
	cleanup := func() {}
	if path == "" {
		dir, err := os.MkdirTemp("", "ductwork-enrich-")
		if err != nil {
			return nil, nil, err
		}
		path = filepath.Join(dir, "enrich.db")
		cleanup = func() { _ = os.RemoveAll(dir) }
	}
	b, err := sqlite.Open(path, nil)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return b, func() { _ = b.Close(context.Background()); cleanup() }, nil
}

func printTable(w io.Writer, steps []ductwork.StepInfo) {
	type row struct {
		first            int64
		instances, execs int
		retried, reruns  int
		maxAttempt       int
	}
	rows := map[string]*row{}
	for _, s := range steps {
		r := rows[s.Node]
		if r == nil {
			r = &row{first: s.ID}
			rows[s.Node] = r
		}
		r.instances++
		r.execs += s.Attempt + s.CrashReruns
		if s.Attempt > 1 {
			r.retried++
		}
		r.reruns += s.CrashReruns
		r.maxAttempt = max(r.maxAttempt, s.Attempt)
	}
	nodes := make([]string, 0, len(rows))
	for n := range rows {
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return rows[nodes[i]].first < rows[nodes[j]].first })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\tinstances\texecutions\tretried\tmax attempt\tcrash re-runs\t")
	for _, n := range nodes {
		r := rows[n]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", n, r.instances, r.execs, r.retried, r.maxAttempt, r.reruns)
	}
	_ = tw.Flush()
}
