package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
	"github.com/ductwork-go/ductwork/internal/netns"
)

// proc is one worker process. Its fields are only touched by the
// controller's loop; the goroutine waiting for it hands it back on exits.
type proc struct {
	cmd        *exec.Cmd
	pid        int
	crashpoint string
	killed     bool // SIGKILLed by the controller
	frozen     bool // the SIGSTOP victim: never killed afterwards
	started    time.Time
	host       int    // index into controller.hosts, -1 on the loopback
	proxy      string // its own fault proxy (-netfaults without -hosts)
	termAt     time.Time
	exitAt     time.Time // set by the goroutine waiting for it, read after it closed
}

type killEvent struct {
	pid   int
	at    time.Time
	cause string // "sigkill" or "crashpoint <name>"
}

type exitEvent struct {
	pid    int
	at     time.Time
	status string
}

type freezeEvent struct {
	pid      int
	stop     time.Time
	cont     time.Time
	attempts int
	// inTx: frozen with a transaction open (-txsteps on a server), held
	// until the server ended it.
	inTx bool
	hold time.Duration
}

type restartEvent struct {
	what string // "database restart" or "node fault"
	at   time.Time
	down time.Duration
	err  error
}

type controller struct {
	o      *options
	sc     storeConfig
	self   string
	wc     workerConfig
	stderr io.Writer
	errMu  *sync.Mutex

	live         map[int]*proc
	exits        chan *proc
	replacements int
	shutting     bool

	kills      []killEvent
	unexpected []exitEvent
	freeze     *freezeEvent
	restart    *restartEvent
	started    int

	client    *ductwork.Client
	triggered atomic.Int64
	lastRunID atomic.Int64
	// feedPaused stops the feed while the runs of a fault drain.
	feedPaused atomic.Bool

	// Network faults (-netfaults, -hosts).
	faults      []string
	hosts       []*netns.Host
	px          *proxies
	hostData    []string      // per host: its data proxy
	hostProxy   []string      // per host: the name of its data proxy
	hostObs     []storeConfig // per host: the executions table through its observer proxy
	phasesMu    sync.Mutex
	stuckMu     sync.Mutex
	stuck       map[int64]bool // runs a drain gave up on
	nextHost    int
	nextNode    int
	phases      []*phaseReport
	shutdowns   []shutdownEvent
	leaks       []exitEvent
	fallbackWhy string
}

// trigger triggers n more runs, numbered on from the runs triggered so far.
func (c *controller) trigger(ctx context.Context, n int) error {
	for range n {
		i := int(c.triggered.Load())
		if err := retryAdmin(ctx, func(ctx context.Context) error {
			run, err := ductwork.Trigger(ctx, c.client, pipeline, inputFor(i))
			if err == nil && run.ID > c.lastRunID.Load() {
				c.lastRunID.Store(run.ID)
			}
			return err
		}); err != nil {
			return fmt.Errorf("trigger run %d: %w", i, err)
		}
		c.triggered.Add(1)
	}
	return nil
}

// feed keeps work queued while the faults go on (-duration): whenever fewer
// than half of -runs are unfinished it triggers another -runs/2.
func (c *controller) feed(ctx context.Context, b backend.Backend) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if c.feedPaused.Load() {
			continue
		}
		done, _, err := runCounts(ctx, b)
		if err != nil {
			continue // the server may be restarting
		}
		if int(c.triggered.Load())-done < max(1, c.o.runs/2) {
			if err := c.trigger(ctx, max(1, c.o.runs/2)); err != nil && ctx.Err() == nil {
				return err
			}
		}
	}
}

func (c *controller) logf(format string, args ...any) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	fmt.Fprintf(c.stderr, "chaos: %s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// prefixWriter copies a worker's stderr line by line with its pid in front.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		p.mu.Lock()
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
	}
}

// spawn starts a worker process with crash point cp (or none) on host
// (-1: the loopback). With -netfaults and no hosts the worker gets a fault
// proxy of its own.
func (c *controller) spawn(cp string, host int) (*proc, error) {
	wc := c.wc
	p := &proc{crashpoint: cp, host: host}
	switch {
	case host >= 0:
		sc, err := via(c.sc, c.hostData[host])
		if err != nil {
			return nil, err
		}
		obs := c.hostObs[host]
		wc.Store, wc.Exec = sc, &obs
	case c.px != nil:
		name, addr, err := c.px.add("127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		sc, err := via(c.sc, addr)
		if err != nil {
			c.px.remove(name)
			return nil, err
		}
		exec := c.sc
		wc.Store, wc.Exec, p.proxy = sc, &exec, name
	case len(c.o.nodes) > 0:
		sc, err := via(c.sc, c.o.nodes[c.nextNode%len(c.o.nodes)])
		if err != nil {
			return nil, err
		}
		c.nextNode++
		exec := c.sc
		wc.Store, wc.Exec = sc, &exec
	}
	raw, err := json.Marshal(wc)
	if err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	if host >= 0 {
		cmd = c.hosts[host].Command(c.self)
	} else {
		cmd = exec.Command(c.self)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, crashpoint.EnvVar+"=") && !strings.HasPrefix(kv, workerEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, workerEnv+"="+string(raw))
	if cp != "" {
		cmd.Env = append(cmd.Env, crashpoint.EnvVar+"="+cp)
	}
	// Workers die with the controller, whatever kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pw := &prefixWriter{mu: c.errMu, w: c.stderr}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		if p.proxy != "" {
			c.px.remove(p.proxy)
		}
		return nil, err
	}
	pw.prefix = fmt.Sprintf("[worker %d] ", cmd.Process.Pid)
	p.cmd, p.pid, p.started = cmd, cmd.Process.Pid, time.Now()
	return p, nil
}

// startProc starts a worker that the controller's loop owns (kills,
// replacements). Workers are spread over the hosts in turn.
func (c *controller) startProc(cp string) error {
	host := -1
	if len(c.hosts) > 0 {
		host = c.nextHost % len(c.hosts)
		c.nextHost++
	}
	return c.startProcOn(cp, host)
}

func (c *controller) startProcOn(cp string, host int) error {
	p, err := c.spawn(cp, host)
	if err != nil {
		return err
	}
	c.live[p.pid] = p
	c.started++
	go func() { _ = p.cmd.Wait(); c.exits <- p }()
	if cp != "" {
		c.logf("started worker %d with %s=%s", p.pid, crashpoint.EnvVar, cp)
	}
	return nil
}

// crashPoints are the points a replacement may die at: the engine's, and
// those inside the backends' transactions that a supervisor passes.
var crashPoints = []string{crashpoint.AfterClaim, crashpoint.AfterStepBeforeCommit, crashpoint.AfterCommit,
	crashpoint.CompleteTx, crashpoint.FanoutInsert, crashpoint.JoinUpdate, crashpoint.ReapTx}

// replace starts a replacement worker; with -crashpoints every other one
// kills itself at a random crash point.
func (c *controller) replace(p0host int) error {
	c.replacements++
	cp := ""
	if c.o.crashpoints && c.replacements%2 == 0 {
		cp = crashPoints[rand.IntN(len(crashPoints))]
	}
	return c.startProcOn(cp, p0host)
}

// victim picks a random live worker that may be killed or frozen.
func (c *controller) victim() *proc {
	var ps []*proc
	for _, p := range c.live {
		if !p.killed && !p.frozen {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	return ps[rand.IntN(len(ps))]
}

func (c *controller) kill() {
	p := c.victim()
	if p == nil {
		return
	}
	p.killed = true
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.logf("kill %d: %v", p.pid, err)
		return
	}
	c.kills = append(c.kills, killEvent{pid: p.pid, at: time.Now(), cause: "sigkill"})
	c.logf("SIGKILL worker %d", p.pid)
}

// onExit handles a worker's exit and starts its replacement.
func (c *controller) onExit(p *proc) error {
	delete(c.live, p.pid)
	c.exited(p)
	if c.shutting {
		return nil
	}
	ws, _ := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ws.Exited() && ws.ExitStatus() == exitLeak:
		c.logf("worker %d exited with leaked goroutines", p.pid)
	case p.killed:
	case p.crashpoint != "" && ws.Signaled() && ws.Signal() == syscall.SIGKILL:
		c.kills = append(c.kills, killEvent{pid: p.pid, at: time.Now(), cause: "crashpoint " + p.crashpoint})
		c.logf("worker %d died at crash point %s", p.pid, p.crashpoint)
	default:
		e := exitEvent{pid: p.pid, at: time.Now(), status: p.cmd.ProcessState.String()}
		c.unexpected = append(c.unexpected, e)
		c.logf("worker %d exited on its own: %s", p.pid, e.status)
		recent := 0
		for _, u := range c.unexpected {
			if time.Since(u.at) < 30*time.Second {
				recent++
			}
		}
		if recent >= 4 {
			return fmt.Errorf("workers crash-loop: %d unexpected exits within 30s", recent)
		}
	}
	return c.replace(p.host)
}

// exited records what a worker's exit tells: leaked goroutines, and frees
// its fault proxy.
func (c *controller) exited(p *proc) {
	if p.proxy != "" {
		c.px.remove(p.proxy)
	}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Exited() && ws.ExitStatus() == exitLeak {
		c.leaks = append(c.leaks, exitEvent{pid: p.pid, at: time.Now(), status: p.cmd.ProcessState.String()})
	}
}

// freezeTries is how often freezeWorker tries to stop a worker outside a
// transaction before it takes what it gets.
const freezeTries = 200

// freezeWorker SIGSTOPs a worker. On SQLite it makes sure the worker does
// not hold a database file's write lock: a process frozen inside a write
// transaction stalls every writer until it resumes, which is SQLite's
// locking, not something a reaper can undo. With -txsteps on a server it
// tries for a moment when the worker has no transaction open (inTxCheck);
// when there is none, it is frozen inside a transactional step, holding its
// job's row lock, and the freeze lasts until the server has ended that
// transaction (txIdleLimit).
func (c *controller) freezeWorker() error {
	p := c.victim()
	if p == nil {
		return errors.New("no worker to freeze")
	}
	var dbs []*sql.DB
	if c.sc.Kind == "sqlite" {
		for _, path := range []string{c.sc.DSN, c.sc.ExecDSN} {
			db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=0")
			if err != nil {
				return err
			}
			db.SetMaxOpenConns(1)
			defer db.Close()
			dbs = append(dbs, db)
		}
	}
	var ck *inTxCheck
	if c.o.txsteps && c.sc.Kind != "sqlite" && len(c.hosts) == 0 && c.px == nil && len(c.o.nodes) == 0 {
		var err error
		if ck, err = newInTxCheck(c.sc); err != nil {
			return err
		}
		defer ck.db.Close()
	}
	for i := 1; ; i++ {
		if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			return err
		}
		var lockErr error
		for _, db := range dbs {
			if _, err := db.Exec("BEGIN IMMEDIATE; ROLLBACK"); err != nil {
				lockErr = err
				break
			}
		}
		hold := 2 * c.o.reapThreshold
		inTx := false
		if ck != nil {
			open, err := ck.open(p.pid)
			if err != nil {
				lockErr = err
			}
			switch {
			case open && i < freezeTries:
				// Try again for a moment outside any transaction.
				lockErr = errors.New("a transaction is open")
			case open:
				// Frozen inside a transactional step: the reaper waits
				// for its locks until the server ends the transaction
				// (and rolls its writes back); hold it until then.
				inTx, hold = true, txIdleLimit+2*c.o.reapThreshold
			}
		}
		if lockErr == nil {
			p.frozen = true
			c.freeze = &freezeEvent{pid: p.pid, stop: time.Now(), attempts: i, inTx: inTx, hold: hold}
			return nil
		}
		if i > 200 {
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			return fmt.Errorf("could not freeze worker %d outside a write transaction: %w", p.pid, lockErr)
		}
		if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			return err
		}
		time.Sleep(time.Duration(1+rand.IntN(5)) * time.Millisecond) // let it finish its transaction
	}
}

func (c *controller) thaw() {
	if c.freeze == nil || !c.freeze.cont.IsZero() {
		return
	}
	if p, ok := c.live[c.freeze.pid]; ok {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
	c.freeze.cont = time.Now()
}

func quietLogger(verbose bool) *slog.Logger {
	level := slog.LevelError
	if verbose {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// runChaos runs the whole experiment and returns the report.
func runChaos(ctx context.Context, o *options, stderr io.Writer) (rep *report, err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	sc, drop, err := createStorage(ctx, o.backend, o.dsn)
	if err != nil {
		return nil, err
	}
	errMu := &sync.Mutex{}
	c := &controller{
		o: o, sc: sc, self: self, stderr: stderr, errMu: errMu,
		live: map[int]*proc{}, exits: make(chan *proc, 64), faults: o.faults, stuck: map[int64]bool{},
		wc: workerConfig{
			Store: sc, Workers: o.workers, Heartbeat: min(200*time.Millisecond, o.reapThreshold/4),
			ReapThreshold: o.reapThreshold, ReapInterval: o.reapThreshold / 4, Poll: 20 * time.Millisecond, Verbose: o.verbose,
		},
	}
	defer func() {
		if derr := drop(context.WithoutCancel(ctx)); derr != nil {
			err = errors.Join(err, fmt.Errorf("drop the chaos storage: %w", derr))
		}
	}()
	logger := quietLogger(o.verbose)
	b, closeB, err := openBackend(ctx, sc, 4, logger)
	if err != nil {
		return nil, err
	}
	defer closeB()
	if err := b.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	x, err := openExec(sc, 4)
	if err != nil {
		return nil, err
	}
	defer x.db.Close()
	if err := x.create(ctx); err != nil {
		return nil, fmt.Errorf("create %s: %w", x.table, err)
	}
	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: logger})
	if err != nil {
		return nil, err
	}
	if o.txsteps {
		if err := createCounters(ctx, sc); err != nil {
			return nil, fmt.Errorf("create %s: %w", counterTable, err)
		}
		useTxSteps(sc)
		c.wc.TxSteps = true
	}
	if err := client.Register(pipeline); err != nil {
		return nil, err
	}
	c.logf("%s storage %s; %d workers × %d, %d runs, kill every %s, reap threshold %s",
		sc.Kind, storageName(sc), o.procs, o.workers, o.runs, o.killEvery, o.reapThreshold)
	if o.hosts > 0 || len(o.faults) > 0 {
		cleanup, err := c.setupNetwork()
		defer cleanup()
		if err != nil {
			return nil, err
		}
	}

	defer c.stopAll()
	for range o.procs {
		if err := c.startProc(""); err != nil {
			return nil, err
		}
	}
	c.client = client
	if err := c.trigger(ctx, o.runs); err != nil {
		return nil, err
	}
	c.logf("triggered %d runs in %s", c.triggered.Load(), time.Since(began).Round(time.Millisecond))

	loopErr := c.loop(ctx, b, x)
	c.thaw()
	c.stopAll()

	triggered := int(c.triggered.Load())
	rep = &report{backend: o.backend, triggered: triggered}
	if cerr := collect(context.WithoutCancel(ctx), b, x, rep); cerr != nil {
		return nil, errors.Join(loopErr, cerr)
	}
	if o.txsteps {
		if rep.counters, err = readCounters(context.WithoutCancel(ctx), sc); err != nil {
			return nil, errors.Join(loopErr, fmt.Errorf("read %s: %w", counterTable, err))
		}
	}
	rep.check(c)
	rep.elapsed = time.Since(began)
	return rep, loopErr
}

func storageName(sc storeConfig) string {
	switch sc.Kind {
	case "postgres":
		return "schema " + sc.Schema
	case "mysql":
		return "database " + sc.DSN[strings.LastIndexByte(sc.DSN, '/')+1:]
	}
	return sc.DSN
}

// loop injects the faults until every run finished (or -duration, then
// -timeout). It returns with the database server up.
func (c *controller) loop(ctx context.Context, b backend.Backend, x *execDB) error {
	o := c.o
	start := time.Now()
	var killC <-chan time.Time
	if o.killEvery > 0 {
		t := time.NewTicker(o.killEvery)
		defer t.Stop()
		killC = t.C
	}
	unit := o.killEvery
	if unit == 0 {
		unit = 2 * time.Second
	}
	freezeT := time.NewTimer(unit / 2)
	defer freezeT.Stop()
	contT := time.NewTimer(time.Hour)
	contT.Stop()
	defer contT.Stop()
	var contC <-chan time.Time
	var restartC <-chan time.Time
	if o.restartDB || o.nodeFault != "" {
		// After the freeze is over, so that the zombie is surely reaped.
		t := time.NewTimer(unit + 2*o.reapThreshold)
		defer t.Stop()
		restartC = t.C
	}
	restartDone := make(chan *restartEvent, 1)
	restarting := false
	var chaosEndC <-chan time.Time
	feedCtx, stopFeed := context.WithCancel(ctx)
	feedErr := make(chan error, 1)
	// The network faults need load while they go round, however long.
	feeding := o.duration > 0 || len(c.faults) > 0
	defer func() {
		stopFeed()
		if feeding {
			// No trigger may race with the checks.
			if err := <-feedErr; err != nil {
				c.logf("triggering runs: %v", err)
			}
		}
	}()
	if feeding {
		if len(c.faults) == 0 {
			t := time.NewTimer(o.duration)
			defer t.Stop()
			chaosEndC = t.C
		}
		go func() { feedErr <- c.feed(feedCtx, b) }()
	} else {
		feedErr <- nil
	}
	// Network faults: the chaos lasts while the faults go round (at least
	// once, and until -duration).
	var faultsDone chan struct{}
	faultsOver := len(c.faults) == 0
	if !faultsOver {
		fctx, stopFaults := context.WithCancel(ctx)
		faultsDone = make(chan struct{})
		go func() { defer close(faultsDone); c.runFaults(fctx, b, x, start.Add(o.duration)) }()
		done := faultsDone
		defer func() { stopFaults(); <-done }()
	}
	hard := time.NewTimer(o.timeout)
	defer hard.Stop()
	progress := time.NewTicker(250 * time.Millisecond)
	defer progress.Stop()
	lastReport := time.Now()
	chaosOver := false
	freezeDone := false
	var stuckSince time.Time

	waitRestart := func() {
		if restarting {
			c.restart = <-restartDone
			restarting = false
		}
	}
	defer waitRestart()

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-hard.C:
			return fmt.Errorf("timed out after %s with runs unfinished", o.timeout)
		case <-faultsDone:
			faultsDone, faultsOver = nil, true
			chaosOver = true
			stopFeed()
			c.logf("network faults over: no more faults or new runs")
		case <-chaosEndC:
			chaosOver = true
			stopFeed()
			c.logf("-duration reached: no more faults or new runs")
		case err := <-feedErr:
			feeding = false
			if err != nil {
				return err
			}
		case <-killC:
			if !chaosOver {
				c.kill()
			}
		case <-freezeT.C:
			if chaosOver {
				freezeDone = true
				break
			}
			if err := c.freezeWorker(); err != nil {
				c.logf("freeze: %v", err)
				freezeDone = true
				break
			}
			c.logf("SIGSTOP worker %d for %s (inside a transaction: %v)", c.freeze.pid, c.freeze.hold, c.freeze.inTx)
			contT.Reset(c.freeze.hold)
			contC = contT.C
		case <-contC:
			c.thaw()
			freezeDone = true
			c.logf("SIGCONT worker %d", c.freeze.pid)
		case <-restartC:
			if chaosOver {
				break
			}
			restarting = true
			if o.nodeFault != "" {
				c.logf("node fault: %s", o.nodeFault)
				go func() {
					down, err := nodeFault(ctx, o.nodeFault, o.nodeHeal, 2*o.reapThreshold)
					restartDone <- &restartEvent{what: "node fault", at: time.Now().Add(-down), down: down, err: err}
				}()
				break
			}
			c.logf("restarting the %s server", o.backend)
			go func() {
				down, err := restartServer(o.backend, serverDSN(c.sc))
				restartDone <- &restartEvent{what: "database restart", at: time.Now().Add(-down), down: down, err: err}
			}()
		case ev := <-restartDone:
			restarting = false
			c.restart = ev
			if ev.err != nil {
				c.logf("%s: %v", ev.what, ev.err)
			} else {
				c.logf("%s: served again after %s", ev.what, ev.down.Round(time.Millisecond))
			}
		case p := <-c.exits:
			if err := c.onExit(p); err != nil {
				return err
			}
		case <-progress.C:
			done, counts, err := runCounts(ctx, b)
			if err != nil {
				break // the server may be restarting
			}
			if time.Since(lastReport) >= 5*time.Second {
				lastReport = time.Now()
				c.logf("%4.0fs: %v; %d kills, %d workers started", time.Since(start).Seconds(), counts, len(c.kills), c.started)
			}
			// Every listed run, not only the counted ones: a trigger cut
			// short by the end of the feed may have committed its run.
			listed := 0
			for _, n := range counts {
				listed += n
			}
			if !feeding && faultsOver && done == listed && done >= int(c.triggered.Load()) && (freezeDone || chaosOver) && !restarting {
				return nil
			}
			// Runs a drain gave up on will not finish by waiting: once
			// they are all that is left, and still are a drain limit
			// later, stop and report.
			c.stuckMu.Lock()
			nStuck := len(c.stuck)
			c.stuckMu.Unlock()
			if nStuck > 0 && !feeding && faultsOver && done+nStuck >= listed {
				if stuckSince.IsZero() {
					stuckSince = time.Now()
				} else if time.Since(stuckSince) > o.drainLimit {
					return fmt.Errorf("%d runs stranded after the network faults", listed-done)
				}
			} else {
				stuckSince = time.Time{}
			}
		}
	}
}

func serverDSN(sc storeConfig) string {
	if sc.Kind == "mysql" {
		return sc.DSN[:strings.LastIndexByte(sc.DSN, '/')+1]
	}
	return sc.DSN
}

// runCounts counts the runs by status; done counts the finished ones.
func runCounts(ctx context.Context, b backend.Backend) (done int, counts map[string]int, err error) {
	runs, err := listRuns(ctx, b)
	if err != nil {
		return 0, nil, err
	}
	counts = map[string]int{}
	for _, r := range runs {
		counts[r.Status]++
		if ductwork.RunStatus(r.Status).Terminal() {
			done++
		}
	}
	return done, counts, nil
}

func listRuns(ctx context.Context, b backend.Backend) ([]*backend.Run, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out []*backend.Run
	var before int64
	for {
		res, err := b.ListRuns(ctx, &backend.ListRunsParams{Pipeline: pipeName, Limit: 1000, BeforeID: before})
		if err != nil {
			return nil, err
		}
		out = append(out, res.Runs...)
		if res.Next == 0 {
			return out, nil
		}
		before = res.Next
	}
}

// stopAll stops every worker: SIGCONT (a frozen one cannot handle SIGTERM),
// SIGTERM for a graceful shutdown, SIGKILL after 30s. Each worker's time
// from SIGTERM to exit is recorded: a supervisor must stop within its
// ShutdownGrace and a bound.
func (c *controller) stopAll() {
	c.shutting = true
	for _, p := range c.live {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		p.termAt = time.Now()
	}
	deadline := time.After(30 * time.Second)
	for len(c.live) > 0 {
		select {
		case p := <-c.exits:
			delete(c.live, p.pid)
			c.exited(p)
			if !p.termAt.IsZero() {
				c.shutdowns = append(c.shutdowns, shutdownEvent{pid: p.pid, took: time.Since(p.termAt), status: p.cmd.ProcessState.String()})
			}
		case <-deadline:
			for _, p := range c.live {
				c.logf("worker %d did not stop within 30s of SIGTERM; killing it", p.pid)
				_ = p.cmd.Process.Signal(syscall.SIGKILL)
			}
			deadline = time.After(time.Hour)
		}
	}
}

// shutdownEvent is a worker's graceful shutdown: SIGTERM to exit.
type shutdownEvent struct {
	pid    int
	took   time.Duration
	status string
	fault  string // the fault it was under, if any
}
