// Command enrich runs the example pipeline of the design document end to end:
// 100 users are loaded, enriched from two flaky sources in parallel, collated,
// updated, routed by status and summarised. It needs nothing but Go: the
// default backend is a SQLite file in a temporary directory.
//
//	go run ./examples/enrich                 # SQLite in a temp dir
//	go run ./examples/enrich -db ./enrich.db # keep the database
//	go run ./examples/enrich -backend postgres -dsn postgres://postgres@127.0.0.1:5432/test
//	go run ./examples/enrich -backend mysql -dsn 'root@tcp(127.0.0.1:3306)/'
//	go run ./examples/enrich -trace stdout   # print OpenTelemetry spans
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/supervisor"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "enrich:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	kind := flag.String("backend", "sqlite", "database: sqlite, postgres or mysql")
	dsn := flag.String("dsn", "", "postgres or mysql server DSN (default: the local server)")
	dbPath := flag.String("db", "", "SQLite database file to use and keep (default: a file in a temporary directory)")
	keep := flag.Bool("keep", false, "postgres/mysql: keep the schema or database the example creates")
	workers := flag.Int("workers", 16, "steps executed at once")
	verbose := flag.Bool("v", false, "log what the supervisor does")
	traceTo := flag.String("trace", "", "print OpenTelemetry spans: stdout (default: no tracing)")
	flag.Parse()

	ctx, stop := supervisor.SignalContext(context.Background())
	defer stop()

	logLevel := slog.LevelWarn
	if *verbose {
		logLevel = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))
	hooks, stopTracing, err := setupTracing(*traceTo, w)
	if err != nil {
		return err
	}
	defer func() { _ = stopTracing(context.WithoutCancel(ctx)) }()

	if *kind == "sqlite" && *dbPath != "" {
		*dsn = *dbPath
	}
	b, cleanup, err := openBackend(ctx, *kind, *dsn, *keep)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := b.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: logger, Hooks: hooks})
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
