package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/internal/testdb"
	"github.com/ductwork-go/ductwork/internal/windowtest"
	"github.com/ductwork-go/ductwork/readmodel"
)

// TestExecutionsCommand: executions ID prints a run's execution history as
// a table and as JSON, filtered by step and step instance, in pages; an
// unknown run is one line and exit 1; runs --key finds a keyed run.
func TestExecutionsCommand(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *windowtest.Env) {
		c := e.Client(t)
		e.Supervise(t, c)
		bad := "exec-cli-" + e.Kind
		windowtest.Refuse(bad)
		t.Cleanup(func() { windowtest.Heal(bad) })
		halted := e.Trigger(t, c, "y", bad)
		id := strconv.FormatInt(halted, 10)
		// The run halts when charge[1] fails; charge[0] may end after.
		testdb.WaitFor(t, 30*time.Second, "three executions", func() bool {
			p, err := e.Store.Executions(t.Context(), &readmodel.ExecutionFilter{RunID: halted})
			return err == nil && len(p.Executions) == 3
		})

		code, out, errOut := cli(t, e.URL, "executions", id)
		for _, want := range []string{"OUTCOME", "receive", "charge[0]", "charge[1]", "completed", "failed",
			"card declined for " + bad, "window-" + e.Kind} {
			if !strings.Contains(out, want) {
				t.Fatalf("executions %s: output lacks %q (exit %d):\n%s%s", id, want, code, out, errOut)
			}
		}
		if code != 0 || strings.Count(out, "\n") != 4 {
			t.Fatalf("executions %s: exit %d, want a header and 3 lines:\n%s", id, code, out)
		}
		code, out, _ = cli(t, e.URL, "executions", id, "-json", "--step", "charge")
		var page readmodel.ExecutionPage
		if code != 0 || json.Unmarshal([]byte(out), &page) != nil || len(page.Executions) != 2 {
			t.Fatalf("executions -json --step charge: %d %s", code, out)
		}
		var failed readmodel.Execution
		for _, x := range page.Executions {
			if x.Outcome == "failed" {
				failed = x
			}
		}
		if failed.ID == 0 || failed.Scope != "1" || failed.Attempt != 1 || failed.StartedAt.IsZero() || failed.FinishedAt.IsZero() {
			t.Fatalf("failed execution in JSON: %+v", failed)
		}
		code, out, _ = cli(t, e.URL, "executions", "--job", strconv.FormatInt(failed.JobID, 10), id)
		if code != 0 || !strings.Contains(out, "charge[1]") || strings.Contains(out, "charge[0]") {
			t.Fatalf("executions --job: %d\n%s", code, out)
		}
		code, out, _ = cli(t, e.URL, "executions", id, "--limit", "1")
		if code != 0 || !strings.Contains(out, "next page: --after ") || strings.Count(out, "\n") != 3 {
			t.Fatalf("executions --limit 1: %d\n%s", code, out)
		}

		missing := strconv.FormatInt(halted+1000, 10)
		if code, _, errOut := cli(t, e.URL, "executions", missing); code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "not found") {
			t.Fatalf("executions of an unknown run: %d %q", code, errOut)
		}
		if code, _, errOut := cli(t, e.URL, "executions", "x1"); code != 1 || !strings.Contains(errOut, "not a positive integer") {
			t.Fatalf("executions x1: %d %q", code, errOut)
		}
		if code, _, errOut := cli(t, e.URL, "executions", id, "--limit", "0"); code != 1 || !strings.Contains(errOut, "--limit 0") {
			t.Fatalf("executions --limit 0: %d %q", code, errOut)
		}

		keyed, err := ductwork.Trigger(t.Context(), c, windowtest.Orders, []string{"k"}, ductwork.WithKey("cli-key-"+e.Kind))
		if err != nil {
			t.Fatal(err)
		}
		code, out, _ = cli(t, e.URL, "runs", "-json", "--key", "cli-key-"+e.Kind)
		var runs readmodel.RunPage
		if code != 0 || json.Unmarshal([]byte(out), &runs) != nil || len(runs.Runs) != 1 || runs.Runs[0].ID != keyed.ID {
			t.Fatalf("runs --key: %d %s", code, out)
		}
	})
}
