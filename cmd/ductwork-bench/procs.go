package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/faultproxy"
	"github.com/ductwork-go/ductwork/internal/netns"
	"github.com/ductwork-go/ductwork/supervisor"
)

// Multi-process runs (-procs N): the runs are triggered up front by this
// process, then N supervisor processes, with -workers split evenly among
// them, drain them; with -netns each process runs on a host of its own (a
// network namespace, internal/netns) and reaches the database through a
// forwarder on its link's root end. steps/s is measured from the moment
// every process is connected and told to start until no run is left running
// (polled every pollEvery by an indexed query). cpu_seconds is the
// processes' CPU; machine_cpu is the share of the machine's CPU time (every
// core, database server included) that was busy meanwhile.

const pollEvery = 20 * time.Millisecond

// nsPrefix names the namespaces of -netns runs.
const nsPrefix = "dwbench-"

// attachment is what a worker process needs to reach a store.
type attachment struct {
	kind, dsn, schema string
	// sync is SQLite's synchronous setting (-sync).
	sync string
}

// serveWorker is the -serve-worker mode: attach to the store, say "ready" on
// stdout, wait for "go" on stdin, run a supervisor until stdin closes.
func serveWorker(o *options, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, closeB, err := attachStore(ctx, attachment{kind: o.backend, dsn: o.dsn, schema: o.schema, sync: o.sync}, o.workers+8, logger)
	if err != nil {
		return err
	}
	defer closeB()
	c, err := ductwork.NewClient(b, &ductwork.Config{Logger: logger})
	if err != nil {
		return err
	}
	if err := c.Register(workloads[o.workloads[0]].def); err != nil {
		return err
	}
	sup, err := supervisor.New(c, &supervisor.Config{Workers: o.workers})
	if err != nil {
		return err
	}
	in := bufio.NewScanner(stdin)
	fmt.Fprintln(stdout, "ready")
	if !in.Scan() || in.Text() != "go" {
		return nil // the controller gave up
	}
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	for in.Scan() {
	}
	cancel()
	return <-done
}

// runProcs runs workload (jobs or chain) once with o.procs worker processes.
func runProcs(ctx context.Context, o *options, workload string, n int, stderr io.Writer) (rs []result, err error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := openStore(ctx, o.backend, o.dsn, o.sync, 16, logger)
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
	steps := n
	switch workload {
	case "jobs":
		err = triggerMany(ctx, c, JobsPipeline, n, func(i int) int { return i })
	case "chain":
		steps = n * chainLen
		err = triggerMany(ctx, c, ChainPipeline, n, func(int) int64 { return mono() })
	default:
		return nil, fmt.Errorf("-procs runs jobs and chain, not %s", workload)
	}
	if err != nil {
		return nil, fmt.Errorf("trigger: %w", err)
	}
	if o.analyze && s.analyze != nil {
		if err := s.analyze(ctx); err != nil {
			return nil, err
		}
	}

	att := s.attach
	var hosts []*netns.Host
	if o.netns {
		var teardown func()
		hosts, teardown, err = netns.Setup(nsPrefix, o.procs)
		if err != nil {
			return nil, fmt.Errorf("-netns: %w", err)
		}
		defer teardown()
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	per := max(1, o.workers/o.procs)
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Scanner
	}
	var children []*child
	defer func() {
		for _, ch := range children {
			_ = ch.stdin.Close()
		}
		for _, ch := range children {
			_ = ch.cmd.Wait()
		}
	}()
	for i := range o.procs {
		a := att
		var cmd *exec.Cmd
		if hosts != nil {
			up, err := serverAddr(a)
			if err != nil {
				return nil, err
			}
			_, port, _ := net.SplitHostPort(up)
			px, err := faultproxy.StartOn(net.JoinHostPort(hosts[i].DataAddr, port), up)
			if err != nil {
				return nil, fmt.Errorf("forwarder for host %d: %w", i, err)
			}
			defer px.Close()
			if a.dsn, err = withAddr(a, px.Addr()); err != nil {
				return nil, err
			}
			cmd = hosts[i].Command(self)
		} else {
			cmd = exec.Command(self)
		}
		cmd.Args = append(cmd.Args, "-serve-worker", "-backend", a.kind, "-dsn", a.dsn, "-schema", a.schema,
			"-workers", strconv.Itoa(per), "-workload", workload)
		if a.sync != "" {
			cmd.Args = append(cmd.Args, "-sync", a.sync)
		}
		cmd.Stderr = stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start worker process: %w", err)
		}
		children = append(children, &child{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)})
	}
	for i, ch := range children {
		if !ch.out.Scan() || ch.out.Text() != "ready" {
			return nil, fmt.Errorf("worker process %d did not start (see its messages above)", i)
		}
	}

	busy0, total0 := machineCPU()
	t0 := time.Now()
	for _, ch := range children {
		if _, err := io.WriteString(ch.stdin, "go\n"); err != nil {
			return nil, err
		}
	}
	pipeline := w.def.Name()
	for {
		res, err := s.ListRuns(ctx, &backend.ListRunsParams{Pipeline: pipeline, Status: backend.RunRunning, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(res.Runs) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
	elapsed := time.Since(t0)
	busy1, total1 := machineCPU()
	var cpu time.Duration
	for _, ch := range children {
		_ = ch.stdin.Close()
	}
	for _, ch := range children {
		if err := ch.cmd.Wait(); err != nil {
			return nil, fmt.Errorf("worker process: %w", err)
		}
		cpu += ch.cmd.ProcessState.UserTime() + ch.cmd.ProcessState.SystemTime()
	}
	children = nil
	if err := verifyCompleted(ctx, s, pipeline, n); err != nil {
		return nil, err
	}
	r := newResult(measured{workload: workload, n: n, steps: steps, elapsed: elapsed}, o, per*o.procs, cpu, 0)
	r.Procs, r.NetNS = o.procs, o.netns
	if total1 > total0 {
		r.MachineCPU = float64(busy1-busy0) / float64(total1-total0)
	}
	return []result{r}, nil
}

// serverAddr is the host:port of a's database server.
func serverAddr(a attachment) (string, error) {
	switch a.kind {
	case "postgres":
		u, err := url.Parse(a.dsn)
		if err != nil {
			return "", err
		}
		return u.Host, nil
	case "mysql":
		cfg, err := gomysql.ParseDSN(a.dsn)
		if err != nil {
			return "", err
		}
		return cfg.Addr, nil
	}
	return "", fmt.Errorf("-netns needs a server backend, not %s", a.kind)
}

// withAddr returns a's DSN with the server at addr.
func withAddr(a attachment, addr string) (string, error) {
	switch a.kind {
	case "postgres":
		u, err := url.Parse(a.dsn)
		if err != nil {
			return "", err
		}
		u.Host = addr
		return u.String(), nil
	case "mysql":
		cfg, err := gomysql.ParseDSN(a.dsn)
		if err != nil {
			return "", err
		}
		cfg.Addr = addr
		return cfg.FormatDSN(), nil
	}
	return "", fmt.Errorf("-netns needs a server backend, not %s", a.kind)
}

// machineCPU returns the busy and total jiffies of every core so far
// (/proc/stat's first line; idle and iowait count as not busy).
func machineCPU() (busy, total int64) {
	v, ok := procField("/proc/stat", "cpu ")
	if !ok {
		return 0, 0
	}
	for i, f := range strings.Fields(v) {
		if i >= 8 {
			break // guest time is already counted in user time
		}
		x, _ := strconv.ParseInt(f, 10, 64)
		total += x
		if i != 3 && i != 4 {
			busy += x
		}
	}
	return busy, total
}
