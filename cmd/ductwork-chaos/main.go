// Command ductwork-chaos checks Ductwork's durability contract under faults.
//
// It creates fresh storage on one backend (a SQLite file, a PostgreSQL schema
// or a MariaDB/MySQL database), starts -procs worker processes (this binary
// re-executed, each running a supervisor with short heartbeat and reap
// settings), triggers -runs runs of a pipeline that uses every transition,
// and meanwhile:
//
//   - SIGKILLs a random worker every -kill-every and starts a replacement;
//   - once, SIGSTOPs a worker for twice the reap threshold, then SIGCONTs it
//     (the zombie must change nothing);
//   - with -restart-db, restarts the database server once (root only);
//   - with -crashpoints, starts some replacements with DUCTWORK_CRASHPOINT set,
//     so that they kill themselves at a named point of the engine.
//
// Every step execution is recorded in a table of its own (chaos_executions),
// through a connection of its own. At the end the command compares the
// library's listings (ListRuns, ListJobs) with those records and the values
// expected from the inputs, prints one line per count, and exits 1 if an
// invariant failed:
//
//	go run ./cmd/ductwork-chaos -backend sqlite -short
//	go run ./cmd/ductwork-chaos -backend postgres -restart-db
//	go run ./cmd/ductwork-chaos -backend mysql -runs 500 -kill-every 2s
//
// The storage is dropped at exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if raw := os.Getenv(workerEnv); raw != "" {
		os.Exit(runWorker(raw))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type options struct {
	backend       string
	dsn           string
	procs         int
	runs          int
	workers       int
	duration      time.Duration
	timeout       time.Duration
	killEvery     time.Duration
	reapThreshold time.Duration
	restartDB     bool
	crashpoints   bool
	short         bool
	verbose       bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("ductwork-chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.backend, "backend", "sqlite", "sqlite, postgres or mysql")
	fs.StringVar(&o.dsn, "dsn", "", "server DSN (postgres, mysql; default the local server) or directory for the SQLite file (default a temporary one)")
	fs.IntVar(&o.procs, "procs", 4, "worker processes")
	fs.IntVar(&o.runs, "runs", 200, "runs to trigger")
	fs.IntVar(&o.workers, "workers", 8, "step workers per process")
	fs.DurationVar(&o.duration, "duration", 0, "how long the faults go on, with -runs/2 more runs triggered whenever fewer than -runs/2 are unfinished; 0 = until the -runs runs finished (bounded by -timeout)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "hard limit from the first trigger until every run finished")
	fs.DurationVar(&o.killEvery, "kill-every", 3*time.Second, "SIGKILL a random worker this often (0 = never)")
	fs.DurationVar(&o.reapThreshold, "reap-threshold", 2*time.Second, "the supervisors' ReapThreshold")
	fs.BoolVar(&o.restartDB, "restart-db", false, "restart the database server once mid-run (postgres, mysql; root)")
	fs.BoolVar(&o.crashpoints, "crashpoints", false, "start every other replacement worker with DUCTWORK_CRASHPOINT set to one of the engine's crash points")
	fs.BoolVar(&o.short, "short", false, "CI mode (under 3 minutes): faults for 45s (-duration) with 100 runs kept queued, a kill every 2s, at most 150s in all (-timeout)")
	fs.BoolVar(&o.verbose, "v", false, "let workers log warnings")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if o.short {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["runs"] {
			o.runs = 100
		}
		if !set["duration"] {
			o.duration = 45 * time.Second
		}
		if !set["kill-every"] {
			o.killEvery = 2 * time.Second
		}
		if !set["timeout"] {
			o.timeout = 150 * time.Second
		}
	}
	switch {
	case o.backend != "sqlite" && o.backend != "postgres" && o.backend != "mysql":
		return nil, fmt.Errorf("%w: unknown -backend %q (want sqlite, postgres or mysql)", errUsage, o.backend)
	case o.procs < 2:
		return nil, fmt.Errorf("%w: -procs must be at least 2 (one is frozen, one must reap it)", errUsage)
	case o.runs < 1 || o.workers < 1:
		return nil, fmt.Errorf("%w: -runs and -workers must be positive", errUsage)
	case o.reapThreshold < 400*time.Millisecond:
		return nil, fmt.Errorf("%w: -reap-threshold must be at least 400ms", errUsage)
	case o.killEvery < 0 || o.duration < 0 || o.timeout <= 0:
		return nil, fmt.Errorf("%w: negative -kill-every or -duration, or no -timeout", errUsage)
	}
	if o.restartDB {
		if err := restartSupported(o.backend); err != nil {
			return nil, fmt.Errorf("%w: -restart-db: %w", errUsage, err)
		}
	}
	return o, nil
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ductwork-chaos:", err)
		return 2
	}
	rep, err := runChaos(ctx, o, stderr)
	if rep != nil {
		rep.print(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "ductwork-chaos:", err)
		return 1
	}
	if !rep.ok() {
		fmt.Fprintln(stderr, "ductwork-chaos: FAILED")
		return 1
	}
	return 0
}
