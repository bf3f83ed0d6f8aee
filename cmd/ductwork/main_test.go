package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/testdb"
	"github.com/ductwork-go/ductwork/internal/windowtest"
	"github.com/ductwork-go/ductwork/readmodel"
)

// cli runs one command line in-process and returns its exit status,
// stdout and stderr.
func cli(t *testing.T, url string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	if url != "" {
		args = append([]string{"--database-url", url}, args...)
	}
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func eachBackend(t *testing.T, fn func(t *testing.T, e *windowtest.Env)) {
	for _, kind := range windowtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			fn(t, windowtest.Open(t, kind))
		})
	}
}

// TestCommands runs every command against each backend: runs (table and
// JSON, filtered), run (the step tree), revive of a halted run, cancel with a
// reason, processes, definitions and health.
func TestCommands(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *windowtest.Env) {
		if code, out, errOut := cli(t, e.URL, "migrate"); code != 0 || !strings.Contains(out, "schema at version") {
			t.Fatalf("migrate: %d %q %q", code, out, errOut)
		}
		// No process yet: unhealthy.
		if code, _, errOut := cli(t, e.URL, "health"); code != exitNoProcess || !strings.Contains(errOut, "no live supervisor") {
			t.Fatalf("health without a process: %d %q", code, errOut)
		}
		c := e.Client(t)
		e.Supervise(t, c)
		bad := "cli-" + e.Kind
		windowtest.Refuse(bad)
		t.Cleanup(func() { windowtest.Heal(bad) })
		okID := e.Trigger(t, c, "x")
		halted := e.Trigger(t, c, "y", bad)

		code, out, errOut := cli(t, e.URL, "runs", "--status", "halted")
		if code != 0 || !strings.Contains(out, strconv.FormatInt(halted, 10)) || strings.Contains(out, "\n"+strconv.FormatInt(okID, 10)+" ") || !strings.Contains(out, "card declined") {
			t.Fatalf("runs --status halted: %d\n%s%s", code, out, errOut)
		}
		code, out, _ = cli(t, e.URL, "runs", "-json", "--limit", "1")
		var page readmodel.RunPage
		if code != 0 || json.Unmarshal([]byte(out), &page) != nil || len(page.Runs) != 1 || page.Runs[0].ID != halted || page.Next != halted {
			t.Fatalf("runs -json: %d %s", code, out)
		}
		code, out, _ = cli(t, e.URL, "runs", "--error", "declined", "--since", "1h")
		if code != 0 || !strings.Contains(out, strconv.FormatInt(halted, 10)) {
			t.Fatalf("runs --error: %d %s", code, out)
		}

		code, out, errOut = cli(t, e.URL, "run", strconv.FormatInt(halted, 10))
		for _, want := range []string{"HALTED", "halted at charge[1]", "receive", "charge[0]", "charge[1]", "failed", "card declined for " + bad, "report", "not-reached", "progress: 2/3"} {
			if !strings.Contains(out, want) {
				t.Fatalf("run %d: output lacks %q (exit %d):\n%s%s", halted, want, code, out, errOut)
			}
		}

		windowtest.Heal(bad)
		if code, out, errOut := cli(t, e.URL, "revive", strconv.FormatInt(halted, 10)); code != 0 || !strings.Contains(out, "revived") {
			t.Fatalf("revive: %d %q %q", code, out, errOut)
		}
		testdb.WaitFor(t, 30*time.Second, "the revived run to complete", func() bool {
			r, err := e.Store.Run(t.Context(), halted)
			return err == nil && r.Status == backend.RunCompleted
		})
		// --watch on a finished run draws once and returns.
		code, out, _ = cli(t, e.URL, "run", "--watch", strconv.FormatInt(halted, 10))
		if code != 0 || !strings.Contains(out, "COMPLETED") || !strings.Contains(out, "progress: 4/4") {
			t.Fatalf("run --watch: %d\n%s", code, out)
		}
		// Reviving a completed run is refused in one line.
		if code, _, errOut := cli(t, e.URL, "revive", strconv.FormatInt(halted, 10)); code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "not in a state") {
			t.Fatalf("revive of a completed run: %d %q", code, errOut)
		}

		// Cancel a run whose first step waits (a version no process runs).
		tr, err := e.Backend.Trigger(t.Context(), &backend.TriggerParams{Pipeline: "orders", Fingerprint: "old", First: backend.NewJob{NodeID: "receive"}})
		if err != nil {
			t.Fatal(err)
		}
		id := strconv.FormatInt(tr.RunID, 10)
		if code, _, errOut := cli(t, e.URL, "cancel", id); code != 1 || !strings.Contains(errOut, "--reason is required") {
			t.Fatalf("cancel without reason: %d %q", code, errOut)
		}
		code, out, _ = cli(t, e.URL, "definitions")
		if code != 0 || !strings.Contains(out, "old") || !strings.Contains(out, "true") {
			t.Fatalf("definitions: %d\n%s", code, out)
		}
		if code, out, errOut := cli(t, e.URL, "cancel", id, "--reason", "customer asked"); code != 0 || !strings.Contains(out, "cancelled") {
			t.Fatalf("cancel: %d %q %q", code, out, errOut)
		}
		r, err := e.Store.Run(t.Context(), tr.RunID)
		if err != nil || r.Status != backend.RunCancelled || !strings.Contains(r.Error, "customer asked") {
			t.Fatalf("cancelled run: %+v, %v", r, err)
		}

		code, out, _ = cli(t, e.URL, "processes", "-json")
		var ps []readmodel.Process
		if code != 0 || json.Unmarshal([]byte(out), &ps) != nil || len(ps) != 1 || !ps[0].Live {
			t.Fatalf("processes: %d %s", code, out)
		}
		code, out, errOut = cli(t, e.URL, "health")
		if code != 0 || !strings.Contains(out, "healthy") {
			t.Fatalf("health: %d %q %q", code, out, errOut)
		}
	})
}

// TestHealthNotMigrated: an empty database is reported as not migrated.
func TestHealthNotMigrated(t *testing.T) {
	url := "sqlite:" + filepath.Join(t.TempDir(), "empty.db")
	code, _, errOut := cli(t, url, "health")
	if code != exitNotMigrated || !strings.Contains(errOut, "not migrated") && !strings.Contains(errOut, "ductwork migrate") {
		t.Fatalf("health on an empty database: %d %q", code, errOut)
	}
}

// TestBadInput: every mistake is one line on stderr and a non-zero exit.
func TestBadInput(t *testing.T) {
	url := "sqlite:" + filepath.Join(t.TempDir(), "x.db")
	for _, tc := range []struct {
		url  string
		args []string
		want string
	}{
		{"", []string{"runs"}, "no database"},
		{"ftp://host/db", []string{"runs"}, "unknown scheme"},
		{"mysql://root@127.0.0.1:1", []string{"runs"}, "names no database"},
		{url, []string{"frobnicate"}, "unknown command"},
		{url, []string{"run"}, "want one run ID"},
		{url, []string{"run", "abc"}, "not a positive integer"},
		{url, []string{"runs", "--status", "bogus"}, "unknown status"},
		{url, []string{"runs", "--since", "yesterday"}, "want RFC 3339"},
		{url, []string{"runs", "--nope"}, "flag provided but not defined"},
		{url, []string{"serve", "--prefix", "x"}, "must start with /"},
	} {
		t.Setenv("DUCTWORK_DATABASE_URL", "")
		code, _, errOut := cli(t, tc.url, tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want one line containing %q", tc.args, code, errOut, tc.want)
		}
	}
}
