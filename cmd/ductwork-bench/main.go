// Command ductwork-bench measures Ductwork end to end on one backend: a
// client, a supervisor and real runs, each workload on storage of its own (a
// fresh SQLite file, PostgreSQL schema or MariaDB database) that it drops
// afterwards.
//
// Workloads (-workload, default all):
//
//	jobs     W1: -n one-step runs (default 20000) triggered up front from 8
//	         goroutines (timed separately), then drained by a supervisor
//	         with -workers workers. Reports steps/s.
//	chain    W2: -n runs (default 1000) of a 10-step chain triggered at once
//	         into an idle supervisor. Reports steps/s and the p50/p99 of each
//	         run's trigger → last step's end.
//	chain-limited
//	         W2 with step.Concurrency(16) on every step (named only, not
//	         part of all): what the gated claim costs.
//	fanout   W3: one run: a step returns -n ints (default 10000), Expand to a
//	         no-op step, Collapse to one. Reports seconds and peak RSS.
//	latency  W4: -n sequential samples (default 1000) on an idle supervisor
//	         of trigger → first step's start ("latency") and, in a two-step
//	         chain, step 1's end → step 2's start ("latency-handoff").
//
// With -sync full, SQLite commits with synchronous=FULL (every commit synced,
// as the peers' SQLite figures are taken) instead of the library's default
// synchronous=NORMAL; the results and the benchmark names say which
// (BenchmarkW1Jobs/sqlite-full).
//
// With -procs N, the jobs and chain workloads are drained by N supervisor
// processes instead (-workers split evenly among them), and with -netns each
// process runs on a host of its own (a network namespace, reaching the
// database through a forwarder; root only): the scale-out curve of
// docs/SCALING.md. Such a run reports the processes' CPU and the busy share
// of the whole machine (machine_cpu), and no latencies.
//
// Output: a table (or, with -json, one JSON object per line), then lines in
// the Go benchmark format that benchstat reads (on by default, off by default
// with -json; set -benchfmt explicitly to choose). So
//
//	go run ./cmd/ductwork-bench -backend sqlite -count 3 > old.txt
//	# change something
//	go run ./cmd/ductwork-bench -backend sqlite -count 3 > new.txt
//	benchstat old.txt new.txt
//
// compares two builds. Progress goes to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/ductwork-go/ductwork"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ductwork-bench:", err)
		os.Exit(1)
	}
}

var workloadNames = []string{"jobs", "chain", "fanout", "latency"}

// extraWorkloads run only when named: chain-limited is W2 with a
// concurrency limit of 16 on every step.
var extraWorkloads = []string{"chain-limited"}

var defaultN = map[string]int{"jobs": 20000, "chain": 1000, "chain-limited": 1000, "fanout": 10000, "latency": 1000}

// workloads maps a workload to the one definition it registers and its runner.
var workloads = map[string]struct {
	def ductwork.Definition
	run func(ctx context.Context, c *ductwork.Client, s *store, workers, n int, analyze bool) ([]measured, error)
}{
	"jobs":          {JobsPipeline, runJobs},
	"chain":         {ChainPipeline, runChain},
	"chain-limited": {LimitedChainPipeline, runLimitedChain},
	"fanout":        {FanoutPipeline, runFanout},
	"latency":       {LatencyPipeline, runLatency},
}

type options struct {
	backend    string
	dsn        string
	workloads  []string
	workers    int
	n          int
	count      int
	json       bool
	benchfmt   bool
	cpuprofile string
	timeout    time.Duration
	verbose    bool
	analyze    bool
	procs      int
	netns      bool
	// sync is SQLite's synchronous setting, "normal" or "full"; "" for the
	// server backends.
	sync string

	// -serve-worker: this process is one of a -procs run's supervisors.
	serveWorker bool
	schema      string
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("ductwork-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.StringVar(&o.backend, "backend", "sqlite", "backend: sqlite, postgres or mysql")
	fs.StringVar(&o.dsn, "dsn", "", "PostgreSQL URL or MySQL DSN of the server; for sqlite a directory for the database files\n"+
		"(default: "+defaultPostgresDSN+", "+defaultMySQLDSN+", a temporary directory)")
	workload := fs.String("workload", "all", "workloads to run: jobs, chain, fanout, latency, a comma-separated list, or all")
	fs.IntVar(&o.workers, "workers", 16, "supervisor workers (steps executed at once)")
	fs.IntVar(&o.n, "n", 0, "size of each workload (default: jobs 20000 runs, chain 1000 runs, fanout 10000 branches, latency 1000 samples)")
	fs.IntVar(&o.count, "count", 1, "run each workload this many times (for benchstat)")
	fs.BoolVar(&o.json, "json", false, "print one JSON object per result instead of the table")
	fs.BoolVar(&o.benchfmt, "benchfmt", true, "print Go benchmark-format lines for benchstat after the results (default true, false with -json)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of all the workloads run to `file`")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up on a workload after this long")
	fs.BoolVar(&o.analyze, "analyze", false, "postgres, mysql: refresh the planner statistics (ANALYZE) once the jobs and chain runs are triggered,\n"+
		"as autovacuum eventually would; off by default, to measure the library as deployed")
	fs.StringVar(&o.sync, "sync", "normal", "sqlite: synchronous=normal (the library's default) or full (every commit synced, as the peers measure)")
	fs.BoolVar(&o.verbose, "v", false, "log the library's info messages to stderr")
	fs.IntVar(&o.procs, "procs", 0, "jobs, chain: drain the runs with this many supervisor processes, -workers split evenly among them\n"+
		"(0: one supervisor in this process)")
	fs.BoolVar(&o.netns, "netns", false, "with -procs: each process on a host of its own (a network namespace; needs root and ip)")
	fs.BoolVar(&o.serveWorker, "serve-worker", false, "internal: run as one supervisor process of a -procs run")
	fs.StringVar(&o.schema, "schema", "", "internal: the PostgreSQL schema of a -serve-worker process")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["benchfmt"] {
		o.benchfmt = !o.json
	}
	if !slices.Contains(backendNames, o.backend) {
		return nil, fmt.Errorf("-backend %q: want sqlite, postgres or mysql", o.backend)
	}
	switch o.sync = strings.ToLower(o.sync); {
	case o.backend != "sqlite" && set["sync"]:
		return nil, fmt.Errorf("-sync applies to sqlite only, not %s", o.backend)
	case o.backend != "sqlite":
		o.sync = ""
	case o.sync != "normal" && o.sync != "full":
		return nil, fmt.Errorf("-sync %q: want normal or full", o.sync)
	}
	if *workload == "all" {
		o.workloads = workloadNames
	} else {
		for w := range strings.SplitSeq(*workload, ",") {
			w = strings.TrimSpace(w)
			if !slices.Contains(workloadNames, w) && !slices.Contains(extraWorkloads, w) {
				return nil, fmt.Errorf("-workload %q: want jobs, chain, chain-limited, fanout, latency or all", w)
			}
			o.workloads = append(o.workloads, w)
		}
	}
	if o.workers < 1 || o.count < 1 || o.n < 0 || o.procs < 0 {
		return nil, errors.New("-workers and -count must be positive, -n and -procs not negative")
	}
	if o.netns && o.procs == 0 {
		return nil, errors.New("-netns needs -procs")
	}
	if o.procs > 0 {
		for _, w := range o.workloads {
			if w != "jobs" && w != "chain" {
				return nil, fmt.Errorf("-procs runs the jobs and chain workloads, not %s", w)
			}
		}
		if o.cpuprofile != "" {
			return nil, errors.New("-cpuprofile profiles this process only; it does not combine with -procs")
		}
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.serveWorker {
		return serveWorker(o, os.Stdin, stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	var results []result
	for _, w := range o.workloads {
		n := o.n
		if n == 0 {
			n = defaultN[w]
		}
		for i := range o.count {
			backendName := o.backend
			if o.sync != "" {
				backendName += " sync=" + o.sync
			}
			fmt.Fprintf(stderr, "%s %s n=%d workers=%d procs=%d (%d/%d) ...\n", backendName, w, n, o.workers, o.procs, i+1, o.count)
			run := runWorkload
			if o.procs > 0 {
				run = runProcs
			}
			rs, err := run(ctx, o, w, n, stderr)
			if err != nil {
				return fmt.Errorf("%s on %s: %w", w, o.backend, err)
			}
			for _, r := range rs {
				fmt.Fprintf(stderr, "  %s\n", r.summary())
			}
			results = append(results, rs...)
		}
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	} else {
		printTable(stdout, results)
	}
	if o.benchfmt {
		if !o.json {
			fmt.Fprintln(stdout)
		}
		printBenchfmt(stdout, results)
	}
	return nil
}

// runWorkload runs one workload once on fresh storage and drops it.
func runWorkload(ctx context.Context, o *options, workload string, n int, stderr io.Writer) (rs []result, err error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	s, err := openStore(ctx, o.backend, o.dsn, o.sync, o.workers+8, logger)
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := s.drop(context.WithoutCancel(ctx)); derr != nil {
			err = errors.Join(err, fmt.Errorf("drop %s: %w", s.name, derr))
		}
	}()
	c, err := ductwork.NewClient(s, &ductwork.Config{Logger: logger})
	if err != nil {
		return nil, err
	}
	w := workloads[workload]
	if err := c.Register(w.def); err != nil {
		return nil, err
	}

	runtime.GC()
	resetPeakRSS()
	cpu0 := cpuTime()
	ms, err := w.run(ctx, c, s, o.workers, n, o.analyze)
	cpu := cpuTime() - cpu0
	peak := peakRSS()
	cur.Store(nil)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		rs = append(rs, newResult(m, o, o.workers, cpu, peak))
	}
	return rs, nil
}
