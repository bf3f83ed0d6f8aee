package main

import (
	"errors"
	"testing"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/ductworktest"
)

// The whole pipeline, inside go test: 100 users, each enriched by two sources
// (some fail once and are retried), routed, finalized and summed up.
func TestEnrich(t *testing.T) {
	t.Parallel()
	summary, report := ductworktest.Run(t, Enrich, 7)
	if summary.Users != 100 || summary.Notified+summary.Flagged != 100 {
		t.Fatalf("summary = %+v, want 100 users, each notified or flagged", summary)
	}
	// User 3 (scope "2") hits the flaky source A once: two attempts.
	if s, _ := report.Step("fetch-source-a", "2"); s.Attempt != 2 || s.Status != "completed" {
		t.Errorf("fetch-source-a for user 3: %+v, want completed on attempt 2", s)
	}
}

// A crash in the middle of every load-user re-runs it without spending its
// retries, and the result is the same.
func TestEnrichSurvivesCrashes(t *testing.T) {
	t.Parallel()
	summary, report := ductworktest.Run(t, Enrich, 7, ductworktest.Crash("load-user", 1))
	if summary.Users != 100 {
		t.Fatalf("summary = %+v, want 100 users", summary)
	}
	for _, s := range report.Instances("load-user") {
		if s.Attempt != 1 || s.CrashReruns != 1 {
			t.Fatalf("load-user[%s]: attempt %d, crash re-runs %d; want 1 and 1", s.Scope, s.Attempt, s.CrashReruns)
		}
	}
}

// A source that is down for good halts the run once its retries are spent,
// and the halt names the cause.
func TestEnrichHaltsWhenASourceIsDown(t *testing.T) {
	t.Parallel()
	herr, report := ductworktest.Halt(t, Enrich, 7, ductworktest.Fail("fetch-source-b", ductworktest.Always))
	if !errors.Is(herr, ductworktest.ErrInjected) || herr.Node != "fetch-source-b" || herr.Cause != ductwork.HaltRetriesExhausted {
		t.Fatalf("halt = %v (node %s, cause %s)", herr, herr.Node, herr.Cause)
	}
	if report.Status != ductwork.RunHalted {
		t.Fatalf("status = %s, want halted", report.Status)
	}
}

// One step on its own, without a database.
func TestFetchARetriesFlakyUsers(t *testing.T) {
	t.Parallel()
	if _, err := FetchA.Execute(ductworktest.NewContext(t), User{ID: 3}); err == nil {
		t.Fatal("first attempt for user 3: no error, want the flaky source")
	}
	e, err := FetchA.Execute(ductworktest.NewContext(t, ductworktest.Attempt(2)), User{ID: 3})
	if err != nil || e.Source != "a" || e.UserID != 3 {
		t.Fatalf("second attempt: %+v, %v", e, err)
	}
}
