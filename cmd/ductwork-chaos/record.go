package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/step"
)

// The executions table: one row per step execution, inserted when the
// execution starts (through a connection of its own, not the library's),
// completed with the output the step is about to return, and with the
// outcome the engine reported (committed, stale, error, released).
const execTable = "chaos_executions"

const createExecTable = `CREATE TABLE %s (
	tag VARCHAR(100) NOT NULL PRIMARY KEY,
	run_id BIGINT NOT NULL,
	node VARCHAR(64) NOT NULL,
	scope VARCHAR(64) NOT NULL,
	job_id BIGINT NOT NULL,
	fence BIGINT NOT NULL,
	idempotency_key VARCHAR(200) NOT NULL,
	attempt INT NOT NULL,
	crashes INT NOT NULL,
	pid INT NOT NULL,
	started_ns BIGINT NOT NULL,
	returned_ns BIGINT,
	output TEXT,
	outcome VARCHAR(16)
)`

// execDB is the executions table on its own connection pool.
type execDB struct {
	db     *sql.DB
	table  string // qualified name
	dollar bool   // PostgreSQL placeholders
}

func (x *execDB) q(query string) string {
	query = strings.ReplaceAll(query, "$T", x.table)
	if !x.dollar {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (x *execDB) create(ctx context.Context) error {
	_, err := x.db.ExecContext(ctx, fmt.Sprintf(createExecTable, x.table))
	return err
}

// execution is one row of the executions table.
type execution struct {
	Tag                   string
	RunID, JobID, Fence   int64
	Node, Scope, Key      string
	Attempt, Crashes, PID int
	StartedNS             int64
	ReturnedNS            sql.NullInt64
	Output, Outcome       sql.NullString
}

func (x *execDB) all(ctx context.Context) ([]*execution, error) {
	rows, err := x.db.QueryContext(ctx, x.q(`SELECT tag, run_id, job_id, fence, node, scope, idempotency_key, attempt, crashes, pid,
		started_ns, returned_ns, output, outcome FROM $T`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*execution
	for rows.Next() {
		e := &execution{}
		if err := rows.Scan(&e.Tag, &e.RunID, &e.JobID, &e.Fence, &e.Node, &e.Scope, &e.Key, &e.Attempt, &e.Crashes, &e.PID,
			&e.StartedNS, &e.ReturnedNS, &e.Output, &e.Outcome); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// execTag identifies one execution: the step hook creates it from the
// claimed job (whose fence the step context does not expose).
type execTag struct {
	tag string
	job *ductworktype.Execution
}

// execRecorder writes the executions table from a worker process. Writes are
// retried (the database may be restarting): a recording failure must not
// turn into a step error, which would spend the retry budget.
type execRecorder struct {
	x   *execDB
	pid int
}

func (r *execRecorder) retry(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	delay := 20 * time.Millisecond
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("chaos: record %s: %w", what, err)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return fmt.Errorf("chaos: record %s: %w", what, err)
		}
		delay = min(delay*2, time.Second)
	}
}

func (r *execRecorder) start(ctx step.Context, tag string) error {
	t, _ := ctx.Value(tagKey{}).(*execTag)
	if t == nil {
		return errors.New("chaos: no execution tag in the step context (hook not installed)")
	}
	now := time.Now().UnixNano()
	return r.retry(ctx, "start", func(c context.Context) error {
		c, cancel := context.WithTimeout(c, 5*time.Second)
		defer cancel()
		_, err := r.x.db.ExecContext(c, r.x.q(`INSERT INTO $T (tag, run_id, node, scope, job_id, fence, idempotency_key, attempt, crashes, pid, started_ns)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			tag, ctx.RunID(), ctx.Node(), t.job.Scope, t.job.StepID, t.job.Fence, ctx.IdempotencyKey(), ctx.Attempt(), ctx.Crashes(), r.pid, now)
		if err != nil {
			// The insert may have landed before the connection broke.
			var n int
			if qerr := r.x.db.QueryRowContext(c, r.x.q(`SELECT COUNT(*) FROM $T WHERE tag = ?`), tag).Scan(&n); qerr == nil && n == 1 {
				return nil
			}
		}
		return err
	})
}

// recordStartInHook: the step hook records each execution's start
// (-txsteps), before the step's transaction and outside its timeout.
var recordStartInHook bool

// startJob records an execution's start from the step hook, with what the
// claimed job tells (no idempotency key). A failure is left to the checks
// (the execution's output then has no row to land in).
func (r *execRecorder) startJob(ctx context.Context, t *execTag, startedNS int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	j := t.job
	_ = r.retry(ctx, "start", func(c context.Context) error {
		c, cancel := context.WithTimeout(c, 5*time.Second)
		defer cancel()
		_, err := r.x.db.ExecContext(c, r.x.q(`INSERT INTO $T (tag, run_id, node, scope, job_id, fence, idempotency_key, attempt, crashes, pid, started_ns)
			VALUES (?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?)`),
			t.tag, j.RunID, j.Node, j.Scope, j.StepID, j.Fence, j.Attempt, j.Crashes, r.pid, startedNS)
		if err != nil {
			var n int
			if qerr := r.x.db.QueryRowContext(c, r.x.q(`SELECT COUNT(*) FROM $T WHERE tag = ?`), t.tag).Scan(&n); qerr == nil && n == 1 {
				return nil
			}
		}
		return err
	})
}

func (r *execRecorder) returned(ctx context.Context, tag string, out any) error {
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	now := time.Now().UnixNano()
	return r.retry(ctx, "output", func(c context.Context) error {
		c, cancel := context.WithTimeout(c, 5*time.Second)
		defer cancel()
		_, err := r.x.db.ExecContext(c, r.x.q(`UPDATE $T SET returned_ns = ?, output = ? WHERE tag = ?`), now, string(b), tag)
		return err
	})
}

func (r *execRecorder) outcome(t *execTag, startedNS int64, outcome string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = r.retry(ctx, "outcome", func(c context.Context) error {
		res, err := r.x.db.ExecContext(c, r.x.q(`UPDATE $T SET outcome = ? WHERE tag = ?`), outcome, t.tag)
		if err != nil || outcome != "stale" {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		// A transactional step whose claim was lost is refused before
		// its function runs, so nothing recorded its start: record the
		// refusal (no output), so that a zombie's refused commits count.
		j := t.job
		_, err = r.x.db.ExecContext(c, r.x.q(`INSERT INTO $T (tag, run_id, node, scope, job_id, fence, idempotency_key, attempt, crashes, pid, started_ns, outcome)
			VALUES (?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?)`),
			t.tag, j.RunID, j.Node, j.Scope, j.StepID, j.Fence, j.Attempt, j.Crashes, r.pid, startedNS, outcome)
		if err != nil {
			// The row may be there already (an earlier try landed).
			var n int
			if qerr := r.x.db.QueryRowContext(c, r.x.q(`SELECT COUNT(*) FROM $T WHERE tag = ?`), t.tag).Scan(&n); qerr == nil && n == 1 {
				return nil
			}
		}
		return err
	})
}

// tagHook is the step hook of the worker processes: it tags each execution
// with (pid, job, fence, time) and records how the engine ended it.
type tagHook struct{ r *execRecorder }

func (h tagHook) StepStart(ctx context.Context, job *ductworktype.Execution) (context.Context, func(ductworktype.StepEnd)) {
	now := time.Now().UnixNano()
	t := &execTag{tag: fmt.Sprintf("%d-%d-%d-%d", os.Getpid(), job.StepID, job.Fence, now), job: job}
	if recordStartInHook {
		h.r.startJob(ctx, t, now)
	}
	return context.WithValue(ctx, tagKey{}, t), func(end ductworktype.StepEnd) {
		outcome := "committed"
		switch {
		case end.Stale:
			outcome = "stale"
		case end.Released:
			outcome = "released"
		case end.Err != nil:
			outcome = "error"
		}
		h.r.outcome(t, now, outcome)
	}
}
