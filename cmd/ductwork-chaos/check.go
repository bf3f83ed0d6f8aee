package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// report holds what was collected after the workers stopped and the results
// of the checks.
type report struct {
	backend   string
	triggered int
	elapsed   time.Duration

	runs  []*backend.Run
	jobs  map[int64][]*backend.JobInfo
	execs []*execution
	// counters: the -txsteps counters by key (nil without -txsteps).
	counters map[string]int64

	lines  []reportLine
	failed bool
}

type reportLine struct {
	name, value string
	fail, warn  bool
}

func (r *report) add(fail bool, name, format string, args ...any) {
	r.lines = append(r.lines, reportLine{name: name, value: fmt.Sprintf(format, args...), fail: fail})
	if fail {
		r.failed = true
	}
}

// warn adds a line marked WARN: a liveness problem, not a broken invariant.
func (r *report) warn(name, format string, args ...any) {
	r.lines = append(r.lines, reportLine{name: name, value: fmt.Sprintf(format, args...), warn: true})
}

func (r *report) ok() bool { return !r.failed }

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "backend: %s\n", r.backend)
	for _, l := range r.lines {
		mark := ""
		switch {
		case l.fail:
			mark = "   <-- FAIL"
		case l.warn:
			mark = "   <-- WARN"
		}
		fmt.Fprintf(w, "%s: %s%s\n", l.name, l.value, mark)
	}
	verdict := "ok"
	if r.failed {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "elapsed: %s\nverdict: %s\n", r.elapsed.Round(100*time.Millisecond), verdict)
}

// collect reads the runs and step instances through the backend's listing
// APIs, and the executions table.
func collect(ctx context.Context, b backend.Backend, x *execDB, r *report) error {
	err := retryAdmin(ctx, func(ctx context.Context) error {
		var err error
		r.runs, err = listRuns(ctx, b)
		return err
	})
	if err != nil {
		return fmt.Errorf("list runs: %w", err)
	}
	r.jobs = map[int64][]*backend.JobInfo{}
	for _, run := range r.runs {
		var after int64
		for {
			var res *backend.ListJobsResult
			err := retryAdmin(ctx, func(ctx context.Context) error {
				var err error
				res, err = b.ListJobs(ctx, &backend.ListJobsParams{RunID: run.ID, Limit: 1000, AfterID: after})
				return err
			})
			if err != nil {
				return fmt.Errorf("list jobs of run %d: %w", run.ID, err)
			}
			r.jobs[run.ID] = append(r.jobs[run.ID], res.Jobs...)
			if res.Next == 0 {
				break
			}
			after = res.Next
		}
	}
	err = retryAdmin(ctx, func(ctx context.Context) error {
		var err error
		r.execs, err = x.all(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", x.table, err)
	}
	return nil
}

// decoded is a committed or recorded output: the values it carries and the
// tag of the execution that produced it ("" for an empty expansion).
type decoded struct {
	items []Item
}

func decodeOutput(node string, b []byte) (decoded, error) {
	var d decoded
	if node == nStart {
		err := json.Unmarshal(b, &d.items)
		return d, err
	}
	var it Item
	err := json.Unmarshal(b, &it)
	d.items = []Item{it}
	return d, err
}

func (d decoded) tag() string {
	if len(d.items) == 0 {
		return ""
	}
	return d.items[0].Tag
}

func (d decoded) values() []int64 {
	v := make([]int64, len(d.items))
	for i, it := range d.items {
		v[i] = it.V
	}
	return v
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// check runs every check and fills r.lines. The checks:
//
//   - every triggered run completed, with the value computed from its input;
//   - the step instances are exactly the expected set (computed from the
//     inputs: expansion size, divert keys); each is completed with output:
//     missing ones are lost, extra or repeated (node, scope) pairs are
//     unexpected or duplicate commits;
//   - each committed output carries the tag of the execution that produced
//     it: that execution must be recorded, with the same output, for the
//     same job, and the values must be the ones expected from the input;
//   - zombie commits: the committed execution must hold the job's last claim.
//     A claim is (fence, attempt, crashes): Claim sets a new fence, the reaper
//     (and a release) adds a crash, a retry adds an attempt, and nothing
//     changes a completed job. A commit accepted from an execution whose claim
//     was reaped or superseded would leave the job with a fence, attempt or
//     crash count different from the committed execution's, or with a later
//     execution (higher fence) recorded. The executions of the SIGSTOPped
//     worker that were in flight when it froze are reported separately;
//   - no two executions share one claim (job, fence);
//   - retry budget: the chaos steps never fail, so any Attempt > 1 was spent
//     by a crash (or by a recording failure, reported by the worker);
//   - the idempotency key is the same for every execution of an instance.
func (r *report) check(c *controller) {
	byJob := map[int64][]*execution{}
	byTag := map[string]*execution{}
	for _, e := range r.execs {
		byJob[e.JobID] = append(byJob[e.JobID], e)
		byTag[e.Tag] = e
	}

	var (
		completed, wrongResult, halted          int
		expectedTotal, exactlyOne, lost         int
		unexpected, duplicates                  int
		unrecorded, inconsistent, wrongValues   int
		zombies, sharedClaims, budget, keyDrift int
		crashReruns, dbRetries                  int
		examples                                []string
		hist                                    = map[int]int{}
		committedTag                            = map[string]bool{}
	)
	example := func(format string, args ...any) {
		if len(examples) < 8 {
			examples = append(examples, fmt.Sprintf(format, args...))
		}
	}
	for _, run := range r.runs {
		var in Input
		if err := json.Unmarshal(run.Input, &in); err != nil {
			example("run %d: undecodable input %q", run.ID, run.Input)
			continue
		}
		want, final := expected(in)
		expectedTotal += len(want)
		switch run.Status {
		case "completed":
			completed++
			var out Item
			if err := json.Unmarshal(run.Output, &out); err != nil || out.V != final {
				wrongResult++
				example("run %d: output %s, want value %d", run.ID, run.Output, final)
			}
		case "halted":
			halted++
			example("run %d halted: %s", run.ID, firstLine(run.Error))
		}
		seen := map[instance]int{}
		for _, j := range r.jobs[run.ID] {
			inst := instance{j.NodeID, j.Scope}
			seen[inst]++
			crashReruns += j.Crashes
			if j.Attempt > 1 && c.o.txsteps && (connectionLost(j.Error) || strings.Contains(j.Error, "exceeded its timeout")) {
				// A transactional step's own statements run on the
				// completion transaction's connection, under the step's
				// timeout: when a restart cuts that connection, or the
				// server is down or a frozen worker's transaction holds a
				// lock for longer than the timeout, the step returns that
				// error and the engine counts it as the step's failure.
				dbRetries++
				example("run %d %s: attempt %d (crash re-runs %d): a retry spent waiting on the database inside a transactional step: %q", run.ID, inst, j.Attempt, j.Crashes, firstLine(j.Error))
			} else if j.Attempt > 1 {
				budget++
				example("run %d %s: attempt %d (crash re-runs %d): the retry budget was spent; last error %q", run.ID, inst, j.Attempt, j.Crashes, firstLine(j.Error))
			}
			execs := byJob[j.ID]
			hist[len(execs)]++
			if c.o.verbose && len(execs) > 1 {
				for _, e := range execs {
					c.logf("run %d %s: execution %s fence %d attempt %d crashes %d started %s returned %v outcome %s",
						run.ID, inst, e.Tag, e.Fence, e.Attempt, e.Crashes, time.Unix(0, e.StartedNS).Format("15:04:05.000"),
						e.ReturnedNS.Valid, e.Outcome.String)
				}
			}
			claims := map[int64]int{}
			maxFence := int64(-1)
			for _, e := range execs {
				claims[e.Fence]++
				maxFence = max(maxFence, e.Fence)
				// A refusal recorded by the hook alone (a transactional
				// step refused before its function ran) has no key.
				if e.Key != "" && execs[0].Key != "" && e.Key != execs[0].Key {
					keyDrift++
					example("run %d %s: idempotency keys %q and %q", run.ID, inst, execs[0].Key, e.Key)
				}
			}
			for f, n := range claims {
				if n > 1 {
					sharedClaims++
					example("run %d %s: %d executions under fence %d", run.ID, inst, n, f)
				}
			}
			vals, ok := want[inst]
			if !ok {
				unexpected++
				example("run %d: unexpected step instance %s (%s)", run.ID, inst, j.Status)
				continue
			}
			if seen[inst] > 1 {
				duplicates++
				example("run %d: step instance %s listed %d times", run.ID, inst, seen[inst])
				continue
			}
			if j.Status != backend.JobCompleted || j.Output == nil {
				continue // counted as lost below
			}
			out, err := decodeOutput(j.NodeID, j.Output)
			if err != nil {
				inconsistent++
				example("run %d %s: undecodable output %q", run.ID, inst, j.Output)
				continue
			}
			if !slices.Equal(out.values(), vals) {
				wrongValues++
				example("run %d %s: committed values %v, want %v", run.ID, inst, out.values(), vals)
			}
			// The execution that produced the committed output: by its tag,
			// or (an empty expansion has no item to carry it) by the fence.
			var e *execution
			if tag := out.tag(); tag != "" {
				e = byTag[tag]
			} else {
				for _, x := range execs {
					if x.Fence == j.Fence {
						e = x
					}
				}
			}
			if e == nil || e.JobID != j.ID || !e.Output.Valid {
				unrecorded++
				example("run %d %s: committed output %s comes from no recorded execution of the job", run.ID, inst, j.Output)
				continue
			}
			committedTag[e.Tag] = true
			rec, err := decodeOutput(j.NodeID, []byte(e.Output.String))
			if err != nil || !reflect.DeepEqual(rec, out) {
				inconsistent++
				example("run %d %s: committed %s, but its execution %s returned %s", run.ID, inst, j.Output, e.Tag, e.Output.String)
				continue
			}
			if e.Fence != j.Fence || e.Attempt != j.Attempt || e.Crashes != j.Crashes || e.Fence != maxFence {
				zombies++
				example("run %d %s: committed by execution %s (fence %d attempt %d crashes %d) but the job's claim is fence %d attempt %d crashes %d, last recorded fence %d",
					run.ID, inst, e.Tag, e.Fence, e.Attempt, e.Crashes, j.Fence, j.Attempt, j.Crashes, maxFence)
				continue
			}
			exactlyOne++
		}
		for inst := range want {
			if seen[inst] == 0 {
				lost++
				example("run %d: step instance %s missing", run.ID, inst)
			}
		}
		for _, j := range r.jobs[run.ID] {
			if _, ok := want[instance{j.NodeID, j.Scope}]; ok && (j.Status != backend.JobCompleted || j.Output == nil) {
				lost++
				example("run %d: step instance %s@%q is %s", run.ID, j.NodeID, j.Scope, j.Status)
			}
		}
	}

	// A trigger retried after a lost answer (database restart) may have
	// created its run twice: listed may exceed triggered, never fall short.
	r.add(completed != len(r.runs) || len(r.runs) < r.triggered, "runs completed / triggered", "%d / %d (listed %d, halted %d)", completed, r.triggered, len(r.runs), halted)
	r.add(wrongResult > 0, "runs with a wrong result", "%d", wrongResult)
	r.add(exactlyOne != expectedTotal, "step instances with exactly one committed result", "%d / %d expected", exactlyOne, expectedTotal)
	r.add(lost > 0, "lost steps", "%d", lost)
	r.add(unexpected > 0, "unexpected step instances", "%d", unexpected)
	r.add(duplicates+inconsistent+unrecorded+wrongValues > 0, "duplicate or inconsistent commits",
		"%d (duplicate instances %d, output differs from its execution's %d, from no recorded execution %d, wrong values %d)",
		duplicates+inconsistent+unrecorded+wrongValues, duplicates, inconsistent, unrecorded, wrongValues)
	r.add(zombies > 0, "zombie commits accepted", "%d", zombies)
	if c.o.limit > 0 {
		peak, over := limitPeak(r.execs, limitedNode, c.o.limit)
		r.add(over > 0, "limit exceeded", "%d (peak %d running at once of %s, limit %d)", over, peak, limitedNode, c.o.limit)
	}
	r.add(sharedClaims > 0, "executions sharing one claim", "%d", sharedClaims)
	r.add(budget > 0, "retry budget spent by crashes", "%d instances with attempt > 1", budget)
	if dbRetries > 0 {
		r.warn("retries spent waiting on the database inside transactional steps", "%d instances (the step's statements timed out or lost their connection: a restart, or a frozen worker's locks; each still committed once)", dbRetries)
	}
	r.add(keyDrift > 0, "idempotency keys changed across executions", "%d", keyDrift)
	if c.o.txsteps {
		r.checkCounters()
	}

	counts := make([]int, 0, len(hist))
	for n := range hist {
		counts = append(counts, n)
	}
	sort.Ints(counts)
	var hs []string
	for _, n := range counts {
		hs = append(hs, fmt.Sprintf("%d×%d", n, hist[n]))
	}
	r.add(false, "executions per step instance (executions×instances)", "%s", strings.Join(hs, " "))
	r.add(false, "executions recorded / crash re-runs counted by the library", "%d / %d", len(r.execs), crashReruns)

	// Kills and recovery: for each execution in flight in a killed process
	// (started before the kill, not the committed one), the time from the
	// kill to the next execution of its instance.
	sigkills, cps := 0, 0
	var rec []time.Duration
	for _, k := range c.kills {
		if k.cause == "sigkill" {
			sigkills++
		} else {
			cps++
		}
		for _, e := range r.execs {
			if e.PID != k.pid || e.StartedNS > k.at.UnixNano() || committedTag[e.Tag] {
				continue
			}
			var next *execution
			for _, x := range byJob[e.JobID] {
				if x.Fence > e.Fence && (next == nil || x.Fence < next.Fence) {
					next = x
				}
			}
			if next != nil && next.StartedNS >= k.at.UnixNano() {
				rec = append(rec, time.Duration(next.StartedNS-k.at.UnixNano()))
			}
		}
	}
	slices.Sort(rec)
	r.add(false, "kills", "%d SIGKILL, %d at crash points; %d workers started", sigkills, cps, c.started)
	if len(rec) > 0 {
		r.add(false, "recovery after a kill (kill → next execution of an in-flight instance)", "p50 %s p99 %s max %s (%d instances)",
			percentile(rec, 0.5).Round(time.Millisecond), percentile(rec, 0.99).Round(time.Millisecond), rec[len(rec)-1].Round(time.Millisecond), len(rec))
	} else {
		r.add(false, "recovery after a kill", "no in-flight instance was hit")
	}

	if f := c.freeze; f != nil {
		inFlight, stale, committed, refused := 0, 0, 0, 0
		for _, e := range r.execs {
			if e.PID == f.pid && e.StartedNS > f.stop.UnixNano() && e.Outcome.String == "stale" && !e.ReturnedNS.Valid {
				refused++ // held claims it started after the thaw
			}
			if e.PID != f.pid || e.StartedNS > f.stop.UnixNano() || (e.ReturnedNS.Valid && e.ReturnedNS.Int64 < f.stop.UnixNano()) {
				continue
			}
			inFlight++
			if e.Outcome.String == "stale" {
				stale++
			}
			if committedTag[e.Tag] {
				committed++
			}
		}
		r.add(false, "SIGSTOP", "worker %d frozen %s (%d tries to freeze outside a write lock; inside a transaction: %v); executions in flight %d: refused as stale %d, committed %d (each one checked above)",
			f.pid, f.cont.Sub(f.stop).Round(time.Millisecond), f.attempts, f.inTx, inFlight, stale, committed)
		if c.o.txsteps {
			r.add(false, "zombie's transactional steps refused before their function ran", "%d (claims it held when frozen, started after the thaw)", refused)
		}
		if inFlight > 0 && stale == 0 {
			r.warn("frozen worker reaped", "no: its claims survived a freeze of twice the reap threshold (its commits were legitimate, the zombie case was not exercised)")
		}
	} else {
		r.add(false, "SIGSTOP", "none (the runs finished first)")
	}
	if rs := c.restart; rs != nil {
		r.add(rs.err != nil, rs.what, "took %s; %v", rs.down.Round(time.Millisecond), errString(rs.err))
	}
	// A process that was never stopped heartbeats every 200ms: it should
	// never lose a claim. When it does, a live process was reaped.
	lostLive, livePIDs := 0, map[int]bool{}
	for _, e := range r.execs {
		if e.Outcome.String == "stale" && (c.freeze == nil || e.PID != c.freeze.pid) {
			lostLive++
			livePIDs[e.PID] = true
		}
	}
	if lostLive > 0 {
		r.warn("claims lost by processes never stopped", "%d executions in %d processes were refused as stale: live processes were reaped", lostLive, len(livePIDs))
	} else {
		r.add(false, "claims lost by processes never stopped", "0")
	}
	r.add(len(c.unexpected) > 0, "unexpected worker exits", "%d", len(c.unexpected))
	r.checkNetwork(c)
	for _, e := range c.unexpected {
		example("worker %d exited on its own: %s", e.pid, e.status)
	}
	for _, ex := range examples {
		r.lines = append(r.lines, reportLine{name: "  example", value: ex})
	}
}

// connectionLost reports whether a step's error is its database
// connection's loss (a server restart), by the drivers' texts.
func connectionLost(msg string) bool {
	for _, s := range []string{"conn closed", "connection reset", "broken pipe", "terminating connection", "bad connection",
		"invalid connection", "unexpected EOF", "shutting down", "connection refused", "server has gone away", "closed network connection"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// checkNetwork adds the lines of the network faults and the shutdowns.
func (r *report) checkNetwork(c *controller) {
	switch {
	case len(c.hosts) > 0:
		r.add(false, "hosts", "%d network namespaces, workers spread over them", len(c.hosts))
	case c.fallbackWhy != "":
		r.warn("hosts", "FALLBACK: processes on the loopback, each behind its own fault proxy (namespaces: %s)", c.fallbackWhy)
	}
	c.phasesMu.Lock()
	phases := slices.Clone(c.phases)
	c.phasesMu.Unlock()
	unfinished, stranded := 0, 0
	for _, p := range phases {
		if !p.failed() && p.unfinished > 0 {
			// Slow, not stuck: the end of the command checks that every
			// run completed.
			r.warn("fault "+p.fault, "on %s: %s", p.target, p.summary())
		} else {
			r.add(p.failed(), "fault "+p.fault, "on %s: %s", p.target, p.summary())
		}
		for i, s := range p.stranded {
			if i == 3 {
				break
			}
			r.lines = append(r.lines, reportLine{name: "  stranded", value: s})
		}
		unfinished += max(p.unfinished, 0)
		stranded += len(p.stranded)
	}
	if len(c.faults) > 0 {
		r.add(false, "runs unfinished at a drain limit after a fault", "%d (phases %d)", unfinished, len(phases))
		r.add(stranded > 0, "claims stranded on live processes", "%d", stranded)
		r.add(false, "commit replies cut", "%d", c.px.commitCuts())
	}
	shutdowns := slices.Clone(c.shutdowns)
	for _, p := range phases {
		if p.shutdown != nil {
			shutdowns = append(shutdowns, *p.shutdown)
		}
	}
	hung, longest := 0, time.Duration(0)
	for _, s := range shutdowns {
		longest = max(longest, s.took)
		if s.took > workerGrace+shutdownBound {
			hung++
			where := "at the end"
			if s.fault != "" {
				where = "under " + s.fault
			}
			r.lines = append(r.lines, reportLine{name: "  example", value: fmt.Sprintf("worker %d took %s from SIGTERM to exit %s (%s)", s.pid, s.took.Round(10*time.Millisecond), where, s.status)})
		}
	}
	r.add(hung > 0, "supervisors over grace+bound in shutdown", "%d of %d (grace %s + bound %s; longest %s)", hung, len(shutdowns), workerGrace, shutdownBound, longest.Round(10*time.Millisecond))
	leaks := len(c.leaks)
	for _, p := range phases {
		if p.leaked {
			leaks++
		}
	}
	r.add(leaks > 0, "workers with goroutines left after shutdown", "%d", leaks)
}

// limitPeak is the most executions of node that ran at once, and how many
// starts found the limit already reached, counted over the executions that
// returned: from the step's start to its return, an interval inside the one
// the database counted (from the claim's commit to the completion's).
// Executions killed before returning held their slot until reaped, at a
// time not recorded, so they are left out: the check can miss an excess,
// never invent one.
func limitPeak(execs []*execution, node string, limit int) (peak, over int) {
	type edge struct {
		at    int64
		delta int
	}
	var edges []edge
	for _, e := range execs {
		if e.Node != node || !e.ReturnedNS.Valid {
			continue
		}
		if e.Outcome.Valid && e.Outcome.String == "stale" {
			// A zombie's execution (its process frozen past the reap
			// threshold, its claim reaped, its commit refused): the limit
			// holds for claims, and a reaped claim no longer holds a slot.
			continue
		}
		edges = append(edges, edge{e.StartedNS, 1}, edge{e.ReturnedNS.Int64, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].delta < edges[j].delta // an end before a start at the same instant
	})
	n := 0
	for _, ed := range edges {
		n += ed.delta
		if ed.delta > 0 && n > limit {
			over++
		}
		peak = max(peak, n)
	}
	return peak, over
}
