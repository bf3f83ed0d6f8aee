package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ductwork-go/ductwork/backend/mysql"
	"github.com/ductwork-go/ductwork/backend/postgres"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/step"
)

// The exactly-once variant (-txsteps): every step of the chaos pipeline is a
// transactional step of the backend's kind. Inside the completion
// transaction each execution adds one to two counters of a user table in
// the chaos storage (counterTable): the step instance's own
// ("i/<run>/<node>/<scope>", which must end at exactly 1). A zombie's or a
// killed worker's increment must roll back with its refused or lost commit;
// a retry starts clean. At the end the counters are compared with the
// values expected from the inputs, exactly: every instance's 1, no other
// key. (A counter per run, which every branch of the run updates, is left
// out: a worker frozen after updating it would hold its row lock until the
// server ends the session, and the run's other branches would time out
// waiting for it, spending retries that are not the point here.)

// counterTable is the user table of the -txsteps counters.
const counterTable = "user_counters"

// txStepTimeout bounds a transactional chaos step. The backends ask the
// server to end a transaction idle for longer than the timeout plus a
// margin (txIdleLimit): a worker frozen inside one loses it then, and the
// reaper, which waits for the frozen transaction's locks, can go on.
const txStepTimeout = 8 * time.Second

// txIdleLimit is when the server ends a frozen worker's transaction:
// txStepTimeout and the backends' margin of 10s, rounded up.
const txIdleLimit = txStepTimeout + 11*time.Second

// pipeline is the definition the controller triggers and the workers
// register: Chaos, or its transactional variant (useTxSteps).
var pipeline = Chaos

// counterInc is the statement a transactional step runs, with the key as
// its only argument: an insert of 1, or an increment by 1.
var counterInc string

// counterName is the counter table's name as the statements write it.
func counterName(sc storeConfig) string {
	if sc.Kind == "postgres" {
		return pgx.Identifier{sc.Schema, counterTable}.Sanitize()
	}
	return counterTable
}

// returnedInTx records an execution's output through the transactional
// step's transaction (servers; "" on SQLite).
var returnedInTx string

// useTxSteps switches this process to the transactional variant on the
// backend of sc.
func useTxSteps(sc storeConfig) {
	t := counterName(sc)
	switch sc.Kind {
	case "postgres":
		counterInc = "INSERT INTO " + t + " (k, n) VALUES ($1, 1) ON CONFLICT (k) DO UPDATE SET n = " + t + ".n + 1"
	case "mysql":
		counterInc = "INSERT INTO " + t + " (k, n) VALUES (?, 1) ON DUPLICATE KEY UPDATE n = n + 1"
	default:
		counterInc = "INSERT INTO " + t + " (k, n) VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET n = n + 1"
	}
	x := &execDB{table: execTable}
	if sc.Kind == "postgres" {
		x.table, x.dollar = pgx.Identifier{sc.Schema, execTable}.Sanitize(), true
	}
	if sc.Kind != "sqlite" {
		returnedInTx = x.q(`UPDATE $T SET returned_ns = ?, output = ? WHERE tag = ?`)
	}
	recordStartInHook = true
	pipeline = definePipeline(sc.Kind)
}

// newTxStep is newStep's transactional form: compute wrapped by runTx,
// with the backend kind's transaction.
func newTxStep[In, Out any](kind, name string, compute func(in In, tag string) Out, opts ...step.Option) step.Step[In, Out] {
	opts = append(opts, step.Timeout(txStepTimeout))
	switch kind {
	case "postgres":
		return postgres.TxStep(name, func(ctx step.Context, tx pgx.Tx, in In) (Out, error) {
			return runTx(ctx, true, func(q string, args ...any) error { _, err := tx.Exec(ctx, q, args...); return err },
				func(tag string) Out { return compute(in, tag) })
		}, opts...)
	case "mysql":
		return mysql.TxStep(name, func(ctx step.Context, tx *sql.Tx, in In) (Out, error) {
			return runTx(ctx, true, func(q string, args ...any) error { _, err := tx.ExecContext(ctx, q, args...); return err },
				func(tag string) Out { return compute(in, tag) })
		}, opts...)
	case "sqlite":
		return sqlite.TxStep(name, func(ctx step.Context, tx *sql.Tx, in In) (Out, error) {
			return runTx(ctx, false, func(q string, args ...any) error { _, err := tx.ExecContext(ctx, q, args...); return err },
				func(tag string) Out { return compute(in, tag) })
		}, opts...)
	}
	panic("chaos: no transactional steps on backend " + kind)
}

// runTx is run for a transactional step, inside the completion
// transaction, with exec running a statement through it. The step hook
// recorded the execution's start before the transaction began (outside
// the step's timeout: the executions table's own connections may be slow
// to come, under load or after a restart). It sleeps 1–5ms when pause is
// set (so that kills land inside transactions; not on SQLite, whose one
// writer every other process waits for), records the output (on a server
// through the transaction, so the record commits with the result; on
// SQLite, whose executions file is another, through the recorder), and adds
// one to the instance's counter through the transaction.
func runTx[T any](ctx step.Context, pause bool, exec func(q string, args ...any) error, compute func(tag string) T) (T, error) {
	var zero T
	tag := tagOf(ctx)
	if pause {
		select {
		case <-time.After(time.Duration(1+rand.IntN(5)) * time.Millisecond):
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
	out := compute(tag)
	if recorder != nil {
		if returnedInTx != "" {
			b, err := json.Marshal(out)
			if err != nil {
				return zero, err
			}
			if err := exec(returnedInTx, time.Now().UnixNano(), string(b), tag); err != nil {
				return zero, err
			}
		} else if err := recorder.returned(ctx, tag, out); err != nil {
			return zero, err
		}
	}
	scope := ""
	if t, ok := ctx.Value(tagKey{}).(*execTag); ok {
		scope = t.job.Scope
	}
	if err := exec(counterInc, instanceKey(ctx.RunID(), instance{ctx.Node(), scope})); err != nil {
		return zero, err
	}
	return out, nil
}

func instanceKey(run int64, i instance) string {
	return fmt.Sprintf("i/%d/%s/%s", run, i.node, i.scope)
}

// counterStore opens the chaos storage's database, where the counter table
// lives (on SQLite the Ductwork file, not the executions file).
func counterStore(sc storeConfig) (*sql.DB, error) {
	switch sc.Kind {
	case "sqlite":
		return sql.Open("sqlite3", "file:"+sc.DSN+"?_busy_timeout=10000")
	case "postgres":
		return sql.Open("pgx", sc.DSN)
	case "mysql":
		return sql.Open("mysql", sc.DSN)
	}
	return nil, fmt.Errorf("unknown backend %q", sc.Kind)
}

// createCounters creates the counter table.
func createCounters(ctx context.Context, sc storeConfig) error {
	db, err := counterStore(sc)
	if err != nil {
		return err
	}
	defer db.Close()
	return retryAdmin(ctx, func(ctx context.Context) error {
		_, err := db.ExecContext(ctx, "CREATE TABLE "+counterName(sc)+" (k VARCHAR(200) NOT NULL PRIMARY KEY, n INTEGER NOT NULL)")
		return err
	})
}

// readCounters reads every counter.
func readCounters(ctx context.Context, sc storeConfig) (map[string]int64, error) {
	db, err := counterStore(sc)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var got map[string]int64
	err = retryAdmin(ctx, func(ctx context.Context) error {
		got = map[string]int64{}
		rows, err := db.QueryContext(ctx, "SELECT k, n FROM "+counterName(sc))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			var n int64
			if err := rows.Scan(&k, &n); err != nil {
				return err
			}
			got[k] = n
		}
		return rows.Err()
	})
	return got, err
}

// checkCounters compares the counters with the values expected from the
// listed runs' inputs: every instance's counter 1, every run's counter its
// number of instances, no other key.
func (r *report) checkCounters() {
	want := map[string]int64{}
	for _, run := range r.runs {
		var in Input
		if err := json.Unmarshal(run.Input, &in); err != nil {
			continue // reported by check
		}
		insts, _ := expected(in)
		for inst := range insts {
			want[instanceKey(run.ID, inst)] = 1
		}
	}
	var gotSum, wantSum int64
	mismatched := 0
	var examples []string
	for k, w := range want {
		wantSum += w
		if g := r.counters[k]; g != w {
			mismatched++
			if len(examples) < 6 {
				examples = append(examples, fmt.Sprintf("counter %s = %d, want %d", k, g, w))
			}
		}
	}
	for k, g := range r.counters {
		gotSum += g
		if _, ok := want[k]; !ok {
			mismatched++
			if len(examples) < 6 {
				examples = append(examples, fmt.Sprintf("counter %s = %d, want none", k, g))
			}
		}
	}
	r.add(mismatched > 0 || gotSum != wantSum, "counters", "%d expected %d, mismatched %d (one key per step instance)",
		gotSum, wantSum, mismatched)
	for _, ex := range examples {
		r.lines = append(r.lines, reportLine{name: "  counter", value: strings.TrimSpace(ex)})
	}
}
