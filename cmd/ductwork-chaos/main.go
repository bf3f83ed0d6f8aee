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
//     so that they kill themselves at a named point of the engine or inside a
//     backend transaction (the binary must be built with
//     -tags ductwork_crashpoints);
//   - with -netfaults, puts a fault proxy (toxiproxy, in this process)
//     between every worker and the database and injects, in turn: latency
//     and jitter, connection resets, a blackhole longer than the reap
//     threshold, a bandwidth limit, and cuts between COMMIT and its reply.
//     After each it waits for the runs triggered before to finish and looks
//     for claims held by live processes that never ran them; a worker told to
//     shut down inside a blackhole must exit within its grace and a bound;
//   - with -hosts N, runs the workers in N network namespaces, each with its
//     own link to the database (through its own fault proxy), and adds the
//     partition fault: a host's link goes down for longer than the reap
//     threshold while its processes stay alive, then comes back. Where
//     namespaces cannot be created it says so and falls back to processes on
//     the loopback. The namespaces are removed at exit (and those of a killed
//     earlier run at the next start);
//   - with -nodes, spreads the workers over the nodes of a database cluster
//     (a MariaDB Galera cluster: scripts/galera.sh; a PostgreSQL primary and
//     its standby: scripts/pgpair.sh), and with -node-fault/-node-heal fails
//     one node mid-run (SIGKILL) for longer than the reap threshold, then
//     brings it back.
//
// Workers check at exit that no goroutine outlived their shutdown.
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
//	go run ./cmd/ductwork-chaos -backend postgres -hosts 4 -netfaults all -duration 10m
//	go run ./cmd/ductwork-chaos -backend mysql -dsn 'root@tcp(127.0.0.1:13306)/' \
//		-nodes 127.0.0.1:13306,127.0.0.1:13307,127.0.0.1:13308 \
//		-node-fault 'scripts/galera.sh kill 1' -node-heal 'scripts/galera.sh start 1'
//
// The storage is dropped at exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ductwork-go/ductwork/internal/crashpoint"
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
	limit         int
	duration      time.Duration
	timeout       time.Duration
	killEvery     time.Duration
	reapThreshold time.Duration
	restartDB     bool
	crashpoints   bool
	short         bool
	verbose       bool
	hosts         int
	netfaults     string
	faults        []string
	faultWindow   time.Duration
	drainLimit    time.Duration
	nodes         []string
	nodeFault     string
	nodeHeal      string
	txsteps       bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	var err error
	fs := flag.NewFlagSet("ductwork-chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.backend, "backend", "sqlite", "sqlite, postgres or mysql")
	fs.StringVar(&o.dsn, "dsn", "", "server DSN (postgres, mysql; default the local server) or directory for the SQLite file (default a temporary one)")
	fs.IntVar(&o.procs, "procs", 4, "worker processes")
	fs.IntVar(&o.runs, "runs", 200, "runs to trigger")
	fs.IntVar(&o.workers, "workers", 8, "step workers per process")
	fs.IntVar(&o.limit, "limit", 0, "put a concurrency limit of this many on step "+limitedNode+" (0 = none) and check that no more executions of it ran at once")
	fs.DurationVar(&o.duration, "duration", 0, "how long the faults go on, with -runs/2 more runs triggered whenever fewer than -runs/2 are unfinished; 0 = until the -runs runs finished (bounded by -timeout); with network faults, they go round at least once and until -duration, with runs kept queued")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "hard limit from the first trigger until every run finished")
	fs.DurationVar(&o.killEvery, "kill-every", 3*time.Second, "SIGKILL a random worker this often (0 = never)")
	fs.DurationVar(&o.reapThreshold, "reap-threshold", 2*time.Second, "the supervisors' ReapThreshold")
	fs.BoolVar(&o.restartDB, "restart-db", false, "restart the database server once mid-run (postgres, mysql; root)")
	fs.BoolVar(&o.crashpoints, "crashpoints", false, "start every other replacement worker with DUCTWORK_CRASHPOINT set to one of the engine's crash points")
	fs.BoolVar(&o.short, "short", false, "CI mode (under 3 minutes): faults for 45s (-duration) with 100 runs kept queued, a kill every 2s, at most 150s in all (-timeout); with -netfaults or -hosts: each network fault once, 4s long (-fault-window), 16 runs kept queued, no kills, 30s for the runs to drain after each fault (-drain-limit), at most 170s")
	fs.BoolVar(&o.verbose, "v", false, "let workers log warnings")
	fs.IntVar(&o.hosts, "hosts", 0, "run the workers in this many network namespaces (hosts), each reaching the database over its own link, and partition them in turn (root; postgres, mysql); 0 = processes on the loopback")
	fs.StringVar(&o.netfaults, "netfaults", "", "network faults between every worker and the database, in turn: all, or a list of "+strings.Join(allFaults, ",")+" (postgres, mysql; partition needs -hosts)")
	fs.DurationVar(&o.faultWindow, "fault-window", 8*time.Second, "how long each network fault lasts (a blackhole or partition at least twice the reap threshold plus 1s)")
	fs.DurationVar(&o.drainLimit, "drain-limit", 90*time.Second, "after a fault heals, how long the runs triggered before may take to finish")
	fs.BoolVar(&o.txsteps, "txsteps", false, "the exactly-once variant: every step is a transactional step that adds one to its own counter and its run's in a user table of the chaos storage, inside the completion transaction; at the end every counter must equal its expected value exactly")
	var nodes string
	fs.StringVar(&nodes, "nodes", "", "comma-separated host:port of the database cluster's nodes (postgres, mysql): workers are spread over them in turn, connecting with -dsn's user and database; the controller and the execution record use -dsn")
	fs.StringVar(&o.nodeFault, "node-fault", "", "shell command run once mid-run to fail a cluster node (e.g. 'scripts/galera.sh kill 1'); -node-heal runs after twice the reap threshold")
	fs.StringVar(&o.nodeHeal, "node-heal", "", "shell command that brings the failed node back and returns once it serves again (e.g. 'scripts/galera.sh start 1')")
	if err = fs.Parse(args); err != nil {
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
			if o.netfaults != "" {
				o.runs = 16 // a backlog each fault's drain clears in seconds
			}
		}
		if !set["duration"] && o.netfaults == "" && o.hosts == 0 {
			o.duration = 45 * time.Second // with network faults: one round of them
		}
		if !set["kill-every"] {
			o.killEvery = 2 * time.Second
			if o.netfaults != "" || o.hosts > 0 {
				o.killEvery = 0 // the network is the fault
			}
		}
		if !set["fault-window"] {
			o.faultWindow = 4 * time.Second
		}
		if !set["drain-limit"] {
			o.drainLimit = 30 * time.Second
		}
		if !set["timeout"] {
			o.timeout = 150 * time.Second
			if o.netfaults != "" {
				o.timeout = 170 * time.Second
			}
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
	case o.hosts < 0 || o.faultWindow <= 0 || o.drainLimit <= 0:
		return nil, fmt.Errorf("%w: negative -hosts, or no -fault-window or -drain-limit", errUsage)
	case (o.hosts > 0 || o.netfaults != "") && o.backend == "sqlite":
		return nil, fmt.Errorf("%w: -hosts and -netfaults need a server backend (SQLite has no network)", errUsage)
	}
	if nodes != "" {
		for _, n := range strings.Split(nodes, ",") {
			if _, _, err := net.SplitHostPort(strings.TrimSpace(n)); err != nil {
				return nil, fmt.Errorf("%w: -nodes: %q is not host:port", errUsage, n)
			}
			o.nodes = append(o.nodes, strings.TrimSpace(n))
		}
	}
	switch {
	case len(o.nodes) > 0 && o.backend == "sqlite":
		return nil, fmt.Errorf("%w: -nodes needs a server backend", errUsage)
	case len(o.nodes) > 0 && (o.hosts > 0 || o.netfaults != ""):
		return nil, fmt.Errorf("%w: -nodes does not combine with -hosts or -netfaults", errUsage)
	case (o.nodeFault == "") != (o.nodeHeal == ""):
		return nil, fmt.Errorf("%w: -node-fault and -node-heal go together", errUsage)
	case o.nodeFault != "" && o.restartDB:
		return nil, fmt.Errorf("%w: -node-fault replaces -restart-db on a cluster; give one of them", errUsage)
	}
	if o.crashpoints && !crashpoint.Compiled {
		return nil, fmt.Errorf("%w: -crashpoints needs a binary built with -tags ductwork_crashpoints", errUsage)
	}
	if o.faults, err = faultList(o.netfaults, o.hosts); err != nil {
		return nil, err
	}
	if o.hosts > 0 && len(o.faults) == 0 {
		o.faults = []string{faultPartition} // hosts are there to be partitioned
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
	if o.limit > 0 {
		// The workers inherit it and define the pipeline with the limit.
		if err := os.Setenv(limitEnv, strconv.Itoa(o.limit)); err != nil {
			fmt.Fprintln(stderr, "ductwork-chaos:", err)
			return 2
		}
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
