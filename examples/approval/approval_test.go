package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/ductworktest"
	"github.com/ductwork-go/ductwork/supervisor"
)

// waitUntil polls cond until it holds, failing after a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// command runs one command of the example and returns what it printed.
func command(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(ctx, args, &out); err != nil {
		t.Fatalf("approval %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

// TestApprovalCommands: the worker runs in one command; another submits an
// expense, which waits for its manager; a third approves it, and the
// expense is paid. The commands share nothing but the database file.
func TestApprovalCommands(t *testing.T) {
	db := filepath.Join(t.TempDir(), "approval.db")
	ctx := t.Context()
	// The first command creates and migrates the database file; commands
	// opening a file that does not exist yet at once could find it locked.
	out := command(t, ctx, "-db", db, "submit", "-who", "ana", "-amount", "120", "-id", "e1")
	workerCtx, stopWorker := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(workerCtx, []string{"-db", db, "worker"}, &bytes.Buffer{}) }()
	t.Cleanup(func() {
		stopWorker()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})

	var runID int64
	if _, err := fmt.Sscanf(out, "run %d:", &runID); err != nil {
		t.Fatalf("submit printed %q", out)
	}
	id := fmt.Sprint(runID)
	waitUntil(t, "the expense to wait for its manager", func() bool {
		return strings.Contains(command(t, ctx, "-db", db, "status", "-run", id), "waiting")
	})
	command(t, ctx, "-db", db, "approve", "-run", id, "-by", "bob")
	want := "completed: paid 120.00 to ana (approved by bob)"
	waitUntil(t, "the expense to be paid", func() bool {
		return strings.Contains(command(t, ctx, "-db", db, "status", "-run", id), want)
	})
	var errOut bytes.Buffer
	if err := run(ctx, []string{"-db", db, "approve", "-run", id}, &errOut); err == nil || !strings.Contains(err.Error(), "finished") {
		t.Errorf("approving a paid expense again: %v; want an error saying the run finished", err)
	}
}

// TestApproveHandler: a manager's decision over HTTP refuses an expense; a
// second decision finds the run finished (409), an unknown run is 404 and a
// bad body 400.
func TestApproveHandler(t *testing.T) {
	b, err := sqlite.Open(filepath.Join(t.TempDir(), "approval.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if err := b.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Register(Expenses); err != nil {
		t.Fatal(err)
	}
	sup, err := supervisor.New(client, &supervisor.Config{PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	srv := httptest.NewServer(ApproveHandler(client))
	t.Cleanup(srv.Close)

	r, err := ductwork.Trigger(t.Context(), client, Expenses, Expense{ID: "e2", Who: "ana", Amount: 80})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the run to wait", func() bool {
		st, err := r.Status(t.Context())
		return err == nil && st == ductwork.RunWaiting
	})
	post := func(run int64, body string) int {
		t.Helper()
		resp, err := http.Post(fmt.Sprintf("%s/approve?run=%d", srv.URL, run), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(r.ID, `{"approved": false, "by": "bob", "note": "no receipt"}`); code != http.StatusAccepted {
		t.Fatalf("POST decision: %d; want 202", code)
	}
	out, err := r.Wait(t.Context())
	if err != nil || out != "refused by bob: no receipt" {
		t.Fatalf("run = %q, %v; want refused by bob: no receipt", out, err)
	}
	for _, c := range []struct {
		run  int64
		body string
		want int
	}{
		{r.ID, `{"approved": true, "by": "bob"}`, http.StatusConflict},
		{r.ID + 100, `{"approved": true, "by": "bob"}`, http.StatusNotFound},
		{r.ID, `{not json`, http.StatusBadRequest},
	} {
		if code := post(c.run, c.body); code != c.want {
			t.Errorf("POST run %d %s: %d; want %d", c.run, c.body, code, c.want)
		}
	}
}

// TestApprovalTimeout: with nobody deciding, the expense is escalated once
// the timeout passes.
func TestApprovalTimeout(t *testing.T) {
	out, _ := ductworktest.Run(t, NewExpenses(200*time.Millisecond), Expense{ID: "e3", Who: "ana", Amount: 5})
	if want := "no decision on e3 in time: escalated"; out != want {
		t.Fatalf("output %q; want %q", out, want)
	}
}
