package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/sqlite"
)

func TestCancelAndReviveStates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)

	if _, err := b.CancelRun(ctx, &backend.CancelRunParams{RunID: 999}); !errors.Is(err, backend.ErrRunNotFound) {
		t.Fatalf("CancelRun(missing) err = %v", err)
	}
	if _, err := b.ReviveRun(ctx, &backend.ReviveRunParams{RunID: 999}); !errors.Is(err, backend.ErrRunNotFound) {
		t.Fatalf("ReviveRun(missing) err = %v", err)
	}

	// Running: cannot revive; cancel once; its jobs are never claimed.
	running := trigger(t, b, "a")
	if _, err := b.ReviveRun(ctx, &backend.ReviveRunParams{RunID: running.RunID}); !errors.Is(err, backend.ErrRunState) {
		t.Fatalf("ReviveRun(running) err = %v", err)
	}
	if _, err := b.CancelRun(ctx, &backend.CancelRunParams{RunID: running.RunID, Reason: "stop"}); err != nil {
		t.Fatalf("CancelRun: %v", err)
	}
	if r := getRun(t, b, running.RunID); r.Status != backend.RunCancelled || r.Error != "stop" {
		t.Fatalf("cancelled run = %+v", r)
	}
	if got := claim(t, b, "p", 10); len(got) != 0 {
		t.Fatalf("claimed a job of a cancelled run: %+v", got[0])
	}
	if _, err := b.CancelRun(ctx, &backend.CancelRunParams{RunID: running.RunID}); !errors.Is(err, backend.ErrRunState) {
		t.Fatalf("CancelRun(cancelled) err = %v", err)
	}
	if _, err := b.ReviveRun(ctx, &backend.ReviveRunParams{RunID: running.RunID}); !errors.Is(err, backend.ErrRunState) {
		t.Fatalf("ReviveRun(cancelled) err = %v", err)
	}

	// Halted: revive brings the failed job back with a fresh budget.
	halted := trigger(t, b, "b")
	j := claimOne(t, b, "p")
	if _, err := b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: "p", Fence: j.Fence, Error: "boom"}); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, b, "p", 10); len(got) != 0 {
		t.Fatalf("claimed a job of a halted run: %+v", got[0])
	}
	res, err := b.ReviveRun(ctx, &backend.ReviveRunParams{RunID: halted.RunID})
	if err != nil || res.Jobs != 1 {
		t.Fatalf("ReviveRun = %+v, %v", res, err)
	}
	if r := getRun(t, b, halted.RunID); r.Status != backend.RunRunning {
		t.Fatalf("revived run status %q", r.Status)
	}
	again := claimOne(t, b, "p")
	if again.ID != j.ID || again.Attempt != 2 || again.RetryBase != 1 {
		t.Fatalf("revived job = %+v", again)
	}
	if info := jobByID(t, b, halted.RunID, j.ID); info.Error != "boom" {
		t.Fatalf("revived job lost its error: %+v", info)
	}

	// Completed: neither cancel nor revive.
	complete(t, b, again, "p", "ok", backend.Plan{CompleteRun: true})
	if _, err := b.CancelRun(ctx, &backend.CancelRunParams{RunID: halted.RunID}); !errors.Is(err, backend.ErrRunState) {
		t.Fatalf("CancelRun(completed) err = %v", err)
	}
	if _, err := b.ReviveRun(ctx, &backend.ReviveRunParams{RunID: halted.RunID}); !errors.Is(err, backend.ErrRunState) {
		t.Fatalf("ReviveRun(completed) err = %v", err)
	}
}

func TestSetValueWriteOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	run := trigger(t, b, "in")

	if _, err := b.GetValue(ctx, &backend.GetValueParams{RunID: run.RunID, Key: "k"}); !errors.Is(err, backend.ErrValueNotFound) {
		t.Fatalf("GetValue(missing) err = %v", err)
	}
	const writers = 8
	var (
		wg   sync.WaitGroup
		errs [writers]error
	)
	for i := range writers {
		wg.Go(func() {
			errs[i] = b.SetValue(ctx, &backend.SetValueParams{RunID: run.RunID, Key: "k", Value: []byte(fmt.Sprint(i))})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("writers %d and %d both won", winner, i)
			}
			winner = i
		case !errors.Is(err, backend.ErrValueExists):
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	got, err := b.GetValue(ctx, &backend.GetValueParams{RunID: run.RunID, Key: "k"})
	if err != nil || string(got.Value) != fmt.Sprint(winner) {
		t.Fatalf("GetValue = %v, %v; want the winner's %d", got, err, winner)
	}
	if err := b.SetValue(ctx, &backend.SetValueParams{RunID: run.RunID, Key: "k", Value: []byte("new"), Overwrite: true}); err != nil {
		t.Fatalf("SetValue(overwrite): %v", err)
	}
	if got, err := b.GetValue(ctx, &backend.GetValueParams{RunID: run.RunID, Key: "k"}); err != nil || string(got.Value) != "new" {
		t.Fatalf("GetValue after overwrite = %v, %v", got, err)
	}
}

func TestTriggerTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	params := func(tx any) *backend.TriggerParams {
		return &backend.TriggerParams{Pipeline: def.Pipeline, Fingerprint: def.Fingerprint,
			First: backend.NewJob{NodeID: "start"}, Tx: tx}
	}

	tx, err := b.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Trigger(ctx, params(tx)); err != nil {
		t.Fatalf("Trigger(tx): %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	var runs, jobsN int
	if err := b.DB().QueryRowContext(ctx,
		`SELECT (SELECT count(*) FROM ductwork_runs), (SELECT count(*) FROM ductwork_jobs)`).Scan(&runs, &jobsN); err != nil {
		t.Fatal(err)
	}
	if runs != 0 || jobsN != 0 {
		t.Fatalf("after rollback: %d runs, %d jobs", runs, jobsN)
	}

	tx, err = b.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Trigger(ctx, params(tx))
	if err != nil {
		t.Fatalf("Trigger(tx): %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if j := claimOne(t, b, "p"); j.ID != res.JobID || j.RunID != res.RunID {
		t.Fatalf("claimed %+v, want job %d", j, res.JobID)
	}

	if _, err := b.Trigger(ctx, params("not a tx")); !errors.Is(err, backend.ErrUnsupportedTx) {
		t.Fatalf("Trigger(string) err = %v, want ErrUnsupportedTx", err)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := sqlite.Open(dbPath(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	trigger(t, b, "in")
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	checks := map[string]error{}
	_, checks["GetRun"] = b.GetRun(ctx, &backend.GetRunParams{RunID: 1})
	_, checks["Claim"] = b.Claim(ctx, &backend.ClaimParams{ProcessID: "p", Limit: 1, Definitions: []backend.DefinitionRef{def}})
	_, checks["Now"] = b.Now(ctx)
	checks["Migrate"] = b.Migrate(ctx)
	_, checks["Trigger"] = b.Trigger(ctx, &backend.TriggerParams{Pipeline: "x"})
	for name, err := range checks {
		if !errors.Is(err, backend.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
}

func TestCallerClosedHandle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sql.Open("sqlite3", "file:"+dbPath(t)+"?_journal_mode=WAL&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	b, err := sqlite.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tr := trigger(t, b, "in")
	if got := getRun(t, b, tr.RunID); got.ID != tr.RunID {
		t.Fatalf("GetRun = %+v", got)
	}
	// Close of a New backend leaves the caller's handle open.
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("caller's handle closed by Close: %v", err)
	}

	// A handle the caller closed maps to ErrClosed too.
	b2, err := sqlite.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.GetRun(ctx, &backend.GetRunParams{RunID: tr.RunID}); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("GetRun on a closed handle: err = %v, want ErrClosed", err)
	}
	if _, err := b2.Claim(ctx, &backend.ClaimParams{ProcessID: "p", Limit: 1, Definitions: []backend.DefinitionRef{def}}); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("Claim on a closed handle: err = %v, want ErrClosed", err)
	}
	if err := b2.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestOpenBadPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notDB := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(notDB, bytes.Repeat([]byte("not a database "), 512), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"empty":       "",
		"uri":         "file:x.db",
		"missing dir": filepath.Join(dir, "no", "such", "dir", "x.db"),
		"directory":   dir,
		"not sqlite":  notDB,
	}
	for name, path := range cases {
		b, err := sqlite.Open(path, nil)
		if err == nil {
			_ = b.Close(context.Background())
			t.Errorf("%s: Open(%q) succeeded", name, path)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
	if _, err := sqlite.Open(cases["missing dir"], nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: err = %v, want fs.ErrNotExist", err)
	}
	var ce *sqlite.ConfigError
	if _, err := sqlite.Open(filepath.Join(dir, "ok.db"), &sqlite.Config{MaxReadConns: -1}); !errors.As(err, &ce) || ce.Field != "MaxReadConns" {
		t.Errorf("bad Config: err = %v, want *ConfigError", err)
	}
}

func TestOpenPathWithSpecialCharacters(t *testing.T) {
	t.Parallel()
	b := openAt(t, filepath.Join(t.TempDir(), "a b?c#d%.db"))
	if err := b.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	trigger(t, b, "x")
}

func TestListingsAndStranded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	var ids []int64
	for i := range 5 {
		ids = append(ids, trigger(t, b, fmt.Sprint(i)).RunID)
	}
	if _, err := b.Trigger(ctx, &backend.TriggerParams{Pipeline: "legacy", Fingerprint: "v0",
		First: backend.NewJob{NodeID: "start"}}); err != nil {
		t.Fatal(err)
	}

	var got []int64
	params := &backend.ListRunsParams{Pipeline: def.Pipeline, Limit: 2}
	for {
		page, err := b.ListRuns(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Runs {
			got = append(got, r.ID)
		}
		if page.Next == 0 {
			break
		}
		params.BeforeID = page.Next
	}
	want := []int64{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ListRuns pages = %v, want %v", got, want)
	}
	all, err := b.ListRuns(ctx, &backend.ListRunsParams{Status: backend.RunRunning})
	if err != nil || len(all.Runs) != 6 || all.Next != 0 {
		t.Fatalf("ListRuns(running) = %d runs, next %d, %v", len(all.Runs), all.Next, err)
	}

	j := claimOne(t, b, "p")
	complete(t, b, j, "p", "", backend.Plan{Jobs: []backend.NewJob{{NodeID: "a"}, {NodeID: "b"}, {NodeID: "c"}}})
	first, err := b.ListJobs(ctx, &backend.ListJobsParams{RunID: j.RunID, Limit: 2})
	if err != nil || len(first.Jobs) != 2 || first.Next != first.Jobs[1].ID || first.Jobs[0].NodeID != "start" {
		t.Fatalf("ListJobs page 1 = %+v, %v", first, err)
	}
	rest, err := b.ListJobs(ctx, &backend.ListJobsParams{RunID: j.RunID, Limit: 2, AfterID: first.Next})
	if err != nil || len(rest.Jobs) != 2 || rest.Jobs[1].NodeID != "c" {
		t.Fatalf("ListJobs page 2 = %+v, %v", rest, err)
	}
	pending, err := b.ListJobs(ctx, &backend.ListJobsParams{RunID: j.RunID, Status: backend.JobPending})
	if err != nil || len(pending.Jobs) != 3 || pending.Next != 0 {
		t.Fatalf("ListJobs(pending) = %+v, %v", pending, err)
	}

	st, err := b.StrandedDefinitions(ctx, &backend.StrandedDefinitionsParams{Known: []backend.DefinitionRef{def}})
	if err != nil {
		t.Fatal(err)
	}
	wantSt := []backend.StrandedDefinition{{DefinitionRef: backend.DefinitionRef{Pipeline: "legacy", Fingerprint: "v0"}, Runs: 1}}
	if !reflect.DeepEqual(st.Definitions, wantSt) {
		t.Fatalf("StrandedDefinitions = %+v, want %+v", st.Definitions, wantSt)
	}
}

// An in-memory Backend is a complete, private database: migrated, used and
// gone with Close; two of them never see each other's rows.
func TestOpenMemory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	open := func() *sqlite.Backend {
		b, err := sqlite.Open(sqlite.Memory, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close(ctx) })
		if err := b.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := open(), open()
	res, err := a.Trigger(ctx, &backend.TriggerParams{Pipeline: "p", Fingerprint: "f", Input: []byte(`1`),
		First: backend.NewJob{NodeID: "n", Input: []byte(`1`)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetRun(ctx, &backend.GetRunParams{RunID: res.RunID}); err != nil {
		t.Fatalf("run in the database that wrote it: %v", err)
	}
	if _, err := b.GetRun(ctx, &backend.GetRunParams{RunID: res.RunID}); !errors.Is(err, backend.ErrRunNotFound) {
		t.Fatalf("run seen by another in-memory database: err = %v, want ErrRunNotFound", err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetRun(ctx, &backend.GetRunParams{RunID: res.RunID}); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("after Close: err = %v, want ErrClosed", err)
	}
}
