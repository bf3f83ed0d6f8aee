package supervisor_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/mysql"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// GaleraEnv lists the DSNs of a MariaDB Galera cluster's nodes, comma
// separated (scripts/galera.sh up starts one; `scripts/galera.sh dsn N`
// prints node N's). The Galera tests run only when it is set.
const galeraEnv = "DUCTWORK_TEST_GALERA_DSNS"

// galeraNodes returns a *sql.DB per node, all on one fresh database created
// through the first node (Galera replicates it), dropped at the end. The
// connections have wsrep_sync_wait=3 unless params say otherwise.
func galeraNodes(t *testing.T, params map[string]string) []*sql.DB {
	t.Helper()
	dsns := os.Getenv(galeraEnv)
	if dsns == "" {
		t.Skipf("set %s to the DSNs of a Galera cluster's nodes (scripts/galera.sh up; scripts/galera.sh dsn N)", galeraEnv)
	}
	name := "dw_galera_" + strings.ToLower(strings.NewReplacer("/", "_", "-", "_", "=", "_").Replace(t.Name()))
	if len(name) > 64 {
		name = name[:64]
	}
	var dbs []*sql.DB
	for i, dsn := range strings.Split(dsns, ",") {
		cfg, err := gomysql.ParseDSN(strings.TrimSpace(dsn))
		if err != nil {
			t.Fatalf("%s: %v", galeraEnv, err)
		}
		if i == 0 {
			admin, err := sql.Open("mysql", cfg.FormatDSN())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := admin.ExecContext(ctxFor(t), "DROP DATABASE IF EXISTS "+name); err != nil {
				t.Fatal(err)
			}
			if _, err := admin.ExecContext(ctxFor(t), "CREATE DATABASE "+name); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_, _ = admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name)
				_ = admin.Close()
			})
		}
		cfg.DBName = name
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		// Causal reads, as the backend requires on a Galera node (a test
		// may override it to see the refusal).
		if _, ok := cfg.Params["wsrep_sync_wait"]; !ok {
			cfg.Params["wsrep_sync_wait"] = "3"
		}
		for k, v := range params {
			cfg.Params[k] = v
		}
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxIdleConns(16)
		t.Cleanup(func() { _ = db.Close() })
		dbs = append(dbs, db)
	}
	return dbs
}

// TestGaleraMigrateRefusesNodeLocalDDL: on a Galera node whose schema
// changes would apply to that node only (wsrep_osu_method=RSU), Migrate
// refuses with a *mysql.ClusterError naming the setting, and changes
// nothing; with the default (TOI) it migrates.
func TestGaleraMigrateRefusesNodeLocalDDL(t *testing.T) {
	rsu := galeraNodes(t, map[string]string{"wsrep_osu_method": "RSU"})[0]
	b, err := mysql.New(rsu, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Migrate(ctxFor(t))
	var ce *mysql.ClusterError
	if !errors.As(err, &ce) || ce.Setting != "wsrep_osu_method" || !backend.IsPermanent(err) {
		t.Fatalf("Migrate under RSU = %v; want a permanent *mysql.ClusterError on wsrep_osu_method", err)
	}
	var tables int
	if err := rsu.QueryRowContext(ctxFor(t), "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()").Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("after the refusal: %d tables, %v; want none", tables, err)
	}
}

// TestGaleraSupervisorsOnEveryNode: one supervisor per node, all on one
// database; SKIP LOCKED sees only its own node's locks, so two nodes can
// claim one job at once: Galera's certification makes the second commit
// lose (a deadlock error, retried). Every run completes and every step
// commits one result.
func TestGaleraSupervisorsOnEveryNode(t *testing.T) {
	dbs := galeraNodes(t, nil)
	var mu sync.Mutex
	execs := map[int64]int{}
	def := oneStep("galera", func(ctx step.Context, n int) (int, error) {
		mu.Lock()
		execs[ctx.RunID()]++
		mu.Unlock()
		return n * 2, nil
	})
	var clients []*ductwork.Client
	retries := &countRetries{}
	for i, db := range dbs {
		b, err := mysql.New(db, &mysql.Config{Logger: slog.New(retries)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := b.Migrate(ctxFor(t)); err != nil {
				t.Fatal(err)
			}
		}
		c := newClient(t, b, def)
		clients = append(clients, c)
	}
	const runs = 150
	var handles []*ductwork.Run[int]
	for i := range runs {
		// Triggers go through every node too.
		r, err := ductwork.Trigger(ctxFor(t), clients[i%len(clients)], def, i)
		if err != nil {
			t.Fatal(err)
		}
		handles = append(handles, r)
	}
	for _, c := range clients {
		start(t, newSupervisor(t, c, supervisor.Config{Workers: 8, PollInterval: 10 * time.Millisecond}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, r := range handles {
		out, err := r.Wait(ctx)
		if err != nil || out != 2*i {
			t.Fatalf("run %d: %d, %v; want %d", r.ID, out, err, 2*i)
		}
		steps, err := r.Steps(ctx)
		if err != nil || len(steps) != 1 || steps[0].Attempt != 1 {
			t.Fatalf("run %d steps %+v, %v; want one step, committed on its first attempt", r.ID, steps, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, r := range handles {
		if execs[r.ID] < 1 {
			t.Errorf("run %d: no execution recorded", r.ID)
		}
		total += execs[r.ID]
	}
	t.Logf("%d runs over %d nodes: %d executions (%d more than one per step), %d transactions retried after losing certification or a deadlock",
		runs, len(dbs), total, total-runs, retries.n.Load())
}

// countRetries is a slog handler counting the backend's "retrying
// transaction" records.
type countRetries struct{ n atomic.Int64 }

func (c *countRetries) Enabled(context.Context, slog.Level) bool { return true }
func (c *countRetries) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "retrying transaction") {
		c.n.Add(1)
	}
	return nil
}
func (c *countRetries) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *countRetries) WithGroup(string) slog.Handler      { return c }

// TestGaleraRefusesStaleReads: without causal reads (wsrep_sync_wait lacking
// bits 1 and 2) a node that lags or has just rejoined serves claims from a
// stale copy, so both Migrate and the registration of a process through such
// a connection refuse with a permanent *mysql.ClusterError naming
// wsrep_sync_wait. The registration check covers processes that never run
// Migrate and connect with a DSN of their own.
func TestGaleraRefusesStaleReads(t *testing.T) {
	for _, v := range []string{"0", "1", "2"} {
		t.Run("wsrep_sync_wait="+v, func(t *testing.T) {
			db := galeraNodes(t, map[string]string{"wsrep_sync_wait": v})[0]
			b, err := mysql.New(db, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = b.Migrate(ctxFor(t))
			var ce *mysql.ClusterError
			if !errors.As(err, &ce) || ce.Setting != "wsrep_sync_wait" || ce.Value != v || !backend.IsPermanent(err) {
				t.Fatalf("Migrate = %v; want a permanent *mysql.ClusterError on wsrep_sync_wait=%s", err, v)
			}
			_, err = b.RegisterProcess(ctxFor(t), &backend.RegisterProcessParams{ProcessID: "p-" + v, Host: "h", PID: 1})
			if !errors.As(err, &ce) || ce.Setting != "wsrep_sync_wait" || !backend.IsPermanent(err) {
				t.Fatalf("RegisterProcess = %v; want a permanent *mysql.ClusterError on wsrep_sync_wait", err)
			}
		})
	}
	// With causal reads it migrates and registers.
	db := galeraNodes(t, map[string]string{"wsrep_sync_wait": "3"})[1]
	b, err := mysql.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Migrate(ctxFor(t)); err != nil {
		t.Fatalf("Migrate with wsrep_sync_wait=3: %v", err)
	}
	if _, err := b.RegisterProcess(ctxFor(t), &backend.RegisterProcessParams{ProcessID: "p-3", Host: "h", PID: 1}); err != nil {
		t.Fatalf("RegisterProcess with wsrep_sync_wait=3: %v", err)
	}
}
