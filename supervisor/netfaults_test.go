package supervisor_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/mysql"
	"github.com/ductwork-go/ductwork/backend/postgres"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/internal/faultproxy"
	"github.com/ductwork-go/ductwork/internal/testdb"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// The network-fault tests put a fault proxy between the supervisor and a
// PostgreSQL or MariaDB server. SQLite has no network link, so they do not
// apply to it (the reconciliation they rely on is covered there by the
// conformance suite's Ambiguous area).

// linked is a database reached through a fault proxy.
type linked struct {
	name string
	// marks: pieces of the SQL of each operation, which the cut-after-commit
	// fault uses to find the transaction to cut (see faultproxy).
	completeMark, claimMark, haltMark, triggerMark string
	// begin and commit are the texts that start and commit a transaction
	// ("" when the driver commits a pipelined batch as one implicit
	// transaction).
	begin, commit string
	// open returns a migrated backend whose link goes through a new proxy,
	// and the proxy.
	open func(t *testing.T) (backend.Backend, *faultproxy.Proxy)
}

var linkedDBs = []linked{
	{
		name: "postgres", completeMark: "'completed', output", claimMark: "priority DESC",
		haltMark: "status = 'failed'", triggerMark: "ductwork_runs (pipeline", commit: "",
		open: openPostgresLinked,
	},
	{
		name: "mariadb", completeMark: "'completed', output", claimMark: "priority DESC",
		haltMark: "status = 'failed'", triggerMark: "'running', ?, NULL", begin: "START TRANSACTION", commit: "COMMIT",
		open: openMySQLLinked,
	},
}

func startProxy(t *testing.T, upstream string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func openPostgresLinked(t *testing.T) (backend.Backend, *faultproxy.Proxy) {
	t.Helper()
	direct, schema := testdb.PostgresPool(t)
	db, err := postgres.New(direct, &postgres.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctxFor(t)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	cfg, err := pgxpool.ParseConfig(testdb.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	host, port, _ := net.SplitHostPort(p.Addr())
	n, _ := strconv.Atoi(port)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(n)
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(ctxFor(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // after the proxy closes: held connections end
	b, err := postgres.New(pool, &postgres.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b, p
}

// mysqlLinkReadTimeout is the driver I/O timeout of the MariaDB link.
const mysqlLinkReadTimeout = 5 * time.Second

// quietDriver silences the MySQL driver's own log of the connection errors
// the faults cause.
var quietDriver sync.Once

func openMySQLLinked(t *testing.T) (backend.Backend, *faultproxy.Proxy) {
	t.Helper()
	quietDriver.Do(func() { _ = gomysql.SetLogger(log.New(io.Discard, "", 0)) })
	direct := testdb.MySQLDB(t)
	var name string
	if err := direct.QueryRowContext(ctxFor(t), "SELECT DATABASE()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	cfg, err := gomysql.ParseDSN(testdb.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, cfg.Addr)
	cfg.Addr, cfg.DBName = p.Addr(), name
	cfg.Timeout = 2 * time.Second
	// database/sql rolls back a cancelled transaction with no deadline of
	// its own; over a silent link only the driver's I/O timeouts end it
	// (docs/BACKEND-SEMANTICS.md, "MySQL/MariaDB behind a network").
	cfg.ReadTimeout, cfg.WriteTimeout = mysqlLinkReadTimeout, mysqlLinkReadTimeout
	connector, err := gomysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sqlOpen(connector)
	db.SetMaxIdleConns(32) // as a production pool would: no reconnect per transaction
	t.Cleanup(func() { _ = db.Close() })
	b, err := mysql.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Migrate(ctxFor(t)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return b, p
}

// eachLinked runs fn as a parallel subtest per linked database.
func eachLinked(t *testing.T, fn func(t *testing.T, l linked)) {
	for _, l := range linkedDBs {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			fn(t, l)
		})
	}
}

// faultConfig is a supervisor config that notices faults quickly.
func faultConfig() supervisor.Config {
	return supervisor.Config{
		Workers: 4, PollInterval: 20 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond,
		ReapThreshold: 5 * time.Second, ShutdownGrace: time.Second, ReleaseTimeout: time.Second,
		CallTimeout: 2 * time.Second,
	}
}

// counter counts executions per run and step.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(ctx step.Context, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[fmt.Sprintf("%d/%s", ctx.RunID(), name)]++
}

func (c *counter) get(runID int64, name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[fmt.Sprintf("%d/%s", runID, name)]
}

// chain3 is a three-step chain that counts its executions.
func chain3(name string, c *counter) *flow.Definition[int, int] {
	mk := func(s string) step.Step[int, int] {
		return step.New(s, func(ctx step.Context, n int) (int, error) { c.add(ctx, s); return n + 1, nil })
	}
	a, b, d := mk("s1"), mk("s2"), mk("s3")
	return flow.MustDefine(name, func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Chain(flow.Chain(flow.Start(p, a), b), d)
	})
}

func runStatus(t *testing.T, c *ductwork.Client, runID int64) string {
	t.Helper()
	r, err := c.Backend().GetRun(ctxFor(t), &backend.GetRunParams{RunID: runID})
	if err != nil {
		t.Fatalf("GetRun %d: %v", runID, err)
	}
	return r.Status
}

// TestNetAmbiguousCompletionWithClaimNext: the commit of s1 (which claims s2
// for this process) lands and its reply is lost. The retry learns that it
// landed, and the claim on s2 made by that commit is released by the
// process's reconciliation and run: the run completes, each step once.
func TestNetAmbiguousCompletionWithClaimNext(t *testing.T) {
	t.Parallel()
	eachLinked(t, func(t *testing.T, l linked) {
		b, p := l.open(t)
		var cnt counter
		def := chain3("ambiguous-complete-"+l.name, &cnt)
		c := newClient(t, b, def)
		_, fired, err := p.CutAfterCommit(l.completeMark, l.begin, l.commit, 1)
		if err != nil {
			t.Fatal(err)
		}
		run, err := ductwork.Trigger(ctxFor(t), c, def, 1)
		if err != nil {
			t.Fatal(err)
		}
		start(t, newSupervisor(t, c, faultConfig()))
		waitFor(t, "the run to complete", func() bool { return runStatus(t, c, run.ID) == backend.RunCompleted })
		if fired() != 1 {
			t.Fatalf("the cut fired %d times; want 1", fired())
		}
		for _, s := range []string{"s1", "s2", "s3"} {
			if n := cnt.get(run.ID, s); n != 1 {
				t.Errorf("%s ran %d times; want 1", s, n)
			}
		}
		// The step claimed by the commit whose reply was lost was released
		// by the reconciliation: one crash re-run, no retry spent. (On
		// PostgreSQL the cut is s1's completion, so that step is s2; on
		// MariaDB statements are prepared once per connection, and the cut
		// falls on the first completion that prepares its statement inside
		// its transaction: s1's or a later one's.)
		st := c1Steps(t, c, run.ID)
		crashes := st[1].CrashReruns + st[2].CrashReruns
		if st[1].Attempt != 1 || st[2].Attempt != 1 || crashes > 1 || (l.name == "postgres" && st[1].CrashReruns != 1) {
			t.Errorf("s2, s3: crash re-runs %d, %d, attempts %d, %d; want one crash re-run at most (s2's on PostgreSQL), no retry",
				st[1].CrashReruns, st[2].CrashReruns, st[1].Attempt, st[2].Attempt)
		}
	})
}

// TestNetAmbiguousClaim: a batch claim lands and its reply is lost; the four
// jobs it claimed for the live process are released by its reconciliation
// and run, once each.
func TestNetAmbiguousClaim(t *testing.T) {
	t.Parallel()
	eachLinked(t, func(t *testing.T, l linked) {
		b, p := l.open(t)
		var cnt counter
		one := step.New("only", func(ctx step.Context, n int) (int, error) { cnt.add(ctx, "only"); return n, nil })
		def := flow.MustDefine("ambiguous-claim-"+l.name, func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, one) })
		c := newClient(t, b, def)
		var runs []int64
		for i := range 4 {
			r, err := ductwork.Trigger(ctxFor(t), c, def, i)
			if err != nil {
				t.Fatal(err)
			}
			runs = append(runs, r.ID)
		}
		_, fired, err := p.CutAfterCommit(l.claimMark, l.begin, l.commit, 1)
		if err != nil {
			t.Fatal(err)
		}
		start(t, newSupervisor(t, c, faultConfig()))
		for _, id := range runs {
			waitFor(t, "the runs to complete", func() bool { return runStatus(t, c, id) == backend.RunCompleted })
			if n := cnt.get(id, "only"); n != 1 {
				t.Errorf("run %d: the step ran %d times; want 1", id, n)
			}
			// Claimed by the claim whose reply was lost, then released by
			// the reconciliation: one crash re-run, no retry spent.
			st, err := c.Steps(ctxFor(t), id)
			if err != nil || len(st) != 1 || st[0].CrashReruns != 1 || st[0].Attempt != 1 {
				t.Errorf("run %d steps = %+v, %v; want one crash re-run, attempt 1", id, st, err)
			}
		}
		if fired() != 1 {
			t.Fatalf("the cut fired %d times; want 1", fired())
		}
	})
}

// TestNetAmbiguousHaltRunsOnHaltOnce: the commit that halts a run lands and
// its reply is lost; the retry learns that it was the halting one, so OnHalt
// runs, and only once.
func TestNetAmbiguousHaltRunsOnHaltOnce(t *testing.T) {
	t.Parallel()
	eachLinked(t, func(t *testing.T, l linked) {
		b, p := l.open(t)
		var halts atomic.Int32
		bad := step.New("bad", func(step.Context, int) (int, error) { return 0, step.Permanent(errors.New("no")) })
		def := flow.MustDefine("ambiguous-halt-"+l.name, func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, bad) },
			flow.OnHalt(func(context.Context, flow.Halt) { halts.Add(1) }))
		c := newClient(t, b, def)
		_, fired, err := p.CutAfterCommit(l.haltMark, l.begin, l.commit, 1)
		if err != nil {
			t.Fatal(err)
		}
		run, err := ductwork.Trigger(ctxFor(t), c, def, 1)
		if err != nil {
			t.Fatal(err)
		}
		r := start(t, newSupervisor(t, c, faultConfig()))
		waitFor(t, "OnHalt", func() bool { return halts.Load() > 0 })
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		if fired() != 1 || halts.Load() != 1 || runStatus(t, c, run.ID) != backend.RunHalted {
			t.Fatalf("cut fired %d times, OnHalt ran %d times, run %s; want 1, 1, halted", fired(), halts.Load(), runStatus(t, c, run.ID))
		}
	})
}

// TestNetAmbiguousTriggerRetriedWithKey: a keyed trigger lands and its reply
// is lost; the caller's retry with the same key gets the run the first
// attempt started, and no duplicate exists.
func TestNetAmbiguousTriggerRetriedWithKey(t *testing.T) {
	t.Parallel()
	eachLinked(t, func(t *testing.T, l linked) {
		b, p := l.open(t)
		def := oneStep("ambiguous-trigger-"+l.name, func(_ step.Context, n int) (int, error) { return n, nil })
		c := newClient(t, b, def)
		_, fired, err := p.CutAfterCommit(l.triggerMark, l.begin, l.commit, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ductwork.Trigger(ctxFor(t), c, def, 7, ductwork.WithKey("order-7")); err == nil {
			t.Fatal("the cut trigger returned no error")
		}
		if fired() != 1 {
			t.Fatalf("the cut fired %d times; want 1", fired())
		}
		run, err := ductwork.Trigger(ctxFor(t), c, def, 7, ductwork.WithKey("order-7"))
		if err != nil || !run.Existing {
			t.Fatalf("retried Trigger = %+v, %v; want the existing run", run, err)
		}
		list, err := b.ListRuns(ctxFor(t), &backend.ListRunsParams{Pipeline: def.Name()})
		if err != nil || len(list.Runs) != 1 || list.Runs[0].ID != run.ID {
			t.Fatalf("runs = %+v, %v; want only run %d", list, err, run.ID)
		}
	})
}

// TestNetShutdownDuringBlackhole: the link goes silent while a step
// finishes; Run still returns within ShutdownGrace + ReleaseTimeout of its
// cancellation.
func TestNetShutdownDuringBlackhole(t *testing.T) {
	t.Parallel()
	eachLinked(t, func(t *testing.T, l linked) {
		b, p := l.open(t)
		began, finish := make(chan struct{}), make(chan struct{})
		var once sync.Once
		def := oneStep("blackhole-"+l.name, func(_ step.Context, n int) (int, error) {
			once.Do(func() { close(began) })
			<-finish
			return n, nil
		})
		c := newClient(t, b, def)
		if _, err := ductwork.Trigger(ctxFor(t), c, def, 1); err != nil {
			t.Fatal(err)
		}
		cfg := faultConfig()
		r := start(t, newSupervisor(t, c, cfg))
		<-began
		if _, err := p.Blackhole(); err != nil {
			t.Fatal(err)
		}
		// The blackhole stays until the proxy closes with the test.
		close(finish) // the commit now goes into the blackhole
		time.Sleep(50 * time.Millisecond)
		t0 := time.Now()
		r.cancel()
		if err := r.wait(t); err != nil {
			t.Fatal(err)
		}
		took := time.Since(t0)
		limit := cfg.ShutdownGrace + cfg.ReleaseTimeout + 500*time.Millisecond
		if took > limit {
			t.Fatalf("Run returned %s after cancellation; want within %s", took, limit)
		}
		t.Logf("Run returned %s after cancellation during a blackhole", took)
	})
}

// TestNetResetsUnderLoad: two supervisors run three-step chains while every
// connection is reset every 300 ms for two seconds; once the link heals,
// every run completes (no claim is stranded on a live process) and every
// step committed exactly one result.
func TestNetResetsUnderLoad(t *testing.T) {
	t.Parallel()
	eachLinked(t, func(t *testing.T, l linked) {
		b, p := l.open(t)
		var cnt counter
		def := chain3("resets-"+l.name, &cnt)
		c1, c2 := newClient(t, b, def), newClient(t, b, def)
		start(t, newSupervisor(t, c1, faultConfig()))
		start(t, newSupervisor(t, c2, faultConfig()))
		var runs []int64
		deadline := time.Now().Add(2 * time.Second)
		next := time.Now()
		for time.Now().Before(deadline) {
			if time.Now().After(next) {
				if err := p.ResetConnections(); err != nil {
					t.Fatal(err)
				}
				next = time.Now().Add(300 * time.Millisecond)
			}
			if r, err := ductwork.Trigger(ctxFor(t), c1, def, 1); err == nil {
				runs = append(runs, r.ID)
			}
			time.Sleep(5 * time.Millisecond)
		}
		p.Heal()
		for _, id := range runs {
			waitFor(t, "every run to complete", func() bool { return runStatus(t, c1, id) == backend.RunCompleted })
			for _, st := range c1Steps(t, c1, id) {
				if st.Status != backend.JobCompleted {
					t.Errorf("run %d step %s is %s", id, st.Node, st.Status)
				}
			}
		}
		t.Logf("%d runs completed across the resets", len(runs))
	})
}

func c1Steps(t *testing.T, c *ductwork.Client, runID int64) []ductwork.StepInfo {
	t.Helper()
	s, err := c.Steps(ctxFor(t), runID)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 3 {
		t.Fatalf("run %d has %d step instances; want 3", runID, len(s))
	}
	return s
}

func sqlOpen(c driver.Connector) *sql.DB { return sql.OpenDB(c) }

// TestNetRequestsPerStep measures the requests a supervisor sends per step
// of a chain run with ClaimNext (one step after another on one worker), and
// checks that it stays within a budget per backend.
func TestNetRequestsPerStep(t *testing.T) {
	t.Parallel()
	eachLinked(t, func(t *testing.T, l linked) {
		b, p := l.open(t)
		const steps = 30
		var cnt counter
		mk := func(i int) step.Step[int, int] {
			name := fmt.Sprintf("s%d", i)
			return step.New(name, func(ctx step.Context, n int) (int, error) { cnt.add(ctx, name); return n + 1, nil })
		}
		def := flow.MustDefine("requests-"+l.name, func(p *flow.Pipeline[int]) flow.End[int] {
			n := flow.Start(p, mk(0))
			for i := 1; i < steps; i++ {
				n = flow.Chain(n, mk(i))
			}
			return n
		})
		c := newClient(t, b, def)
		run, err := ductwork.Trigger(ctxFor(t), c, def, 0)
		if err != nil {
			t.Fatal(err)
		}
		cfg := faultConfig()
		cfg.HeartbeatInterval, cfg.PollInterval = 4*time.Second, 10*time.Second
		s := newSupervisor(t, c, cfg)
		// Warm up: statements are prepared once per connection.
		warm, err := ductwork.Trigger(ctxFor(t), c, def, 0)
		if err != nil {
			t.Fatal(err)
		}
		r := start(t, s)
		waitFor(t, "the warm-up run", func() bool { return runStatus(t, c, warm.ID) == backend.RunCompleted })
		waitFor(t, "the run", func() bool { return runStatus(t, c, run.ID) == backend.RunCompleted })
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		_, count, err := p.CountRequests()
		if err != nil {
			t.Fatal(err)
		}
		run2, err := ductwork.Trigger(ctxFor(t), c, def, 0)
		if err != nil {
			t.Fatal(err)
		}
		base := count()
		r = start(t, newSupervisor(t, c, cfg))
		waitFor(t, "the measured run", func() bool { return runStatus(t, c, run2.ID) == backend.RunCompleted })
		perStep := float64(count()-base) / steps
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %.1f requests per step of a %d-step chain (claim, register and heartbeats included)", l.name, perStep, steps)
	})
}

// TestNetLatencyMakesProgress: with 200 ms of latency each way on the link,
// a supervisor completes a batch of three-step runs and shuts down within
// its grace period.
func TestNetLatencyMakesProgress(t *testing.T) {
	t.Parallel()
	eachLinked(t, func(t *testing.T, l linked) {
		b, p := l.open(t)
		var cnt counter
		def := chain3("latency-"+l.name, &cnt)
		c := newClient(t, b, def)
		const runs = 4
		var ids []int64
		for i := range runs {
			r, err := ductwork.Trigger(ctxFor(t), c, def, i)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.ID)
		}
		if _, err := p.Latency(faultproxy.Upstream, 200, 10); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Latency(faultproxy.Downstream, 200, 10); err != nil {
			t.Fatal(err)
		}
		cfg := faultConfig()
		// A call takes several round trips of 400 ms: keep the default timeout.
		cfg.Workers, cfg.HeartbeatInterval, cfg.ShutdownGrace, cfg.CallTimeout = 16, time.Second, 2*time.Second, 0
		t0 := time.Now()
		r := start(t, newSupervisor(t, c, cfg))
		for _, id := range ids {
			waitFor(t, "every run to complete", func() bool {
				r, err := b.GetRun(ctxFor(t), &backend.GetRunParams{RunID: id})
				return err == nil && r.Status == backend.RunCompleted
			})
		}
		took := time.Since(t0)
		t1 := time.Now()
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		stopped := time.Since(t1)
		t.Logf("%s, 200 ms each way: %d three-step runs completed in %s; shutdown took %s", l.name, runs, took.Round(time.Millisecond), stopped.Round(time.Millisecond))
		if stopped > cfg.ShutdownGrace+cfg.ReleaseTimeout {
			t.Errorf("shutdown took %s; want within %s", stopped, cfg.ShutdownGrace+cfg.ReleaseTimeout)
		}
	})
}
