package ductwork_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/mysql"
	"github.com/ductwork-go/ductwork/backend/postgres"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
	"github.com/ductwork-go/ductwork/internal/testdb"
	"github.com/ductwork-go/ductwork/supervisor"
	drv "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
)

// openHelperBackend opens, in a helper process, the backend the parent test
// described in the environment.
func openHelperBackend() (backend.Backend, error) {
	switch os.Getenv("DW_BACKEND") {
	case "", "sqlite":
		return sqlite.Open(os.Getenv("DW_DB"), nil)
	case "postgres":
		pool, err := pgxpool.New(context.Background(), os.Getenv("DW_DSN"))
		if err != nil {
			return nil, err
		}
		return postgres.New(pool, &postgres.Config{Schema: os.Getenv("DW_SCHEMA")})
	case "mysql":
		db, err := sql.Open("mysql", os.Getenv("DW_DSN"))
		if err != nil {
			return nil, err
		}
		return mysql.New(db, nil)
	}
	return nil, fmt.Errorf("unknown DW_BACKEND %q", os.Getenv("DW_BACKEND"))
}

// openCrashBackend opens a migrated backend of kind on fresh storage and
// returns the environment a helper process needs to open the same storage.
func openCrashBackend(t *testing.T, kind string) (backend.Backend, []string) {
	t.Helper()
	ctx := waitCtx(t)
	var (
		b   backend.Backend
		env []string
		err error
	)
	switch kind {
	case "sqlite":
		path := filepath.Join(t.TempDir(), "dw.db")
		b, err = sqlite.Open(path, nil)
		env = []string{"DW_BACKEND=sqlite", "DW_DB=" + path}
	case "postgres":
		pool, schema := testdb.PostgresPool(t)
		b, err = postgres.New(pool, &postgres.Config{Schema: schema})
		env = []string{"DW_BACKEND=postgres", "DW_DSN=" + testdb.PostgresDSN(t), "DW_SCHEMA=" + schema}
	case "mysql":
		db := testdb.MySQLDB(t)
		var name string
		if err := db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		cfg, perr := drv.ParseDSN(testdb.MySQLDSN(t))
		if perr != nil {
			t.Fatal(perr)
		}
		cfg.DBName = name
		b, err = mysql.New(db, nil)
		env = []string{"DW_BACKEND=mysql", "DW_DSN=" + cfg.FormatDSN()}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if err := b.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return b, env
}

// TestCrashPoints: for every crash point in the engine and every backend, a
// helper process running the crash pipeline kills itself (SIGKILL) at that
// point; this process then reaps it and completes the run. Invariants: the
// output is right, every step instance is completed exactly once, no retry
// budget was spent, and at most one execution was lost to the crash.
func TestCrashPoints(t *testing.T) {
	if !crashpoint.Compiled {
		t.Skip("crash points are compiled in only with -tags ductwork_crashpoints")
	}
	points := []string{crashpoint.AfterClaim, crashpoint.AfterStepBeforeCommit, crashpoint.AfterCommit}
	for _, kind := range []string{"sqlite", "postgres", "mysql"} {
		for _, point := range points {
			t.Run(kind+"/"+point, func(t *testing.T) {
				b, env := openCrashBackend(t, kind)
				client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
				if err != nil {
					t.Fatal(err)
				}
				if err := client.Register(crashDef); err != nil {
					t.Fatal(err)
				}
				r, err := ductwork.Trigger(waitCtx(t), client, crashDef, 20)
				if err != nil {
					t.Fatal(err)
				}
				marks := filepath.Join(t.TempDir(), "marks")
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), helperEnv+"=1", "DW_NORMAL=1", "DW_MARKS="+marks, crashpoint.EnvVar+"="+point)
				cmd.Env = append(cmd.Env, env...)
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case err := <-done:
					var ee *exec.ExitError
					if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
						t.Fatalf("helper did not die by SIGKILL at %s: %v", point, err)
					}
				case <-time.After(60 * time.Second):
					_ = cmd.Process.Kill()
					t.Fatalf("helper never reached crash point %s", point)
				}

				t.Setenv("DW_MARKS", marks)
				startSupervisor(t, client, &supervisor.Config{HeartbeatInterval: 50 * time.Millisecond, ReapThreshold: 300 * time.Millisecond, ReapInterval: 50 * time.Millisecond})
				out, err := r.Wait(waitCtx(t))
				if err != nil || out != 42 {
					t.Fatalf("after a crash %s: out %d, %v; want 42", point, out, err)
				}
				steps, err := r.Steps(waitCtx(t))
				if err != nil {
					t.Fatal(err)
				}
				if len(steps) != 3 {
					t.Fatalf("%d step instances, want 3", len(steps))
				}
				crashes := 0
				for _, s := range steps {
					if s.Status != backend.JobCompleted || s.Output == nil || s.Attempt != 1 {
						t.Fatalf("step %s: %s, attempt %d; want completed on attempt 1", s.Node, s.Status, s.Attempt)
					}
					crashes += s.CrashReruns
				}
				if crashes != 1 {
					t.Fatalf("%d crash re-runs recorded; want exactly 1 (the execution the crash interrupted)", crashes)
				}
			})
		}
	}
}
