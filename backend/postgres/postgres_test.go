package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/postgres"
)

func TestNewValidatesAndDoesNoIO(t *testing.T) {
	t.Parallel()
	var cfgErr *postgres.ConfigError
	if _, err := postgres.New(nil, nil); !errors.As(err, &cfgErr) {
		t.Fatalf("New(nil pool): got %v, want *ConfigError", err)
	}
	// A pool that never connects: New, MigrationSQL and Close must not touch it.
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := postgres.New(pool, &postgres.Config{Schema: strings.Repeat("x", 64)}); !errors.As(err, &cfgErr) || cfgErr.Field != "Schema" {
		t.Fatalf("New(long schema): got %v, want *ConfigError for Schema", err)
	}
	b, err := postgres.New(pool, &postgres.Config{Schema: `we"ird`})
	if err != nil {
		t.Fatal(err)
	}
	if b.Schema() != `we"ird` {
		t.Fatalf("Schema() = %q", b.Schema())
	}
	sql := b.MigrationSQL()
	if !strings.Contains(sql, `CREATE SCHEMA IF NOT EXISTS "we""ird"`) || !strings.Contains(sql, `"we""ird".ductwork_jobs`) {
		t.Fatalf("MigrationSQL does not quote the schema:\n%s", sql)
	}
	if strings.Contains(sql, "{schema}") {
		t.Fatal("MigrationSQL left a placeholder")
	}
	c := b.Capabilities()
	if !c.SkipLocked || !c.Notify || c.TimePrecision != time.Microsecond {
		t.Fatalf("Capabilities = %+v", c)
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Now(t.Context()); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("Now after Close: got %v, want ErrClosed", err)
	}
	if st := pool.Stat(); st.TotalConns() != 0 {
		t.Fatalf("pool opened %d connections", st.TotalConns())
	}
}

func TestMigrateIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	db := newTestDB(t)
	b := db.newBackend(t)
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
		t.Fatalf("second Migrate: %v", err)
	}
	var n, maxV int
	if err := db.pool.QueryRow(t.Context(), "SELECT count(*), max(version) FROM "+db.table("ductwork_migrations")).Scan(&n, &maxV); err != nil {
		t.Fatal(err)
	}
	if n != postgres.SchemaVersion() || maxV != postgres.SchemaVersion() {
		t.Fatalf("migrations recorded: %d rows, max %d; want %d", n, maxV, postgres.SchemaVersion())
	}
	// The backend works on the migrated schema.
	if _, err := b.Now(t.Context()); err != nil {
		t.Fatal(err)
	}
	trigger(t, b)
}

func TestTriggerAndClaim(t *testing.T) {
	t.Parallel()
	b, _ := newMigrated(t)
	register(t, b, "w1")
	tr := trigger(t, b)
	// A delayed job is not due, an unknown definition is not claimed.
	delayed, err := b.Trigger(t.Context(), &backend.TriggerParams{Pipeline: "p", Fingerprint: "f1",
		First: backend.NewJob{NodeID: "start", Delay: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Trigger(t.Context(), &backend.TriggerParams{Pipeline: "p", Fingerprint: "f0", First: backend.NewJob{NodeID: "start"}}); err != nil {
		t.Fatal(err)
	}
	if res, err := b.Claim(t.Context(), &backend.ClaimParams{ProcessID: "w1", Limit: 10}); err != nil || len(res.Jobs) != 0 {
		t.Fatalf("Claim without definitions: %v, %d jobs", err, len(res.Jobs))
	}
	got := claim(t, b, "w1", 10)
	if len(got) != 1 || got[0].ID != tr.JobID {
		t.Fatalf("claimed %+v, want only job %d", got, tr.JobID)
	}
	j := got[0]
	if j.RunID != tr.RunID || j.Pipeline != "p" || j.Fingerprint != "f1" || j.NodeID != "start" || string(j.Input) != "1" ||
		j.Join || j.Attempt != 1 || j.Crashes != 0 || j.Fence != 1 || j.Metadata["k"] != "v" || j.ClaimedAt.IsZero() {
		t.Fatalf("claimed job = %+v", j)
	}
	run, err := b.GetRun(t.Context(), &backend.GetRunParams{RunID: delayed.RunID})
	if err != nil || run.Status != backend.RunRunning {
		t.Fatalf("GetRun: %+v, %v", run, err)
	}
	if _, err := b.GetRun(t.Context(), &backend.GetRunParams{RunID: 1 << 40}); !errors.Is(err, backend.ErrRunNotFound) {
		t.Fatalf("GetRun missing: %v", err)
	}
	st, err := b.StrandedDefinitions(t.Context(), &backend.StrandedDefinitionsParams{Known: []backend.DefinitionRef{testDef}})
	if err != nil || len(st.Definitions) != 1 || st.Definitions[0].Fingerprint != "f0" || st.Definitions[0].Runs != 1 {
		t.Fatalf("StrandedDefinitions = %+v, %v", st, err)
	}
	runs, err := b.ListRuns(t.Context(), &backend.ListRunsParams{Pipeline: "p", Limit: 2})
	if err != nil || len(runs.Runs) != 2 || runs.Runs[0].ID < runs.Runs[1].ID || runs.Next != runs.Runs[1].ID {
		t.Fatalf("ListRuns = %+v, %v", runs, err)
	}
	runs, err = b.ListRuns(t.Context(), &backend.ListRunsParams{Pipeline: "p", Limit: 2, BeforeID: runs.Next})
	if err != nil || len(runs.Runs) != 1 || runs.Next != 0 {
		t.Fatalf("ListRuns page 2 = %+v, %v", runs, err)
	}
}

func TestJoinFiresOnceInSlotOrder(t *testing.T) {
	t.Parallel()
	b, _ := newMigrated(t)
	register(t, b, "w1")
	tr := trigger(t, b)
	first := claimOne(t, b, "w1")
	plan := backend.Plan{OpenJoins: []backend.OpenJoin{{NodeID: "collapse", Expected: 3, Priority: 5}}}
	for i := range 3 {
		plan.Jobs = append(plan.Jobs, backend.NewJob{NodeID: "item", Scope: fmt.Sprint(i), Input: []byte(fmt.Sprint(i))})
	}
	res := complete(t, b, first, "w1", "[0,1,2]", plan)
	if res.NewJobs != 3 || res.JoinFired || res.RunCompleted {
		t.Fatalf("Complete = %+v", res)
	}
	items := claim(t, b, "w1", 10)
	if len(items) != 3 {
		t.Fatalf("claimed %d items, want 3", len(items))
	}
	// All three arrive at once; slots follow the scope, not the arrival order.
	var wg sync.WaitGroup
	results := make([]*backend.CompleteResult, 3)
	errs := make([]error, 3)
	for i, j := range items {
		wg.Go(func() {
			results[i], errs[i] = b.Complete(t.Context(), &backend.CompleteParams{
				JobID: j.ID, ProcessID: "w1", Fence: j.Fence, Output: []byte("out-" + j.Scope),
				Plan: backend.Plan{Arrive: &backend.Arrival{NodeID: "collapse", Slot: int(j.Input[0] - '0')}},
			})
		})
	}
	wg.Wait()
	fired := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("Complete item: %v", errs[i])
		}
		if results[i].JoinFired {
			fired++
			if results[i].NewJobs != 1 {
				t.Fatalf("firing Complete NewJobs = %d", results[i].NewJobs)
			}
		}
	}
	if fired != 1 {
		t.Fatalf("join fired %d times, want 1", fired)
	}
	join := claimOne(t, b, "w1")
	if !join.Join || join.NodeID != "collapse" || join.Input != nil {
		t.Fatalf("join job = %+v", join)
	}
	want := [][]byte{[]byte("out-0"), []byte("out-1"), []byte("out-2")}
	if len(join.JoinInputs) != 3 || !bytes.Equal(join.JoinInputs[0], want[0]) || !bytes.Equal(join.JoinInputs[1], want[1]) || !bytes.Equal(join.JoinInputs[2], want[2]) {
		t.Fatalf("JoinInputs = %q, want %q", join.JoinInputs, want)
	}
	res = complete(t, b, join, "w1", "done", backend.Plan{CompleteRun: true})
	if !res.RunCompleted {
		t.Fatal("RunCompleted = false")
	}
	run, err := b.GetRun(t.Context(), &backend.GetRunParams{RunID: tr.RunID})
	if err != nil || run.Status != backend.RunCompleted || string(run.Output) != "done" {
		t.Fatalf("run = %+v, %v", run, err)
	}
	// An arrival at a join that does not exist is an error and changes nothing.
	if got := len(claim(t, b, "w1", 10)); got != 0 {
		t.Fatalf("%d jobs left", got)
	}
}

func TestJoinExpectedZeroAndMissingJoin(t *testing.T) {
	t.Parallel()
	b, _ := newMigrated(t)
	register(t, b, "w1")
	trigger(t, b)
	first := claimOne(t, b, "w1")
	res := complete(t, b, first, "w1", "[]", backend.Plan{OpenJoins: []backend.OpenJoin{{NodeID: "collapse", Expected: 0}}})
	if res.NewJobs != 1 || res.JoinFired {
		t.Fatalf("Complete = %+v", res)
	}
	join := claimOne(t, b, "w1")
	if !join.Join || join.JoinInputs == nil || len(join.JoinInputs) != 0 {
		t.Fatalf("join job = %+v, JoinInputs %#v", join, join.JoinInputs)
	}
	_, err := b.Complete(t.Context(), &backend.CompleteParams{JobID: join.ID, ProcessID: "w1", Fence: join.Fence,
		Plan: backend.Plan{Jobs: []backend.NewJob{{NodeID: "x"}}, Arrive: &backend.Arrival{NodeID: "nope", Slot: 0}}})
	if err == nil {
		t.Fatal("arrival at a missing join succeeded")
	}
	for _, j := range jobs(t, b, join.RunID) {
		if j.ID == join.ID && j.Status != backend.JobRunning {
			t.Fatalf("failed Complete changed the job: %+v", j)
		}
		if j.NodeID == "x" {
			t.Fatal("failed Complete inserted a job")
		}
	}
}

func TestStaleFence(t *testing.T) {
	t.Parallel()
	b, _ := newMigrated(t)
	register(t, b, "w1")
	tr := trigger(t, b)
	j := claimOne(t, b, "w1")
	before := jobs(t, b, tr.RunID)
	plan := backend.Plan{Jobs: []backend.NewJob{{NodeID: "next"}}, OpenJoins: []backend.OpenJoin{{NodeID: "j", Expected: 0}}, CompleteRun: true}
	for _, p := range []backend.CompleteParams{
		{JobID: j.ID, ProcessID: "w1", Fence: j.Fence - 1, Output: []byte("x"), Plan: plan},
		{JobID: j.ID, ProcessID: "w2", Fence: j.Fence, Output: []byte("x"), Plan: plan},
	} {
		if _, err := b.Complete(t.Context(), &p); !errors.Is(err, backend.ErrStaleClaim) {
			t.Fatalf("Complete(%+v): got %v, want ErrStaleClaim", p, err)
		}
	}
	if _, err := b.Fail(t.Context(), &backend.FailParams{JobID: j.ID, ProcessID: "w1", Fence: j.Fence + 1, Error: "x"}); !errors.Is(err, backend.ErrStaleClaim) {
		t.Fatalf("Fail: %v", err)
	}
	if _, err := b.Fail(t.Context(), &backend.FailParams{JobID: j.ID, ProcessID: "w1", Fence: j.Fence + 1, Retry: true}); !errors.Is(err, backend.ErrStaleClaim) {
		t.Fatalf("Fail retry: %v", err)
	}
	if _, err := b.Release(t.Context(), &backend.ReleaseParams{JobID: j.ID, ProcessID: "w1", Fence: j.Fence + 1}); !errors.Is(err, backend.ErrStaleClaim) {
		t.Fatalf("Release: %v", err)
	}
	after := jobs(t, b, tr.RunID)
	if len(after) != 1 || fmt.Sprintf("%+v", *after[0]) != fmt.Sprintf("%+v", *before[0]) {
		t.Fatalf("stale calls changed rows:\nbefore %+v\nafter  %+v", before, after)
	}
	run, _ := b.GetRun(t.Context(), &backend.GetRunParams{RunID: tr.RunID})
	if run.Status != backend.RunRunning {
		t.Fatalf("run status %q", run.Status)
	}
	// Release with the right fence: due at once, not a crash, same attempt.
	if _, err := b.Release(t.Context(), &backend.ReleaseParams{JobID: j.ID, ProcessID: "w1", Fence: j.Fence}); err != nil {
		t.Fatal(err)
	}
	again := claimOne(t, b, "w1")
	if again.Fence != j.Fence+1 || again.Crashes != 0 || again.Attempt != 1 {
		t.Fatalf("re-claimed %+v", again)
	}
}

func TestReap(t *testing.T) {
	t.Parallel()
	b, db := newMigrated(t)
	for _, p := range []string{"dead", "r1", "r2"} {
		register(t, b, p)
	}
	trigger(t, b)
	j := claimOne(t, b, "dead")
	if _, err := db.pool.Exec(t.Context(), "UPDATE "+db.table("ductwork_processes")+" SET heartbeat_at = now() - interval '1 hour' WHERE id = 'dead'"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([]*backend.ReapResult, 2)
	errs := make([]error, 2)
	for i, r := range []string{"r1", "r2"} {
		wg.Go(func() {
			results[i], errs[i] = b.Reap(t.Context(), &backend.ReapParams{ProcessID: r, Threshold: time.Minute})
		})
	}
	wg.Wait()
	reaped, reset := 0, 0
	for i := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		reaped += len(results[i].Processes)
		reset += results[i].Jobs
	}
	if reaped != 1 || reset != 1 {
		t.Fatalf("reapers reaped %d processes and %d jobs, want 1 and 1 (%+v %+v)", reaped, reset, results[0], results[1])
	}
	res, err := b.Reap(t.Context(), &backend.ReapParams{ProcessID: "r1", Threshold: time.Minute})
	if err != nil || len(res.Processes) != 0 || res.Jobs != 0 {
		t.Fatalf("second reap = %+v, %v", res, err)
	}
	if _, err := b.Heartbeat(t.Context(), &backend.HeartbeatParams{ProcessID: "dead"}); !errors.Is(err, backend.ErrProcessNotFound) {
		t.Fatalf("Heartbeat of reaped process: %v", err)
	}
	if _, err := b.Complete(t.Context(), &backend.CompleteParams{JobID: j.ID, ProcessID: "dead", Fence: j.Fence}); !errors.Is(err, backend.ErrStaleClaim) {
		t.Fatalf("zombie Complete: %v", err)
	}
	again := claimOne(t, b, "r1")
	if again.ID != j.ID || again.Crashes != 1 || again.Attempt != 1 || again.Fence != j.Fence+1 {
		t.Fatalf("re-claimed %+v", again)
	}
	// Live processes are not reaped; a running job whose owner has no row is.
	if _, err := b.Heartbeat(t.Context(), &backend.HeartbeatParams{ProcessID: "r2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(t.Context(), "UPDATE "+db.table("ductwork_jobs")+" SET process_id = 'ghost', started_at = now() - interval '1 hour' WHERE id = $1", j.ID); err != nil {
		t.Fatal(err)
	}
	res, err = b.Reap(t.Context(), &backend.ReapParams{ProcessID: "r1", Threshold: time.Minute})
	if err != nil || len(res.Processes) != 0 || res.Jobs != 1 {
		t.Fatalf("orphan reap = %+v, %v", res, err)
	}
	// Deregistering releases what the process holds.
	again = claimOne(t, b, "r2")
	if err := b.DeregisterProcess(t.Context(), &backend.DeregisterProcessParams{ProcessID: "r2"}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeregisterProcess(t.Context(), &backend.DeregisterProcessParams{ProcessID: "r2"}); err != nil {
		t.Fatal(err)
	}
	last := claimOne(t, b, "r1")
	if last.ID != again.ID || last.Crashes != 2 { // two reaps; a deregistration is a release, not a crash
		t.Fatalf("after deregister: %+v", last)
	}
}

func TestFailRetryAndHalt(t *testing.T) {
	t.Parallel()
	b, _ := newMigrated(t)
	register(t, b, "w1")
	tr := trigger(t, b)
	j := claimOne(t, b, "w1")
	if res, err := b.Fail(t.Context(), &backend.FailParams{JobID: j.ID, ProcessID: "w1", Fence: j.Fence, Error: "boom", Retry: true}); err != nil || res.Halted {
		t.Fatalf("Fail retry = %+v, %v", res, err)
	}
	j = claimOne(t, b, "w1")
	if j.Attempt != 2 || j.Crashes != 0 {
		t.Fatalf("retried job = %+v", j)
	}
	// A retry with a delay is not due.
	if _, err := b.Fail(t.Context(), &backend.FailParams{JobID: j.ID, ProcessID: "w1", Fence: j.Fence, Retry: true, RetryAfter: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if n := len(claim(t, b, "w1", 10)); n != 0 {
		t.Fatalf("claimed %d not-yet-due jobs", n)
	}

	// Two branches fail at once: the run halts once.
	tr2 := trigger(t, b)
	first := claimOne(t, b, "w1")
	complete(t, b, first, "w1", "x", backend.Plan{Jobs: []backend.NewJob{{NodeID: "a"}, {NodeID: "b"}}})
	branches := claim(t, b, "w1", 10)
	if len(branches) != 2 {
		t.Fatalf("claimed %d branches", len(branches))
	}
	var wg sync.WaitGroup
	halted := make([]bool, 2)
	errs := make([]error, 2)
	for i, br := range branches {
		wg.Go(func() {
			res, err := b.Fail(t.Context(), &backend.FailParams{JobID: br.ID, ProcessID: "w1", Fence: br.Fence, Error: "fatal " + br.NodeID})
			errs[i] = err
			if err == nil {
				halted[i] = res.Halted
			}
		})
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || halted[0] == halted[1] {
		t.Fatalf("Fail: halted %v, errors %v", halted, errs)
	}
	run, err := b.GetRun(t.Context(), &backend.GetRunParams{RunID: tr2.RunID})
	if err != nil || run.Status != backend.RunHalted || !strings.HasPrefix(run.Error, "fatal ") {
		t.Fatalf("run = %+v, %v", run, err)
	}
	failed, err := b.ListJobs(t.Context(), &backend.ListJobsParams{RunID: tr2.RunID, Status: backend.JobFailed})
	if err != nil || len(failed.Jobs) != 2 || failed.Jobs[0].FinishedAt == nil || failed.Jobs[0].Error == "" {
		t.Fatalf("failed jobs = %+v, %v", failed, err)
	}
	_ = tr
}

func TestCancelAndReviveStates(t *testing.T) {
	t.Parallel()
	b, _ := newMigrated(t)
	register(t, b, "w1")
	tr := trigger(t, b)
	missing := int64(1 << 40)
	if _, err := b.ReviveRun(t.Context(), &backend.ReviveRunParams{RunID: tr.RunID}); !errors.Is(err, backend.ErrRunState) {
		t.Fatalf("revive running run: %v", err)
	}
	if _, err := b.ReviveRun(t.Context(), &backend.ReviveRunParams{RunID: missing}); !errors.Is(err, backend.ErrRunNotFound) {
		t.Fatalf("revive missing run: %v", err)
	}
	if _, err := b.CancelRun(t.Context(), &backend.CancelRunParams{RunID: missing}); !errors.Is(err, backend.ErrRunNotFound) {
		t.Fatalf("cancel missing run: %v", err)
	}
	j := claimOne(t, b, "w1")
	if _, err := b.Fail(t.Context(), &backend.FailParams{JobID: j.ID, ProcessID: "w1", Fence: j.Fence, Error: "boom"}); err != nil {
		t.Fatal(err)
	}
	res, err := b.ReviveRun(t.Context(), &backend.ReviveRunParams{RunID: tr.RunID})
	if err != nil || res.Jobs != 1 {
		t.Fatalf("ReviveRun = %+v, %v", res, err)
	}
	if _, err := b.ReviveRun(t.Context(), &backend.ReviveRunParams{RunID: tr.RunID}); !errors.Is(err, backend.ErrRunState) {
		t.Fatalf("second revive: %v", err)
	}
	j2 := claimOne(t, b, "w1")
	if j2.ID != j.ID || j2.Attempt != 2 || j2.RetryBase != 1 || j2.Fence != j.Fence+1 {
		t.Fatalf("revived job = %+v", j2)
	}
	if _, err := b.Release(t.Context(), &backend.ReleaseParams{JobID: j2.ID, ProcessID: "w1", Fence: j2.Fence}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CancelRun(t.Context(), &backend.CancelRunParams{RunID: tr.RunID, Reason: "stop"}); err != nil {
		t.Fatal(err)
	}
	if n := len(claim(t, b, "w1", 10)); n != 0 {
		t.Fatalf("claimed %d jobs of a cancelled run", n)
	}
	if _, err := b.CancelRun(t.Context(), &backend.CancelRunParams{RunID: tr.RunID}); !errors.Is(err, backend.ErrRunState) {
		t.Fatalf("second cancel: %v", err)
	}
	if _, err := b.ReviveRun(t.Context(), &backend.ReviveRunParams{RunID: tr.RunID}); !errors.Is(err, backend.ErrRunState) {
		t.Fatalf("revive cancelled run: %v", err)
	}
	run, _ := b.GetRun(t.Context(), &backend.GetRunParams{RunID: tr.RunID})
	if run.Status != backend.RunCancelled || run.Error != "stop" {
		t.Fatalf("run = %+v", run)
	}
}

func TestSetValueWriteOnce(t *testing.T) {
	t.Parallel()
	b, _ := newMigrated(t)
	tr := trigger(t, b)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = b.SetValue(t.Context(), &backend.SetValueParams{RunID: tr.RunID, Key: "k", Value: []byte{byte('a' + i)}})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner == -1:
			winner = i
		case err == nil:
			t.Fatalf("writers %d and %d both won", winner, i)
		case !errors.Is(err, backend.ErrValueExists):
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	if winner == -1 {
		t.Fatal("no writer won")
	}
	got, err := b.GetValue(t.Context(), &backend.GetValueParams{RunID: tr.RunID, Key: "k"})
	if err != nil || !bytes.Equal(got.Value, []byte{byte('a' + winner)}) {
		t.Fatalf("GetValue = %v, %v; want the winner's", got, err)
	}
	if err := b.SetValue(t.Context(), &backend.SetValueParams{RunID: tr.RunID, Key: "k", Value: []byte("z"), Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.GetValue(t.Context(), &backend.GetValueParams{RunID: tr.RunID, Key: "k"}); string(got.Value) != "z" {
		t.Fatalf("after overwrite: %q", got.Value)
	}
	if _, err := b.GetValue(t.Context(), &backend.GetValueParams{RunID: tr.RunID, Key: "none"}); !errors.Is(err, backend.ErrValueNotFound) {
		t.Fatalf("GetValue missing: %v", err)
	}
	if err := b.SetValue(t.Context(), &backend.SetValueParams{RunID: 1 << 40, Key: "k"}); !errors.Is(err, backend.ErrRunNotFound) {
		t.Fatalf("SetValue on missing run: %v", err)
	}
}

func TestTriggerTx(t *testing.T) {
	t.Parallel()
	b, db := newMigrated(t)
	params := func(tx any) *backend.TriggerParams {
		return &backend.TriggerParams{Pipeline: "p", Fingerprint: "f1", First: backend.NewJob{NodeID: "start"}, Tx: tx}
	}
	tx, err := db.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Trigger(t.Context(), params(tx)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	var runs, jobs int
	if err := db.pool.QueryRow(t.Context(), "SELECT (SELECT count(*) FROM "+db.table("ductwork_runs")+"), (SELECT count(*) FROM "+db.table("ductwork_jobs")+")").Scan(&runs, &jobs); err != nil {
		t.Fatal(err)
	}
	if runs != 0 || jobs != 0 {
		t.Fatalf("after rollback: %d runs, %d jobs", runs, jobs)
	}
	tx, err = db.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Trigger(t.Context(), params(tx))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetRun(t.Context(), &backend.GetRunParams{RunID: res.RunID}); err != nil {
		t.Fatalf("committed run: %v", err)
	}
	if _, err := b.Trigger(t.Context(), params(struct{}{})); !errors.Is(err, backend.ErrUnsupportedTx) {
		t.Fatalf("Trigger with a foreign tx: %v", err)
	}
}

func TestConcurrentClaimersClaimEachJobOnce(t *testing.T) {
	t.Parallel()
	const total, claimers = 1000, 8
	b, _ := newMigrated(t)
	register(t, b, "w0")
	trigger(t, b)
	first := claimOne(t, b, "w0")
	plan := backend.Plan{}
	for i := range total {
		plan.Jobs = append(plan.Jobs, backend.NewJob{NodeID: "item", Scope: fmt.Sprint(i), Priority: i % 3})
	}
	if res := complete(t, b, first, "w0", "x", plan); res.NewJobs != total {
		t.Fatalf("NewJobs = %d", res.NewJobs)
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	errs := make([]error, claimers)
	for w := range claimers {
		wg.Go(func() {
			pid := fmt.Sprint("w", w+1)
			for {
				res, err := b.Claim(t.Context(), &backend.ClaimParams{ProcessID: pid, Limit: 7, Definitions: []backend.DefinitionRef{testDef}})
				if err != nil {
					errs[w] = err
					return
				}
				if len(res.Jobs) == 0 {
					return
				}
				mu.Lock()
				for _, j := range res.Jobs {
					seen[j.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != total {
		t.Fatalf("claimed %d distinct jobs, want %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("job %d claimed %d times", id, n)
		}
	}
}

func TestFanOut10000(t *testing.T) {
	t.Parallel()
	const total = 10000
	b, _ := newMigrated(t)
	register(t, b, "w0")
	tr := trigger(t, b)
	first := claimOne(t, b, "w0")
	plan := backend.Plan{OpenJoins: []backend.OpenJoin{{NodeID: "collapse", Expected: total}}}
	for i := range total {
		plan.Jobs = append(plan.Jobs, backend.NewJob{NodeID: "item", Scope: fmt.Sprint(i), Input: []byte(fmt.Sprint(i))})
	}
	if res := complete(t, b, first, "w0", "x", plan); res.NewJobs != total {
		t.Fatalf("NewJobs = %d", res.NewJobs)
	}
	page, err := b.ListJobs(t.Context(), &backend.ListJobsParams{RunID: tr.RunID, Limit: 3, AfterID: first.ID})
	if err != nil || len(page.Jobs) != 3 || page.Jobs[0].Scope != "0" || page.Jobs[2].Scope != "2" || page.Next != page.Jobs[2].ID {
		t.Fatalf("ListJobs = %+v, %v", page, err)
	}
}

func TestNotificationAfterTrigger(t *testing.T) {
	t.Parallel()
	b, _ := newMigrated(t)
	ctx, cancel := context.WithCancel(t.Context())
	ch := b.Notifications(ctx)
	// The first value says the listener is connected.
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("listener did not connect")
	}
	// A delayed job does not notify; a due one does.
	tr := trigger(t, b)
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no notification after triggering run %d", tr.RunID)
	}
	cancel()
	waitFor(t, "the channel to close", func() bool {
		select {
		case _, ok := <-ch:
			return !ok
		default:
			return false
		}
	})
}

func TestClosedPoolMapsToErrClosed(t *testing.T) {
	t.Parallel()
	db := newTestDB(t)
	b := db.newBackend(t)
	if err := b.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	ch := b.Notifications(t.Context())
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch; ok {
		// A connection signal may be buffered; the channel must still close.
		if _, ok := <-ch; ok {
			t.Fatal("Notifications channel not closed by Close")
		}
	}
	pool, err := pgxpool.New(t.Context(), os.Getenv(dsnEnv))
	if err != nil {
		t.Fatal(err)
	}
	b2, err := postgres.New(pool, &postgres.Config{Schema: db.schema})
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
	if _, err := b2.Now(t.Context()); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("Now on a closed pool: %v", err)
	}
}

// recv waits for one notification.
func recv(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("channel closed waiting for %s", what)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no notification for %s", what)
	}
}

func TestNotificationsOnCompleteReleaseAndReconnect(t *testing.T) {
	t.Parallel()
	b, db := newMigrated(t)
	register(t, b, "w1")
	ch := b.Notifications(t.Context())
	recv(t, ch, "the connection")
	trigger(t, b)
	recv(t, ch, "Trigger")
	first := claimOne(t, b, "w1")
	complete(t, b, first, "w1", "x", backend.Plan{
		Jobs:      []backend.NewJob{{NodeID: "item"}},
		OpenJoins: []backend.OpenJoin{{NodeID: "collapse", Expected: 1}},
	})
	recv(t, ch, "Complete inserting a due job")
	item := claimOne(t, b, "w1")
	if res := complete(t, b, item, "w1", "y", backend.Plan{Arrive: &backend.Arrival{NodeID: "collapse"}}); !res.JoinFired {
		t.Fatal("join did not fire")
	}
	recv(t, ch, "a join firing")
	join := claimOne(t, b, "w1")
	if _, err := b.Release(t.Context(), &backend.ReleaseParams{JobID: join.ID, ProcessID: "w1", Fence: join.Fence}); err != nil {
		t.Fatal(err)
	}
	recv(t, ch, "Release")

	// Kill the listening session: the listener reconnects (and says so with
	// a value), then notifications flow again.
	listen := "LISTEN " + `"ductwork_` + db.schema + `"`
	tag, err := db.pool.Exec(t.Context(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1", listen)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("terminate listener: %v, %d rows", err, tag.RowsAffected())
	}
	recv(t, ch, "the reconnection")
	waitFor(t, "a new LISTEN session", func() bool {
		var n int
		err := db.pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE query = $1", listen).Scan(&n)
		return err == nil && n == 1
	})
	trigger(t, b)
	recv(t, ch, "Trigger after reconnecting")
}

// TestConcurrentTriggersFailAlone: concurrent triggers share a transaction;
// one that fails server side fails alone, the others are inserted once.
func TestConcurrentTriggersFailAlone(t *testing.T) {
	t.Parallel()
	b, db := newMigrated(t)
	// Two waves: all good, then with a bad one in every ten.
	const n = 128
	bad := func(i int) bool { return i%10 == 3 && i >= n/2 }
	errs := make([]error, n)
	runs := make([]int64, n)
	for wave := range 2 {
		var wg sync.WaitGroup
		for i := wave * n / 2; i < (wave+1)*n/2; i++ {
			wg.Go(func() {
				pipeline := "p"
				if bad(i) {
					pipeline = "p\x00" // refused by the server: invalid byte sequence
				}
				res, err := b.Trigger(t.Context(), &backend.TriggerParams{Pipeline: pipeline, Fingerprint: "f1",
					Input: []byte(`1`), Identity: "id" + strconv.Itoa(i), Metadata: map[string]string{"i": strconv.Itoa(i)},
					First: backend.NewJob{NodeID: "start", Input: []byte(strconv.Itoa(i))}})
				errs[i] = err
				if err == nil {
					runs[i] = res.RunID
				}
			})
		}
		wg.Wait()
	}
	seen := map[int64]bool{}
	for i := range n {
		if bad(i) != (errs[i] != nil) {
			t.Fatalf("trigger %d: error %v", i, errs[i])
		}
		if errs[i] == nil {
			if seen[runs[i]] {
				t.Fatalf("run %d returned twice", runs[i])
			}
			seen[runs[i]] = true
		}
	}
	var count int
	if err := db.pool.QueryRow(t.Context(), "SELECT count(*) FROM "+db.table("ductwork_runs")).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != len(seen) {
		t.Fatalf("%d runs in the table, %d triggers succeeded", count, len(seen))
	}
	// Each run got its own job, input and metadata.
	register(t, b, "w1")
	for _, j := range claim(t, b, "w1", n) {
		i, err := strconv.Atoi(string(j.Input))
		if err != nil || i < 0 || i >= n || runs[i] != j.RunID || j.Metadata["i"] != string(j.Input) || j.RunIdentity != "id"+string(j.Input) {
			t.Fatalf("claimed %+v (trigger %d: run %d)", j, i, runs[max(min(i, n-1), 0)])
		}
		delete(seen, j.RunID)
	}
	if len(seen) != 0 {
		t.Fatalf("runs without a job: %v", seen)
	}
}

// TestConcurrentCompletionsEndingRuns: completions that each end their run,
// committed together, each complete their run and say so; a stale one among
// them fails alone.
func TestConcurrentCompletionsEndingRuns(t *testing.T) {
	t.Parallel()
	b, _ := newMigrated(t)
	register(t, b, "w1")
	const n = 48
	for range n {
		trigger(t, b)
	}
	jobs := claim(t, b, "w1", n)
	if len(jobs) != n {
		t.Fatalf("claimed %d jobs, want %d", len(jobs), n)
	}
	for round := range 2 {
		var wg sync.WaitGroup
		errs := make([]error, n)
		res := make([]*backend.CompleteResult, n)
		for i, j := range jobs {
			wg.Go(func() {
				fence := j.Fence
				if round == 0 && i == 7 {
					fence++ // stale
				}
				res[i], errs[i] = b.Complete(t.Context(), &backend.CompleteParams{JobID: j.ID, ProcessID: "w1", Fence: fence,
					Output: []byte(strconv.Itoa(i)), Plan: backend.Plan{CompleteRun: true}})
			})
		}
		wg.Wait()
		for i, j := range jobs {
			switch {
			case round == 0 && i == 7:
				if !errors.Is(errs[i], backend.ErrStaleClaim) {
					t.Fatalf("stale completion: %v", errs[i])
				}
			case round == 0:
				if errs[i] != nil || !res[i].RunCompleted || res[i].Replayed {
					t.Fatalf("completion %d: %+v, %v", i, res[i], errs[i])
				}
				run, err := b.GetRun(t.Context(), &backend.GetRunParams{RunID: j.RunID})
				if err != nil || run.Status != backend.RunCompleted || string(run.Output) != strconv.Itoa(i) {
					t.Fatalf("run %d: %+v, %v", j.RunID, run, err)
				}
			case i == 7:
				if errs[i] != nil || !res[i].RunCompleted || res[i].Replayed {
					t.Fatalf("completion %d: %+v, %v", i, res[i], errs[i])
				}
			default:
				// The same claims again: replayed.
				if errs[i] != nil || !res[i].Replayed || !res[i].RunCompleted {
					t.Fatalf("replayed completion %d: %+v, %v", i, res[i], errs[i])
				}
			}
		}
	}
}
