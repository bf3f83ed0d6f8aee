package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/netns"
)

const (
	// workerGrace is the workers' supervisor.Config.ShutdownGrace.
	workerGrace = 5 * time.Second
	// workerRelease is the workers' supervisor.Config.ReleaseTimeout: Run
	// returns within workerGrace+workerRelease of the signal, whatever the
	// network does.
	workerRelease = 3 * time.Second
	// shutdownBound is how much longer than its grace a worker process may
	// take to exit after SIGTERM: the supervisor's release window plus 2 s
	// to close the worker's database handles and check for leaks.
	shutdownBound = workerRelease + 2*time.Second
	// teardownLimit is how long a worker waits for its database handles to
	// close after the supervisor returned.
	teardownLimit = 1500 * time.Millisecond
)

// phaseReport is what one network fault did and what was checked after it.
type phaseReport struct {
	fault      string
	target     string
	window     time.Duration
	detail     string
	drained    time.Duration // heal → every run triggered before it finished
	unfinished int           // runs still unfinished at the drain limit
	stranded   []string      // claims live processes held, idle, from the drain limit on
	drainLimit time.Duration
	shutdown   *shutdownEvent
	leaked     bool
}

func (p *phaseReport) failed() bool {
	return p.unfinished < 0 || len(p.stranded) > 0 || p.leaked ||
		(p.shutdown != nil && p.shutdown.took > workerGrace+shutdownBound)
}

// setupNetwork creates the fault proxies and, with -hosts, the hosts. When
// namespaces cannot be created the workers run on the loopback, each behind
// a proxy of its own, and the partition fault is dropped. The returned
// function removes everything; it must run after the workers stopped.
func (c *controller) setupNetwork() (func(), error) {
	upstream, err := serverAddr(c.sc)
	if err != nil {
		return func() {}, err
	}
	c.px = newProxies(upstream)
	cleanup := func() { c.px.closeAll() }
	if c.o.hosts == 0 {
		c.logf("network faults %s: every worker behind a fault proxy of its own on the loopback", strings.Join(c.faults, ","))
		return cleanup, nil
	}
	hosts, teardown, err := netns.Setup(nsPrefix, c.o.hosts)
	if err != nil {
		c.fallbackWhy = err.Error()
		c.faults = slices.DeleteFunc(c.faults, func(f string) bool { return f == faultPartition })
		c.logf("network namespaces unavailable (%v): FALLBACK to processes on the loopback, each behind a fault proxy of its own; no partition fault", err)
		return cleanup, nil
	}
	c.hosts = hosts
	cleanup = func() { c.px.closeAll(); teardown() }
	port := portOf(upstream)
	for _, h := range hosts {
		name, addr, err := c.px.add(net.JoinHostPort(h.DataAddr, port))
		if err != nil {
			return cleanup, err
		}
		_, oaddr, err := c.px.add(net.JoinHostPort(h.ObsAddr, port))
		if err != nil {
			return cleanup, err
		}
		obs, err := via(c.sc, oaddr)
		if err != nil {
			return cleanup, err
		}
		c.hostData = append(c.hostData, addr)
		c.hostProxy = append(c.hostProxy, name)
		c.hostObs = append(c.hostObs, obs)
	}
	c.logf("%d hosts: network namespaces %s0..%d, each reaching the %s server through its own link and fault proxy (host i: 10.x.2i+1.2 → 10.x.2i+1.1:%s → %s); faults %s",
		len(hosts), hosts[0].NS[:len(hosts[0].NS)-1], len(hosts)-1, c.sc.Kind, port, upstream, strings.Join(c.faults, ","))
	return cleanup, nil
}

// dataProxies lists the proxies the supervisors' connections go through.
func (c *controller) dataProxies() []string {
	if len(c.hosts) > 0 {
		return c.hostProxy
	}
	return c.px.names()
}

// runFaults injects each fault in turn, heals it, waits until every run
// triggered before the heal finished and records the checks; it goes round
// the list again while until is ahead. It heals everything before it
// returns.
func (c *controller) runFaults(ctx context.Context, b backend.Backend, x *execDB, until time.Time) {
	defer c.px.heal()
	for pass := 0; pass == 0 || time.Now().Before(until); pass++ {
		for _, f := range c.faults {
			if ctx.Err() != nil {
				return
			}
			ph := c.phase(ctx, b, x, f)
			c.phasesMu.Lock()
			c.phases = append(c.phases, ph)
			c.phasesMu.Unlock()
			verdict := "ok"
			if ph.failed() {
				verdict = "FAILED"
			}
			c.logf("fault %s on %s: %s; %s", f, ph.target, ph.summary(), verdict)
		}
	}
}

// phase runs one fault.
func (c *controller) phase(ctx context.Context, b backend.Backend, x *execDB, fault string) *phaseReport {
	ph := &phaseReport{fault: fault, drainLimit: c.o.drainLimit}
	window := c.o.faultWindow
	var extra *proc
	exited := make(chan struct{})
	targets := c.dataProxies()
	ph.target = "every proxy (" + strconv.Itoa(len(targets)) + ")"
	var h *netns.Host
	if fault == faultBlackhole || fault == faultPartition {
		// One host (or one process) is cut off for longer than the reap
		// threshold, and a supervisor on it is asked to shut down
		// meanwhile: it must return within its grace and a bound.
		window = max(window, 2*c.o.reapThreshold+time.Second)
		hi := -1
		if len(c.hosts) > 0 {
			hi = rand.IntN(len(c.hosts))
			h = c.hosts[hi]
		}
		var err error
		extra, err = c.spawn("", hi)
		if err != nil {
			ph.detail = "could not start the worker to shut down: " + err.Error()
			close(exited)
		} else {
			go func() { _ = extra.cmd.Wait(); extra.exitAt = time.Now(); close(exited) }()
			c.waitExecuting(ctx, x, extra.pid, 15*time.Second)
		}
		switch {
		case h != nil:
			ph.target = fmt.Sprintf("host %d (%s)", hi, h.NS)
			targets = []string{c.hostProxy[hi]}
		case extra != nil:
			ph.target = fmt.Sprintf("worker %d's proxy", extra.pid)
			targets = []string{extra.proxy}
		}
	}
	cuts := c.px.commitCuts()
	start := time.Now()
	var err error
	if fault == faultPartition {
		err = h.Partition()
	} else {
		err = c.px.inject(fault, targets)
	}
	if err != nil {
		ph.detail = "inject: " + err.Error()
		ph.unfinished = -1
		return ph
	}
	var termAt time.Time
	if extra != nil {
		wait(ctx, 500*time.Millisecond)
		_ = extra.cmd.Process.Signal(syscall.SIGTERM)
		termAt = time.Now()
	}
	// The fault holds for its window, and while the worker told to stop
	// may still be within its bound.
	wait(ctx, window-time.Since(start))
	if extra != nil {
		select {
		case <-exited:
		case <-time.After(time.Until(termAt.Add(workerGrace + shutdownBound + 500*time.Millisecond))):
		case <-ctx.Done():
		}
	}
	ph.window = time.Since(start)
	healStart := time.Now()
	if fault == faultPartition {
		if err := h.Heal(); err != nil {
			ph.detail = "heal: " + err.Error()
		}
	} else {
		c.px.heal()
	}
	if d := time.Since(healStart); d > time.Second {
		// Removing toxics waits for each connection's toxic to hand on
		// what it holds; a connection whose client stopped reading
		// delays that.
		ph.detail = strings.TrimPrefix(ph.detail+"; the heal took "+d.Round(100*time.Millisecond).String(), "; ")
	}
	if extra != nil {
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = extra.cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
		if extra.proxy != "" {
			c.px.remove(extra.proxy)
		}
		st := extra.cmd.ProcessState
		ws, _ := st.Sys().(syscall.WaitStatus)
		ph.shutdown = &shutdownEvent{pid: extra.pid, took: extra.exitAt.Sub(termAt), status: st.String(), fault: fault}
		ph.leaked = ws.Exited() && ws.ExitStatus() == exitLeak
	}
	if fault == faultCommitCut {
		ph.detail = strings.TrimSuffix(fmt.Sprintf("%d connections cut between COMMIT and its reply; ", c.px.commitCuts()-cuts)+ph.detail, "; ")
	}
	c.drain(ctx, b, x, ph)
	return ph
}

// wait sleeps for d or until ctx ends: the fault windows are durations of
// the experiment, not synchronisation.
func wait(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// waitExecuting waits until the worker pid recorded an execution, so that
// it holds work when its link fails.
func (c *controller) waitExecuting(ctx context.Context, x *execDB, pid int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var n int
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := x.db.QueryRowContext(qctx, x.q(`SELECT COUNT(*) FROM $T WHERE pid = ?`), pid).Scan(&n)
		cancel()
		if err == nil && n > 0 {
			return
		}
		wait(ctx, 50*time.Millisecond)
	}
}

// drain waits until every run triggered before the heal finished, with no
// new runs triggered meanwhile. At the limit it records the unfinished runs
// and the claims on them that live processes hold without running them: a
// claim is stranded if, strandWait after the limit, the same live process
// still holds it under the same fence and has recorded no execution of it.
func (c *controller) drain(ctx context.Context, b backend.Backend, x *execDB, ph *phaseReport) {
	c.feedPaused.Store(true)
	defer c.feedPaused.Store(false)
	target := c.lastRunID.Load()
	healed := time.Now()
	deadline := healed.Add(c.o.drainLimit)
	for ctx.Err() == nil {
		open, err := c.openRuns(ctx, b, target)
		if err == nil && len(open) == 0 {
			ph.drained = time.Since(healed)
			return
		}
		if err == nil && time.Now().After(deadline) {
			held := c.heldIdle(ctx, b, x, open)
			wait(ctx, strandWait)
			if open, err = c.openRuns(ctx, b, target); err == nil {
				ph.unfinished = len(open)
				// Later drains do not wait for these again.
				c.stuckMu.Lock()
				for _, r := range open {
					c.stuck[r.ID] = true
				}
				c.stuckMu.Unlock()
				again := c.heldIdle(ctx, b, x, open)
				for k, v := range again {
					if held[k] != "" {
						ph.stranded = append(ph.stranded, v)
					}
				}
				slices.Sort(ph.stranded)
			}
			return
		}
		wait(ctx, 250*time.Millisecond)
	}
	ph.unfinished = -1
	ph.detail = strings.TrimPrefix(ph.detail+"; interrupted before the runs drained", "; ")
}

// strandWait is how long a claim must stay idle after the drain limit to
// count as stranded.
const strandWait = 10 * time.Second

// openRuns lists the unfinished runs with an ID up to target, but for those
// an earlier drain already gave up on.
func (c *controller) openRuns(ctx context.Context, b backend.Backend, target int64) ([]*backend.Run, error) {
	runs, err := listRuns(ctx, b)
	if err != nil {
		return nil, err
	}
	c.stuckMu.Lock()
	defer c.stuckMu.Unlock()
	var open []*backend.Run
	for _, r := range runs {
		if r.ID <= target && !ductwork.RunStatus(r.Status).Terminal() && !c.stuck[r.ID] {
			open = append(open, r)
		}
	}
	return open, nil
}

// heldIdle returns the running jobs of runs held by a live process with no
// execution recorded under their current fence, keyed by job and fence.
func (c *controller) heldIdle(ctx context.Context, b backend.Backend, x *execDB, runs []*backend.Run) map[string]string {
	out := map[string]string{}
	for _, r := range runs {
		res, err := b.ListJobs(ctx, &backend.ListJobsParams{RunID: r.ID, Limit: 1000})
		if err != nil {
			continue
		}
		for _, j := range res.Jobs {
			if j.Status != backend.JobRunning {
				continue
			}
			pid := ownerPID(j.ProcessID)
			if pid <= 0 || syscall.Kill(pid, 0) != nil {
				continue
			}
			var n int
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := x.db.QueryRowContext(qctx, x.q(`SELECT COUNT(*) FROM $T WHERE job_id = ? AND fence = ?`), j.ID, j.Fence).Scan(&n)
			cancel()
			if err != nil || n > 0 {
				continue
			}
			out[fmt.Sprintf("%d/%d", j.ID, j.Fence)] = fmt.Sprintf("run %d %s@%q fence %d held by live %s, never started", r.ID, j.NodeID, j.Scope, j.Fence, j.ProcessID)
		}
	}
	return out
}

// ownerPID reads the pid from a worker's process ID (chaos-pid<pid>-<try>).
func ownerPID(id string) int {
	rest, ok := strings.CutPrefix(id, "chaos-pid")
	if !ok {
		return 0
	}
	s, _, _ := strings.Cut(rest, "-")
	pid, _ := strconv.Atoi(s)
	return pid
}

func (p *phaseReport) summary() string {
	var parts []string
	parts = append(parts, "window "+p.window.Round(100*time.Millisecond).String())
	if p.detail != "" {
		parts = append(parts, p.detail)
	}
	if s := p.shutdown; s != nil {
		parts = append(parts, fmt.Sprintf("SIGTERM → exit of worker %d under the fault %s (limit %s, %s)", s.pid,
			s.took.Round(10*time.Millisecond), workerGrace+shutdownBound, s.status))
	}
	if p.leaked {
		parts = append(parts, "goroutines leaked")
	}
	switch {
	case p.unfinished < 0:
	case p.unfinished == 0:
		parts = append(parts, "every earlier run finished "+p.drained.Round(100*time.Millisecond).String()+" after the heal")
	default:
		parts = append(parts, fmt.Sprintf("%d earlier runs unfinished %s after the heal; claims stranded on live processes: %d", p.unfinished, (p.drainLimit+strandWait).Round(time.Second), len(p.stranded)))
	}
	return strings.Join(parts, "; ")
}
