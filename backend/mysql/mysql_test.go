package mysql_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/conformance"
	"github.com/ductwork-go/ductwork/backend/mysql"
	"github.com/ductwork-go/ductwork/internal/leakcheck"
	gomysql "github.com/go-sql-driver/mysql"
)

func TestMain(m *testing.M) {
	conformance.CrashHelper(conformance.Harness{Crash: crashHarness})
	leakcheck.Main(m)
}

const dsnEnv = "DUCTWORK_TEST_MYSQL_DSN"

// newDB creates a database dw_<random> on the server named by
// DUCTWORK_TEST_MYSQL_DSN, returns a handle on it and drops it when the test
// ends. The test is skipped when the variable is unset.
func newDB(t *testing.T) *sql.DB {
	t.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		t.Skipf("set %s (for example root@tcp(127.0.0.1:3306)/) to run the MySQL/MariaDB tests", dsnEnv)
	}
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("parse %s: %v", dsnEnv, err)
	}
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "dw_" + hex.EncodeToString(rnd[:])
	// name is generated above from hex digits only.
	if _, err := admin.ExecContext(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(20)
	t.Cleanup(func() { db.Close() })
	return db
}

// newBackend returns a migrated Backend on a fresh database and its handle.
func newBackend(t *testing.T) (*mysql.Backend, *sql.DB) {
	t.Helper()
	db := newDB(t)
	b, err := mysql.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return b, db
}

var def = backend.DefinitionRef{Pipeline: "pipe", Fingerprint: "fp1"}

func trigger(t *testing.T, b *mysql.Backend, first backend.NewJob) *backend.TriggerResult {
	t.Helper()
	res, err := b.Trigger(t.Context(), &backend.TriggerParams{
		Pipeline: def.Pipeline, Fingerprint: def.Fingerprint, Input: []byte("in"),
		Metadata: map[string]string{"k": "v"}, First: first,
	})
	if err != nil {
		t.Fatalf("trigger: %v", err)
	}
	return res
}

func claim(t *testing.T, b *mysql.Backend, proc string, limit int) []*backend.Job {
	t.Helper()
	res, err := b.Claim(t.Context(), &backend.ClaimParams{ProcessID: proc, Limit: limit, Definitions: []backend.DefinitionRef{def}})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return res.Jobs
}

func claimOne(t *testing.T, b *mysql.Backend, proc string) *backend.Job {
	t.Helper()
	jobs := claim(t, b, proc, 1)
	if len(jobs) != 1 {
		t.Fatalf("claimed %d jobs, want 1", len(jobs))
	}
	return jobs[0]
}

func complete(t *testing.T, b *mysql.Backend, j *backend.Job, proc string, out string, plan backend.Plan) *backend.CompleteResult {
	t.Helper()
	res, err := b.Complete(t.Context(), &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Output: []byte(out), Plan: plan})
	if err != nil {
		t.Fatalf("complete job %d: %v", j.ID, err)
	}
	return res
}

func jobsOf(t *testing.T, b *mysql.Backend, runID int64) []*backend.JobInfo {
	t.Helper()
	res, err := b.ListJobs(t.Context(), &backend.ListJobsParams{RunID: runID, Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	return res.Jobs
}

func TestNewConfig(t *testing.T) {
	t.Parallel()
	if _, err := mysql.New(nil, nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	db, err := sql.Open("mysql", "root@tcp(127.0.0.1:1)/none")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ce *mysql.ConfigError
	if _, err := mysql.New(db, &mysql.Config{InsertBatchRows: -1}); !errors.As(err, &ce) {
		t.Errorf("negative InsertBatchRows: got %v, want *ConfigError", err)
	}
	b, err := mysql.New(db, &mysql.Config{})
	if err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	caps := b.Capabilities()
	if !caps.SkipLocked || caps.Notify || caps.TimePrecision != time.Microsecond {
		t.Errorf("capabilities = %+v", caps)
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Now(t.Context()); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Now after Close: %v, want ErrClosed", err)
	}
	if !strings.Contains(mysql.MigrationSQL(), "CREATE TABLE IF NOT EXISTS ductwork_jobs") {
		t.Error("MigrationSQL lacks ductwork_jobs")
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b, err := mysql.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = b.Migrate(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate %d: %v", i, err)
		}
	}
	if err := b.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM ductwork_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if want := len(regexp.MustCompile(`(?m)^-- \d{4}_\w+\.sql$`).FindAllString(mysql.MigrationSQL(), -1)); n != want {
		t.Errorf("%d versions recorded, want %d", n, want)
	}
	// A partly applied version (DDL is not transactional) is completed; so
	// are versions 2 and 3, whose ADD COLUMNs find their columns there.
	if _, err := db.Exec("DELETE FROM ductwork_migrations"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("DROP TABLE ductwork_values"); err != nil {
		t.Fatal(err)
	}
	if err := b.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate after partial: %v", err)
	}
	if err := db.QueryRow("SELECT COUNT(*) FROM ductwork_values").Scan(&n); err != nil {
		t.Fatalf("ductwork_values not recreated: %v", err)
	}
}

func TestTriggerClaimRoundTrip(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t)
	ctx := t.Context()
	tr := trigger(t, b, backend.NewJob{NodeID: "start", Input: []byte("x"), Priority: 3})
	run, err := b.GetRun(ctx, &backend.GetRunParams{RunID: tr.RunID})
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != backend.RunRunning || run.Pipeline != "pipe" || run.Metadata["k"] != "v" || string(run.Input) != "in" {
		t.Errorf("run = %+v", run)
	}
	// Other definitions claim nothing.
	res, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: "p", Limit: 5, Definitions: []backend.DefinitionRef{{Pipeline: "pipe", Fingerprint: "other"}}})
	if err != nil || len(res.Jobs) != 0 {
		t.Fatalf("claim of another fingerprint: %v, %d jobs", err, len(res.Jobs))
	}
	j := claimOne(t, b, "p")
	now, err := b.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if j.ID != tr.JobID || j.RunID != tr.RunID || j.NodeID != "start" || string(j.Input) != "x" || j.Attempt != 1 ||
		j.Crashes != 0 || j.Fence != 1 || j.Join || j.Metadata["k"] != "v" || j.Pipeline != "pipe" || j.Fingerprint != "fp1" {
		t.Errorf("claimed job = %+v", j)
	}
	if j.ClaimedAt.After(now) || now.Sub(j.ClaimedAt) > time.Minute || j.DueAt.After(j.ClaimedAt) {
		t.Errorf("times: claimed %v due %v, db now %v", j.ClaimedAt, j.DueAt, now)
	}
	if jobs := claim(t, b, "p2", 5); len(jobs) != 0 {
		t.Errorf("claimed a running job again")
	}
	// A delayed job is not claimed.
	r := complete(t, b, j, "p", "out", backend.Plan{Jobs: []backend.NewJob{{NodeID: "later", Delay: time.Hour}}})
	if r.NewJobs != 1 {
		t.Errorf("NewJobs = %d", r.NewJobs)
	}
	if jobs := claim(t, b, "p", 5); len(jobs) != 0 {
		t.Errorf("claimed a job due in an hour")
	}
	infos := jobsOf(t, b, tr.RunID)
	if len(infos) != 2 || infos[0].Status != backend.JobCompleted || string(infos[0].Output) != "out" ||
		infos[0].ProcessID != "p" || infos[0].FinishedAt == nil || infos[1].Status != backend.JobPending {
		t.Errorf("jobs = %+v %+v", infos[0], infos[1])
	}
	if d := infos[1].DueAt.Sub(*infos[0].FinishedAt); d != time.Hour {
		t.Errorf("delayed job due %v after the completion, want 1h", d)
	}
}

func TestJoinFiresOnceInSlotOrder(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t)
	tr := trigger(t, b, backend.NewJob{NodeID: "start"})
	first := claimOne(t, b, "p")
	plan := backend.Plan{OpenJoins: []backend.OpenJoin{{NodeID: "collapse", Expected: 3, Priority: 1}}}
	for i := range 3 {
		plan.Jobs = append(plan.Jobs, backend.NewJob{NodeID: "branch", Scope: strconv.Itoa(i), Input: []byte{byte(i)}})
	}
	if r := complete(t, b, first, "p", "", plan); r.NewJobs != 3 || r.JoinFired {
		t.Fatalf("open: %+v", r)
	}
	branches := claim(t, b, "p", 10)
	if len(branches) != 3 {
		t.Fatalf("claimed %d branches", len(branches))
	}
	// Arrive concurrently, in reverse slot order of claim.
	results := make([]*backend.CompleteResult, 3)
	var wg sync.WaitGroup
	for i, j := range branches {
		wg.Go(func() {
			slot, _ := strconv.Atoi(j.Scope)
			r, err := b.Complete(t.Context(), &backend.CompleteParams{JobID: j.ID, ProcessID: "p", Fence: j.Fence,
				Output: []byte("out" + j.Scope), Plan: backend.Plan{Arrive: &backend.Arrival{NodeID: "collapse", Slot: slot}}})
			if err != nil {
				t.Errorf("arrive %s: %v", j.Scope, err)
				return
			}
			results[i] = r
		})
	}
	wg.Wait()
	fired := 0
	for _, r := range results {
		if r != nil && r.JoinFired {
			fired++
			if r.NewJobs != 1 {
				t.Errorf("fired with NewJobs %d", r.NewJobs)
			}
		}
	}
	if fired != 1 {
		t.Fatalf("join fired %d times", fired)
	}
	j := claimOne(t, b, "p")
	if !j.Join || j.NodeID != "collapse" || j.Input != nil {
		t.Errorf("join job = %+v", j)
	}
	want := [][]byte{[]byte("out0"), []byte("out1"), []byte("out2")}
	if !slices.EqualFunc(j.JoinInputs, want, bytes.Equal) {
		t.Errorf("JoinInputs = %q, want %q", j.JoinInputs, want)
	}
	r := complete(t, b, j, "p", "final", backend.Plan{CompleteRun: true})
	if !r.RunCompleted {
		t.Error("run not completed")
	}
	run, err := b.GetRun(t.Context(), &backend.GetRunParams{RunID: tr.RunID})
	if err != nil || run.Status != backend.RunCompleted || string(run.Output) != "final" {
		t.Errorf("run = %+v, %v", run, err)
	}
	// An arrival at a join that was never opened rolls back.
	tr2 := trigger(t, b, backend.NewJob{NodeID: "start"})
	j2 := claimOne(t, b, "p")
	_, err = b.Complete(t.Context(), &backend.CompleteParams{JobID: j2.ID, ProcessID: "p", Fence: j2.Fence,
		Plan: backend.Plan{Jobs: []backend.NewJob{{NodeID: "x"}}, Arrive: &backend.Arrival{NodeID: "nope"}}})
	if err == nil {
		t.Fatal("arrival at a missing join succeeded")
	}
	if infos := jobsOf(t, b, tr2.RunID); len(infos) != 1 || infos[0].Status != backend.JobRunning {
		t.Errorf("after failed complete: %d jobs, first %+v", len(infos), infos[0])
	}
}

func TestJoinExpectedZero(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t)
	trigger(t, b, backend.NewJob{NodeID: "start"})
	first := claimOne(t, b, "p")
	r := complete(t, b, first, "p", "[]", backend.Plan{OpenJoins: []backend.OpenJoin{{NodeID: "collapse", Scope: "s", Expected: 0}}})
	if r.NewJobs != 1 {
		t.Fatalf("NewJobs = %d, want 1", r.NewJobs)
	}
	j := claimOne(t, b, "p")
	if !j.Join || j.NodeID != "collapse" || j.Scope != "s" || j.JoinInputs == nil || len(j.JoinInputs) != 0 {
		t.Errorf("join job = %+v (JoinInputs nil: %v)", j, j.JoinInputs == nil)
	}
}

// snapshot renders every row the backend owns, to prove nothing changed.
func snapshot(t *testing.T, db *sql.DB) string {
	t.Helper()
	var sb strings.Builder
	for _, q := range []string{
		"SELECT * FROM ductwork_runs ORDER BY id", "SELECT * FROM ductwork_jobs ORDER BY id",
		"SELECT * FROM ductwork_joins ORDER BY id", "SELECT * FROM ductwork_values ORDER BY run_id, name",
		"SELECT * FROM ductwork_processes ORDER BY id",
	} {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				fmt.Fprintf(&sb, "%q,", v)
			}
			sb.WriteByte('\n')
		}
		rows.Close()
	}
	return sb.String()
}

func TestStaleFence(t *testing.T) {
	t.Parallel()
	b, db := newBackend(t)
	ctx := t.Context()
	trigger(t, b, backend.NewJob{NodeID: "start"})
	j := claimOne(t, b, "p")
	before := snapshot(t, db)
	plan := backend.Plan{Jobs: []backend.NewJob{{NodeID: "next"}}, OpenJoins: []backend.OpenJoin{{NodeID: "j"}}, CompleteRun: true}
	for name, p := range map[string]struct {
		fence int64
		proc  string
	}{"old fence": {j.Fence - 1, "p"}, "newer fence": {j.Fence + 1, "p"}, "other owner": {j.Fence, "q"}} {
		_, err := b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: p.proc, Fence: p.fence, Output: []byte("x"), Plan: plan})
		if !errors.Is(err, backend.ErrStaleClaim) {
			t.Errorf("%s: Complete: %v, want ErrStaleClaim", name, err)
		}
		_, err = b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: p.proc, Fence: p.fence, Error: "e"})
		if !errors.Is(err, backend.ErrStaleClaim) {
			t.Errorf("%s: Fail: %v, want ErrStaleClaim", name, err)
		}
		_, err = b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: p.proc, Fence: p.fence, Error: "e", Retry: true})
		if !errors.Is(err, backend.ErrStaleClaim) {
			t.Errorf("%s: Fail retry: %v, want ErrStaleClaim", name, err)
		}
		_, err = b.Release(ctx, &backend.ReleaseParams{JobID: j.ID, ProcessID: p.proc, Fence: p.fence})
		if !errors.Is(err, backend.ErrStaleClaim) {
			t.Errorf("%s: Release: %v, want ErrStaleClaim", name, err)
		}
	}
	if after := snapshot(t, db); after != before {
		t.Errorf("stale calls changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// Release, reclaim: the old claim is stale, the new one works.
	if _, err := b.Release(ctx, &backend.ReleaseParams{JobID: j.ID, ProcessID: "p", Fence: j.Fence}); err != nil {
		t.Fatal(err)
	}
	j2 := claimOne(t, b, "q")
	if j2.Fence != j.Fence+1 || j2.Crashes != 0 || j2.Attempt != 1 { // a release is not a crash
		t.Errorf("reclaimed job = %+v", j2)
	}
	if _, err := b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: "p", Fence: j.Fence}); !errors.Is(err, backend.ErrStaleClaim) {
		t.Errorf("zombie complete: %v", err)
	}
	complete(t, b, j2, "q", "ok", backend.Plan{})
}

// waitDBClock waits until the database's clock is past t.
func waitDBClock(t *testing.T, b *mysql.Backend, after time.Time) {
	t.Helper()
	for {
		now, err := b.Now(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if now.After(after) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReap(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t)
	ctx := t.Context()
	dead, err := b.RegisterProcess(ctx, &backend.RegisterProcessParams{ProcessID: "dead", Host: "h", PID: 1, Definitions: []backend.DefinitionRef{def}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.RegisterProcess(ctx, &backend.RegisterProcessParams{ProcessID: "dead", Host: "h", PID: 1}); err != nil {
		t.Fatalf("register again: %v", err)
	}
	tr := trigger(t, b, backend.NewJob{NodeID: "start"})
	j := claimOne(t, b, "dead")
	// An orphan: a running job whose owner never registered.
	tr2 := trigger(t, b, backend.NewJob{NodeID: "start"})
	orphan := claimOne(t, b, "ghost")

	const threshold = 200 * time.Millisecond
	hb, err := b.Heartbeat(ctx, &backend.HeartbeatParams{ProcessID: "dead"})
	if err != nil {
		t.Fatal(err)
	}
	if hb.At.Before(dead.StartedAt) {
		t.Errorf("heartbeat %v before start %v", hb.At, dead.StartedAt)
	}
	if _, err := b.RegisterProcess(ctx, &backend.RegisterProcessParams{ProcessID: "reaper", Host: "h", PID: 2}); err != nil {
		t.Fatal(err)
	}
	// Nothing is stale yet.
	if r, err := b.Reap(ctx, &backend.ReapParams{ProcessID: "reaper", Threshold: time.Hour}); err != nil || len(r.Processes) != 0 || r.Jobs != 0 {
		t.Fatalf("early reap: %+v, %v", r, err)
	}
	waitDBClock(t, b, hb.At.Add(threshold))
	if _, err := b.Heartbeat(ctx, &backend.HeartbeatParams{ProcessID: "reaper"}); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	results := make([]*backend.ReapResult, 4)
	for i := range results {
		wg.Go(func() {
			r, err := b.Reap(ctx, &backend.ReapParams{ProcessID: "reaper", Threshold: threshold})
			if err != nil {
				t.Errorf("reap %d: %v", i, err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	var procs []string
	jobs := 0
	for _, r := range results {
		if r != nil {
			procs = append(procs, r.Processes...)
			jobs += r.Jobs
		}
	}
	if !slices.Equal(procs, []string{"dead"}) || jobs != 2 {
		t.Fatalf("reaped %v and %d jobs, want [dead] and 2", procs, jobs)
	}
	if r, err := b.Reap(ctx, &backend.ReapParams{ProcessID: "reaper", Threshold: threshold}); err != nil || len(r.Processes) != 0 || r.Jobs != 0 {
		t.Errorf("second reap: %+v, %v", r, err)
	}
	for _, runID := range []int64{tr.RunID, tr2.RunID} {
		info := jobsOf(t, b, runID)[0]
		if info.Status != backend.JobPending || info.Crashes != 1 || info.Attempt != 1 || info.ProcessID != "" {
			t.Errorf("reaped job = %+v", info)
		}
	}
	if _, err := b.Heartbeat(ctx, &backend.HeartbeatParams{ProcessID: "dead"}); !errors.Is(err, backend.ErrProcessNotFound) {
		t.Errorf("heartbeat of reaped process: %v", err)
	}
	for _, old := range []struct {
		j    *backend.Job
		proc string
	}{{j, "dead"}, {orphan, "ghost"}} {
		_, err := b.Complete(ctx, &backend.CompleteParams{JobID: old.j.ID, ProcessID: old.proc, Fence: old.j.Fence})
		if !errors.Is(err, backend.ErrStaleClaim) {
			t.Errorf("zombie complete: %v", err)
		}
	}
	again := claim(t, b, "reaper", 10)
	if len(again) != 2 || again[0].Fence != 2 || again[0].Crashes != 1 {
		t.Errorf("reclaimed %+v", again)
	}
	// Deregister gives the jobs back.
	if err := b.DeregisterProcess(ctx, &backend.DeregisterProcessParams{ProcessID: "reaper"}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeregisterProcess(ctx, &backend.DeregisterProcessParams{ProcessID: "reaper"}); err != nil {
		t.Fatalf("deregister twice: %v", err)
	}
	if info := jobsOf(t, b, tr.RunID)[0]; info.Status != backend.JobPending || info.Crashes != 1 { // the reap counted, the release did not
		t.Errorf("after deregister: %+v", info)
	}
}

func TestFailRetryAndHalt(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t)
	ctx := t.Context()
	tr := trigger(t, b, backend.NewJob{NodeID: "start"})
	j := claimOne(t, b, "p")
	if r, err := b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: "p", Fence: j.Fence, Error: "boom", Retry: true}); err != nil || r.Halted {
		t.Fatalf("retry: %+v, %v", r, err)
	}
	j = claimOne(t, b, "p")
	if j.Attempt != 2 || j.Crashes != 0 {
		t.Errorf("retried job attempt %d crashes %d", j.Attempt, j.Crashes)
	}
	// Two parallel branches both fail for good: the run halts once.
	complete(t, b, j, "p", "", backend.Plan{Jobs: []backend.NewJob{{NodeID: "a"}, {NodeID: "b"}}})
	branches := claim(t, b, "p", 5)
	if len(branches) != 2 {
		t.Fatalf("claimed %d", len(branches))
	}
	halted := make([]bool, 2)
	var wg sync.WaitGroup
	for i, br := range branches {
		wg.Go(func() {
			r, err := b.Fail(ctx, &backend.FailParams{JobID: br.ID, ProcessID: "p", Fence: br.Fence, Error: "fatal " + br.NodeID})
			if err != nil {
				t.Errorf("fail: %v", err)
				return
			}
			halted[i] = r.Halted
		})
	}
	wg.Wait()
	if halted[0] == halted[1] {
		t.Fatalf("Halted = %v, want exactly one true", halted)
	}
	run, err := b.GetRun(ctx, &backend.GetRunParams{RunID: tr.RunID})
	if err != nil || run.Status != backend.RunHalted || !strings.HasPrefix(run.Error, "fatal ") {
		t.Errorf("run = %+v, %v", run, err)
	}
	// A retry delay is honoured by the database's clock.
	tr2 := trigger(t, b, backend.NewJob{NodeID: "start"})
	j2 := claimOne(t, b, "p")
	if _, err := b.Fail(ctx, &backend.FailParams{JobID: j2.ID, ProcessID: "p", Fence: j2.Fence, Error: "later", Retry: true, RetryAfter: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if jobs := claim(t, b, "p", 5); len(jobs) != 0 {
		t.Errorf("claimed a job retrying in an hour")
	}
	if info := jobsOf(t, b, tr2.RunID)[0]; info.Attempt != 2 || info.Error != "later" || info.Status != backend.JobPending {
		t.Errorf("retrying job = %+v", info)
	}
}

func TestCancelRevive(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t)
	ctx := t.Context()
	if _, err := b.CancelRun(ctx, &backend.CancelRunParams{RunID: 999}); !errors.Is(err, backend.ErrRunNotFound) {
		t.Errorf("cancel unknown: %v", err)
	}
	if _, err := b.ReviveRun(ctx, &backend.ReviveRunParams{RunID: 999}); !errors.Is(err, backend.ErrRunNotFound) {
		t.Errorf("revive unknown: %v", err)
	}
	if _, err := b.GetRun(ctx, &backend.GetRunParams{RunID: 999}); !errors.Is(err, backend.ErrRunNotFound) {
		t.Errorf("get unknown: %v", err)
	}
	tr := trigger(t, b, backend.NewJob{NodeID: "start"})
	if _, err := b.ReviveRun(ctx, &backend.ReviveRunParams{RunID: tr.RunID}); !errors.Is(err, backend.ErrRunState) {
		t.Errorf("revive running: %v", err)
	}
	j := claimOne(t, b, "p")
	if _, err := b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: "p", Fence: j.Fence, Error: "e"}); err != nil {
		t.Fatal(err)
	}
	r, err := b.ReviveRun(ctx, &backend.ReviveRunParams{RunID: tr.RunID})
	if err != nil || r.Jobs != 1 {
		t.Fatalf("revive: %+v, %v", r, err)
	}
	j = claimOne(t, b, "p")
	if j.Attempt != 2 || j.RetryBase != 1 {
		t.Errorf("revived attempt = %d, retry base %d; want 2, 1", j.Attempt, j.RetryBase)
	}
	if _, err := b.Release(ctx, &backend.ReleaseParams{JobID: j.ID, ProcessID: "p", Fence: j.Fence}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CancelRun(ctx, &backend.CancelRunParams{RunID: tr.RunID, Reason: "stop"}); err != nil {
		t.Fatal(err)
	}
	if jobs := claim(t, b, "p", 5); len(jobs) != 0 {
		t.Errorf("claimed a job of a cancelled run")
	}
	run, _ := b.GetRun(ctx, &backend.GetRunParams{RunID: tr.RunID})
	if run.Status != backend.RunCancelled || run.Error != "stop" {
		t.Errorf("run = %+v", run)
	}
	if _, err := b.CancelRun(ctx, &backend.CancelRunParams{RunID: tr.RunID}); !errors.Is(err, backend.ErrRunState) {
		t.Errorf("cancel cancelled: %v", err)
	}
	if _, err := b.ReviveRun(ctx, &backend.ReviveRunParams{RunID: tr.RunID}); !errors.Is(err, backend.ErrRunState) {
		t.Errorf("revive cancelled: %v", err)
	}
	// Stranded: the run is finished, so nothing is stranded; a new one is.
	trigger(t, b, backend.NewJob{NodeID: "start"})
	s, err := b.StrandedDefinitions(ctx, &backend.StrandedDefinitionsParams{})
	if err != nil || len(s.Definitions) != 1 || s.Definitions[0].DefinitionRef != def || s.Definitions[0].Runs != 1 {
		t.Errorf("stranded = %+v, %v", s, err)
	}
	s, err = b.StrandedDefinitions(ctx, &backend.StrandedDefinitionsParams{Known: []backend.DefinitionRef{def}})
	if err != nil || len(s.Definitions) != 0 {
		t.Errorf("stranded with known = %+v, %v", s, err)
	}
}

func TestSetValueWriteOnce(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t)
	ctx := t.Context()
	tr := trigger(t, b, backend.NewJob{NodeID: "start"})
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			errs[i] = b.SetValue(ctx, &backend.SetValueParams{RunID: tr.RunID, Key: "k", Value: []byte{byte('0' + i)}})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner == -1:
			winner = i
		case err == nil:
			t.Errorf("writers %d and %d both won", winner, i)
		case !errors.Is(err, backend.ErrValueExists):
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if winner == -1 {
		t.Fatal("no writer won")
	}
	got, err := b.GetValue(ctx, &backend.GetValueParams{RunID: tr.RunID, Key: "k"})
	if err != nil || string(got.Value) != string(rune('0'+winner)) {
		t.Errorf("value = %q, %v; winner %d", got.Value, err, winner)
	}
	for range 2 { // the second overwrite writes the same value again
		if err := b.SetValue(ctx, &backend.SetValueParams{RunID: tr.RunID, Key: "k", Value: []byte("new"), Overwrite: true}); err != nil {
			t.Fatalf("overwrite: %v", err)
		}
	}
	if got, _ := b.GetValue(ctx, &backend.GetValueParams{RunID: tr.RunID, Key: "k"}); string(got.Value) != "new" {
		t.Errorf("after overwrite: %q", got.Value)
	}
	if _, err := b.GetValue(ctx, &backend.GetValueParams{RunID: tr.RunID, Key: "missing"}); !errors.Is(err, backend.ErrValueNotFound) {
		t.Errorf("missing key: %v", err)
	}
	if err := b.SetValue(ctx, &backend.SetValueParams{RunID: 999, Key: "k", Value: []byte("x")}); !errors.Is(err, backend.ErrRunNotFound) {
		t.Errorf("unknown run: %v", err)
	}
	var tl *mysql.TooLongError
	if err := b.SetValue(ctx, &backend.SetValueParams{RunID: tr.RunID, Key: strings.Repeat("k", 256)}); !errors.As(err, &tl) {
		t.Errorf("long key: %v", err)
	}
}

func TestTriggerTx(t *testing.T) {
	t.Parallel()
	b, db := newBackend(t)
	ctx := t.Context()
	if _, err := b.Trigger(ctx, &backend.TriggerParams{Pipeline: "pipe", Tx: "not a tx"}); !errors.Is(err, backend.ErrUnsupportedTx) {
		t.Errorf("string Tx: %v", err)
	}
	if _, err := b.Trigger(ctx, &backend.TriggerParams{Pipeline: "pipe", Tx: (*sql.Tx)(nil)}); !errors.Is(err, backend.ErrUnsupportedTx) {
		t.Errorf("nil *sql.Tx: %v", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Trigger(ctx, &backend.TriggerParams{Pipeline: def.Pipeline, Fingerprint: def.Fingerprint, First: backend.NewJob{NodeID: "start"}, Tx: tx})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetRun(ctx, &backend.GetRunParams{RunID: res.RunID}); !errors.Is(err, backend.ErrRunNotFound) {
		t.Errorf("rolled-back run: %v", err)
	}
	var n int
	if err := db.QueryRow("SELECT (SELECT COUNT(*) FROM ductwork_runs) + (SELECT COUNT(*) FROM ductwork_jobs)").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d rows after rollback (%v)", n, err)
	}
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err = b.Trigger(ctx, &backend.TriggerParams{Pipeline: def.Pipeline, Fingerprint: def.Fingerprint, First: backend.NewJob{NodeID: "start"}, Tx: tx})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if j := claimOne(t, b, "p"); j.ID != res.JobID {
		t.Errorf("claimed %d, want %d", j.ID, res.JobID)
	}
}

func TestConcurrentClaimers(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t)
	ctx := t.Context()
	const total = 1000
	trigger(t, b, backend.NewJob{NodeID: "start"})
	first := claimOne(t, b, "p")
	plan := backend.Plan{}
	for i := range total {
		plan.Jobs = append(plan.Jobs, backend.NewJob{NodeID: "n", Scope: strconv.Itoa(i), Priority: i % 3})
	}
	if r := complete(t, b, first, "p", "", plan); r.NewJobs != total {
		t.Fatalf("NewJobs = %d", r.NewJobs)
	}
	var (
		mu      sync.Mutex
		claimed = map[int64]int{}
		wg      sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			proc := "w" + strconv.Itoa(w)
			for {
				res, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: proc, Limit: 7, Definitions: []backend.DefinitionRef{def}})
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				if len(res.Jobs) == 0 {
					return
				}
				for _, j := range res.Jobs {
					mu.Lock()
					claimed[j.ID]++
					mu.Unlock()
					if _, err := b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence}); err != nil {
						t.Errorf("complete: %v", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if len(claimed) != total {
		t.Errorf("claimed %d distinct jobs, want %d", len(claimed), total)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("job %d claimed %d times", id, n)
		}
	}
}

func TestLargeFanOut(t *testing.T) {
	t.Parallel()
	b, db := newBackend(t)
	const total = 10000
	tr := trigger(t, b, backend.NewJob{NodeID: "start"})
	first := claimOne(t, b, "p")
	plan := backend.Plan{OpenJoins: []backend.OpenJoin{{NodeID: "collapse", Expected: total}}}
	for i := range total {
		plan.Jobs = append(plan.Jobs, backend.NewJob{NodeID: "n", Scope: strconv.Itoa(i), Input: bytes.Repeat([]byte{'x'}, 100)})
	}
	if r := complete(t, b, first, "p", "", plan); r.NewJobs != total {
		t.Fatalf("NewJobs = %d", r.NewJobs)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM ductwork_jobs WHERE run_id = ? AND status = 'pending'", tr.RunID).Scan(&n); err != nil || n != total {
		t.Errorf("%d pending jobs (%v), want %d", n, err, total)
	}
	// Paging over the listing sees every job once.
	seen, after := 0, int64(0)
	for {
		res, err := b.ListJobs(t.Context(), &backend.ListJobsParams{RunID: tr.RunID, AfterID: after, Limit: 3000})
		if err != nil {
			t.Fatal(err)
		}
		seen += len(res.Jobs)
		if res.Next == 0 {
			break
		}
		after = res.Next
	}
	if seen != total+1 {
		t.Errorf("listed %d jobs, want %d", seen, total+1)
	}
}

func TestListRuns(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t)
	ctx := t.Context()
	var ids []int64
	for range 5 {
		ids = append(ids, trigger(t, b, backend.NewJob{NodeID: "start"}).RunID)
	}
	res, err := b.ListRuns(ctx, &backend.ListRunsParams{Limit: 3})
	if err != nil || len(res.Runs) != 3 || res.Runs[0].ID != ids[4] || res.Next != ids[2] {
		t.Fatalf("page 1: %+v, %v", res, err)
	}
	res, err = b.ListRuns(ctx, &backend.ListRunsParams{Limit: 3, BeforeID: res.Next, Pipeline: "pipe", Status: backend.RunRunning})
	if err != nil || len(res.Runs) != 2 || res.Runs[1].ID != ids[0] || res.Next != 0 {
		t.Fatalf("page 2: %+v, %v", res, err)
	}
	res, err = b.ListRuns(ctx, &backend.ListRunsParams{Status: backend.RunHalted})
	if err != nil || len(res.Runs) != 0 {
		t.Fatalf("halted: %+v, %v", res, err)
	}
}

func TestClosedDB(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b, err := mysql.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := b.Now(t.Context()); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Now on closed DB: %v", err)
	}
	if err := b.Migrate(t.Context()); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Migrate on closed DB: %v", err)
	}
	if _, err := b.Claim(t.Context(), &backend.ClaimParams{ProcessID: "p", Limit: 1, Definitions: []backend.DefinitionRef{def}}); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Claim on closed DB: %v", err)
	}
}
