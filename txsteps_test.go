package ductwork_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend/mysql"
	"github.com/ductwork-go/ductwork/backend/postgres"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The exactly-once pipelines: two transactional steps, each adding one to
// its own row of a user table (named by DW_TXTABLE) in the pipeline's
// database, one per backend kind.
func txCount[Tx any](name string, exec func(ctx context.Context, tx Tx, q string, k string) error, q string) func(step.Context, Tx, int) (int, error) {
	return func(ctx step.Context, tx Tx, n int) (int, error) {
		if err := exec(ctx, tx, strings.ReplaceAll(q, "{table}", os.Getenv("DW_TXTABLE")), name); err != nil {
			return 0, err
		}
		return n + 1, nil
	}
}

func pgExec(ctx context.Context, tx pgx.Tx, q, k string) error {
	_, err := tx.Exec(ctx, q, k)
	return err
}
func sqlExec(ctx context.Context, tx *sql.Tx, q, k string) error {
	_, err := tx.ExecContext(ctx, q, k)
	return err
}

const (
	txIncPG  = "UPDATE {table} SET n = n + 1 WHERE k = $1"
	txIncSQL = "UPDATE {table} SET n = n + 1 WHERE k = ?"
)

var txDefs = map[string]*flow.Definition[int, int]{
	"postgres": flow.MustDefine("tx-postgres", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Chain(flow.Start(p, postgres.TxStep("tx-a", txCount("a", pgExec, txIncPG))),
			postgres.TxStep("tx-b", txCount("b", pgExec, txIncPG)))
	}),
	"mysql": flow.MustDefine("tx-mysql", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Chain(flow.Start(p, mysql.TxStep("tx-a", txCount("a", sqlExec, txIncSQL))),
			mysql.TxStep("tx-b", txCount("b", sqlExec, txIncSQL)))
	}),
	"sqlite": flow.MustDefine("tx-sqlite", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Chain(flow.Start(p, sqlite.TxStep("tx-a", txCount("a", sqlExec, txIncSQL))),
			sqlite.TxStep("tx-b", txCount("b", sqlExec, txIncSQL)))
	}),
}

// zombieHook, in a helper process, holds every step before it starts (and
// so before its transaction begins) until the file DW_RELEASE exists, and
// records commits refused as stale.
type zombieHook struct{ marks, release string }

func (z zombieHook) StepStart(ctx context.Context, job *ductworktype.Execution) (context.Context, func(ductworktype.StepEnd)) {
	appendLine(z.marks, fmt.Sprintf("held %s %d", job.Node, job.StepID))
	for {
		if _, err := os.Stat(z.release); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond) // a slow step start, not test synchronisation
	}
	return staleRecorder{z.marks}.StepStart(ctx, job)
}

// userDB opens the pipeline's database (as the user would) from the
// environment openCrashBackend returned.
func userDB(t *testing.T, kind string, env []string) (exec func(q string, args ...any) error, query func(q string, args ...any) *sql.Rows, table string) {
	t.Helper()
	get := func(k string) string {
		for _, e := range env {
			if v, ok := strings.CutPrefix(e, k+"="); ok {
				return v
			}
		}
		return ""
	}
	ctx := waitCtx(t)
	switch kind {
	case "postgres":
		pool, err := pgxpool.New(ctx, get("DW_DSN"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		table = get("DW_SCHEMA") + ".dw_tx_counters"
		return func(q string, args ...any) error { _, err := pool.Exec(ctx, q, args...); return err }, nil, table
	default:
		var db *sql.DB
		var err error
		if kind == "sqlite" {
			db, err = sql.Open("sqlite3", "file:"+get("DW_DB")+"?_busy_timeout=10000")
		} else {
			db, err = sql.Open("mysql", get("DW_DSN"))
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return func(q string, args ...any) error { _, err := db.ExecContext(ctx, q, args...); return err },
			func(q string, args ...any) *sql.Rows {
				rows, err := db.QueryContext(ctx, q, args...)
				if err != nil {
					t.Fatal(err)
				}
				return rows
			}, "dw_tx_counters"
	}
}

// TestTxStepsExactlyOnce: on every backend, runs of two transactional steps
// that each add one to a counter row, with helper processes SIGKILLed inside
// the step's transaction (after its UPDATE, before the commit), and a zombie
// helper (frozen with its claims, reaped, then resumed: its commits must be
// refused before its steps run). At the end both counters equal the number
// of runs exactly.
func TestTxStepsExactlyOnce(t *testing.T) {
	if !crashpoint.Compiled {
		// Its helpers die at a crash point; without the tag they never would.
		t.Skip("crash points are compiled in only with -tags ductwork_crashpoints")
	}
	for _, kind := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(kind, func(t *testing.T) {
			const runs, kills = 20, 3
			b, env := openCrashBackend(t, kind)
			dbExec, query, table := userDB(t, kind, env)
			if err := dbExec("CREATE TABLE " + table + " (k VARCHAR(8) PRIMARY KEY, n INTEGER NOT NULL)"); err != nil {
				t.Fatal(err)
			}
			if err := dbExec("INSERT INTO " + table + " (k, n) VALUES ('a', 0), ('b', 0)"); err != nil {
				t.Fatal(err)
			}
			t.Setenv("DW_TXTABLE", table)
			def := txDefs[kind]
			client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			if err := client.Register(def); err != nil {
				t.Fatal(err)
			}
			var handles []*ductwork.Run[int]
			for i := range runs {
				r, err := ductwork.Trigger(waitCtx(t), client, def, i)
				if err != nil {
					t.Fatal(err)
				}
				handles = append(handles, r)
			}
			dir := t.TempDir()
			marks, release := filepath.Join(dir, "marks"), filepath.Join(dir, "release")
			helperEnv := append(append(os.Environ(), helperEnv+"=1", "DW_NORMAL=1", "DW_MARKS="+marks, "DW_TXKIND="+kind), env...)

			// Helpers die by SIGKILL inside a transactional step, after its
			// write and before its commit; each takes its claims with it.
			for i := range kills {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(slices.Clip(helperEnv), crashpoint.EnvVar+"="+crashpoint.AfterStepBeforeCommit)
				cmd.Stderr = os.Stderr
				if err := cmd.Run(); err == nil {
					t.Fatalf("helper %d exited cleanly; want a SIGKILL inside a step", i)
				} else {
					var ee *exec.ExitError
					if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
						t.Fatalf("helper %d did not die by SIGKILL: %v", i, err)
					}
				}
			}

			// A zombie: claims, is frozen before its steps start, is reaped.
			zombie := exec.Command(os.Args[0], "-test.run=^$")
			zombie.Env = append(slices.Clip(helperEnv), "DW_ZOMBIE="+release)
			zombie.Stderr = os.Stderr
			if err := zombie.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = zombie.Process.Kill(); _ = zombie.Wait() })
			// Both its workers hold a claim: it is in no transaction of its
			// own (a claim's row locks would stall the others' claims).
			waitFor(t, func() bool { return len(marksOf(t, marks, "held")) == 2 })
			if kind == "sqlite" {
				freezeOutsideWriteLock(t, zombie, strings.TrimPrefix(env[1], "DW_DB="))
			} else if kind == "mysql" {
				freezeOutsideTx(t, zombie, env)
			} else if err := zombie.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}

			// This process reaps the dead and the frozen, and finishes.
			startSupervisor(t, client, &supervisor.Config{HeartbeatInterval: 50 * time.Millisecond, ReapThreshold: 300 * time.Millisecond, ReapInterval: 50 * time.Millisecond})
			for i, r := range handles {
				wctx, wcancel := context.WithTimeout(waitCtx(t), 20*time.Second)
				out, err := r.Wait(wctx)
				wcancel()
				if err != nil || out != i+2 {
					if steps, serr := r.Steps(context.Background()); serr == nil {
						for _, st := range steps {
							t.Logf("step %+v", st)
						}
					}
					t.Fatalf("run %d: out %d, %v; want %d", i, out, err, i+2)
				}
			}
			// The zombie wakes: every commit it tries is refused, before
			// its step runs.
			held := len(marksOf(t, marks, "held"))
			if err := os.WriteFile(release, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := zombie.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return len(marksOf(t, marks, "stale")) >= held })

			counts := map[string]int{}
			if query != nil {
				rows := query("SELECT k, n FROM " + table)
				for rows.Next() {
					var k string
					var n int
					if err := rows.Scan(&k, &n); err != nil {
						t.Fatal(err)
					}
					counts[k] = n
				}
				rows.Close()
			} else {
				pool, err := pgxpool.New(waitCtx(t), strings.TrimPrefix(env[1], "DW_DSN="))
				if err != nil {
					t.Fatal(err)
				}
				defer pool.Close()
				for _, k := range []string{"a", "b"} {
					var n int
					if err := pool.QueryRow(waitCtx(t), "SELECT n FROM "+table+" WHERE k = $1", k).Scan(&n); err != nil {
						t.Fatal(err)
					}
					counts[k] = n
				}
			}
			if counts["a"] != runs || counts["b"] != runs {
				t.Fatalf("counters a=%d b=%d; want exactly %d each (%d helpers killed inside a step, %d zombie claims refused)",
					counts["a"], counts["b"], runs, kills, held)
			}
			t.Logf("%s: counters a=%d b=%d after %d runs, %d helpers SIGKILLed inside a transactional step, %d zombie claims refused",
				kind, counts["a"], counts["b"], runs, kills, held)
		})
	}
}

// freezeOutsideTx stops cmd with SIGSTOP at a moment when none of its
// connections to the test's MariaDB database has a transaction open (a
// heartbeat frozen mid-transaction would hold its process row, and the
// reaper would wait on it).
func freezeOutsideTx(t *testing.T, cmd *exec.Cmd, env []string) {
	t.Helper()
	db, err := sql.Open("mysql", strings.TrimPrefix(env[1], "DW_DSN="))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := 0; ; i++ {
		if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		var open int
		if err := db.QueryRow(`SELECT COUNT(*) FROM information_schema.innodb_trx t
JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id WHERE p.db = DATABASE()`).Scan(&open); err != nil {
			t.Fatal(err)
		}
		if open == 0 {
			return
		}
		if i > 100 {
			t.Fatalf("could not freeze the helper outside a transaction")
		}
		if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i+1) * time.Millisecond) // let it finish its transaction
	}
}
