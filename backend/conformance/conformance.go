package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// Harness tells the suite how to obtain backends for the implementation under
// test. Only NewBackend is required; cases that need an optional hook skip
// when it is nil.
type Harness struct {
	// NewBackend returns a new backend on its own, empty storage (a fresh
	// SQLite file, PostgreSQL schema or MySQL database) that no other call
	// shares. The schema must not be migrated yet: the suite calls Migrate.
	// NewBackend registers with t.Cleanup whatever releases the backend and
	// its storage; the suite never calls Close on it. It calls t.Fatal or
	// t.Skip if it cannot provide a backend.
	NewBackend func(t *testing.T) backend.Backend

	// Reopen, if set, returns a second backend on the same storage as b, as
	// another process would open it, so that the suite can check behaviour
	// across handles (concurrent migrations). Like NewBackend it registers its
	// own cleanup, which must not destroy the storage b still uses.
	Reopen func(t *testing.T, b backend.Backend) backend.Backend

	// BeginTx, if set, begins a transaction of the type b's Trigger joins
	// through TriggerParams.Tx, and returns it with functions that commit
	// and roll it back. The suite calls exactly one of them.
	BeginTx func(t *testing.T, b backend.Backend) (tx any, commit, rollback func() error)

	// Crash, if set, lets the suite kill the backend inside its own
	// transactions in a helper process (area CrashPoints; see CrashHarness
	// and CrashHelper).
	Crash *CrashHarness
}

// Run runs the whole conformance suite against the backend h provides. Each
// contract area is a subtest and each case a parallel subtest below it, so
// -run can select them (for example -run 'Conformance/Claims/Limit').
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.NewBackend == nil {
		t.Fatal("conformance: Harness.NewBackend is nil")
	}
	areas := []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"Migrations", testMigrations},
		{"Trigger", testTrigger},
		{"Claims", testClaims},
		{"ClaimNext", testClaimNext},
		{"Fencing", testFencing},
		{"Ambiguous", testAmbiguous},
		{"Reaper", testReaper},
		{"Joins", testJoins},
		{"Detached", testDetached},
		{"Retries", testRetries},
		{"Halts", testHalts},
		{"Cancel", testCancel},
		{"Identity", testIdentity},
		{"Payloads", testPayloads},
		{"Clock", testClock},
		{"Listing", testListing},
		{"Definitions", testDefinitions},
		{"TxSteps", testTxSteps},
		{"Executions", testExecutions},
		{"Limits", testLimits},
		{"Dedup", testDedup},
		{"Schedules", testSchedules},
		{"EndToEnd", testEndToEnd},
		{"Signals", testSignals},
		{"CrashPoints", testCrashPoints},
		{"Edges", testEdges},
	}
	for _, a := range areas {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			a.run(t, h)
		})
	}
}

// caseFunc is one conformance case.
type caseFunc func(t *testing.T, h Harness)

// runCases runs each case as a parallel subtest, in name order.
func runCases(t *testing.T, h Harness, cases map[string]caseFunc) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(cases)) {
		fn := cases[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, h)
		})
	}
}

// Definitions used throughout the suite.
var (
	defA  = backend.DefinitionRef{Pipeline: "conformance-a", Fingerprint: "fp-1"}
	defA2 = backend.DefinitionRef{Pipeline: "conformance-a", Fingerprint: "fp-2"}
	defB  = backend.DefinitionRef{Pipeline: "conformance-b", Fingerprint: "fp-1"}
)

// caseTimeout bounds every case, so a backend that blocks fails instead of
// hanging the test binary.
const caseTimeout = 3 * time.Minute

// testCtx returns a context for one case, cancelled when the case ends.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), caseTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newBackend returns a fresh backend from the harness, migrated.
func newBackend(t *testing.T, h Harness) backend.Backend {
	t.Helper()
	b := h.NewBackend(t)
	if b == nil {
		t.Fatal("Harness.NewBackend returned nil")
	}
	if err := b.Migrate(testCtx(t)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return b
}

// randomID returns a short random identifier with the given prefix.
func randomID(t *testing.T, prefix string) string {
	t.Helper()
	var buf [6]byte
	if _, err := rand.Read(buf[:]); err != nil {
		t.Fatalf("rand: %v", err)
	}
	return prefix + "-" + hex.EncodeToString(buf[:])
}

// enc encodes v with encoding/json.
func enc(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal(%v): %v", v, err)
	}
	return data
}

// decInt decodes a JSON integer, reporting a test error on failure.
func decInt(t *testing.T, data []byte) (int, bool) {
	t.Helper()
	var n int
	if err := json.Unmarshal(data, &n); err != nil {
		t.Errorf("decode %q as int: %v", data, err)
		return 0, false
	}
	return n, true
}

// trigger starts a run of def whose first job is first.
func trigger(t *testing.T, b backend.Backend, def backend.DefinitionRef, first backend.NewJob) *backend.TriggerResult {
	t.Helper()
	if first.NodeID == "" {
		first.NodeID = "root"
	}
	res, err := b.Trigger(testCtx(t), &backend.TriggerParams{
		Pipeline:    def.Pipeline,
		Fingerprint: def.Fingerprint,
		Input:       first.Input,
		First:       first,
	})
	if err != nil {
		t.Fatalf("Trigger(%s/%s): %v", def.Pipeline, def.Fingerprint, err)
	}
	if res.RunID == 0 || res.JobID == 0 {
		t.Fatalf("Trigger returned RunID %d, JobID %d; want both non-zero", res.RunID, res.JobID)
	}
	return res
}

// register registers a process with a random ID claiming defs, and returns
// the ID.
func register(t *testing.T, b backend.Backend, defs ...backend.DefinitionRef) string {
	t.Helper()
	id := randomID(t, "proc")
	if _, err := b.RegisterProcess(testCtx(t), &backend.RegisterProcessParams{
		ProcessID: id, Host: "conformance", PID: 1, Definitions: defs,
	}); err != nil {
		t.Fatalf("RegisterProcess(%s): %v", id, err)
	}
	return id
}

// claim claims up to limit jobs of defs for process.
func claim(t *testing.T, b backend.Backend, process string, limit int, defs ...backend.DefinitionRef) []*backend.Job {
	t.Helper()
	res, err := b.Claim(testCtx(t), &backend.ClaimParams{ProcessID: process, Limit: limit, Definitions: defs})
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	for _, j := range res.Jobs {
		if j == nil {
			t.Fatal("Claim returned a nil job")
		}
	}
	return res.Jobs
}

// claimOne claims exactly one job, failing the test otherwise.
func claimOne(t *testing.T, b backend.Backend, process string, defs ...backend.DefinitionRef) *backend.Job {
	t.Helper()
	jobs := claim(t, b, process, 1, defs...)
	if len(jobs) != 1 {
		t.Fatalf("Claim(limit 1) returned %d jobs; want 1", len(jobs))
	}
	return jobs[0]
}

// claimNone checks that nothing of defs is claimable now.
func claimNone(t *testing.T, b backend.Backend, process string, defs ...backend.DefinitionRef) {
	t.Helper()
	if jobs := claim(t, b, process, 100, defs...); len(jobs) != 0 {
		t.Fatalf("Claim returned %d jobs (first: %s); want none", len(jobs), describeJob(jobs[0]))
	}
}

// complete completes a claimed job.
func complete(t *testing.T, b backend.Backend, j *backend.Job, process string, output []byte, plan backend.Plan) *backend.CompleteResult {
	t.Helper()
	res, err := b.Complete(testCtx(t), &backend.CompleteParams{
		JobID: j.ID, ProcessID: process, Fence: j.Fence, Output: output, Plan: plan,
	})
	if err != nil {
		t.Fatalf("Complete(job %d): %v", j.ID, err)
	}
	return res
}

// getRun reads a run.
func getRun(t *testing.T, b backend.Backend, runID int64) *backend.Run {
	t.Helper()
	r, err := b.GetRun(testCtx(t), &backend.GetRunParams{RunID: runID})
	if err != nil {
		t.Fatalf("GetRun(%d): %v", runID, err)
	}
	return r
}

// listJobs lists every job of a run, following pagination.
func listJobs(t *testing.T, b backend.Backend, runID int64) []*backend.JobInfo {
	t.Helper()
	var all []*backend.JobInfo
	var after int64
	for range 10_000 {
		res, err := b.ListJobs(testCtx(t), &backend.ListJobsParams{RunID: runID, Limit: 500, AfterID: after})
		if err != nil {
			t.Fatalf("ListJobs(run %d): %v", runID, err)
		}
		all = append(all, res.Jobs...)
		if res.Next == 0 {
			return all
		}
		if res.Next <= after {
			t.Fatalf("ListJobs Next %d does not advance past AfterID %d", res.Next, after)
		}
		after = res.Next
	}
	t.Fatal("ListJobs pagination does not end")
	return nil
}

// jobByID returns the listed job with the given ID.
func jobByID(t *testing.T, b backend.Backend, runID, jobID int64) *backend.JobInfo {
	t.Helper()
	for _, j := range listJobs(t, b, runID) {
		if j.ID == jobID {
			return j
		}
	}
	t.Fatalf("ListJobs(run %d) has no job %d", runID, jobID)
	return nil
}

// startRoot triggers a run of def and claims its first job for a new
// registered process. It returns the process and the claimed job.
func startRoot(t *testing.T, b backend.Backend, def backend.DefinitionRef) (string, *backend.Job) {
	t.Helper()
	trigger(t, b, def, backend.NewJob{NodeID: "root", Input: enc(t, "root")})
	proc := register(t, b, def)
	return proc, claimOne(t, b, proc, def)
}

// children returns n NewJobs of node at scopes "0".."n-1" whose inputs are
// their encoded indexes.
func children(t *testing.T, node string, n int) []backend.NewJob {
	t.Helper()
	jobs := make([]backend.NewJob, n)
	for i := range jobs {
		jobs[i] = backend.NewJob{NodeID: node, Scope: strconv.Itoa(i), Input: enc(t, i)}
	}
	return jobs
}

// now reads the backend's clock.
func now(t *testing.T, b backend.Backend) time.Time {
	t.Helper()
	n, err := b.Now(testCtx(t))
	if err != nil {
		t.Fatalf("Now: %v", err)
	}
	return n
}

// precision is the backend's timestamp resolution, at least a millisecond.
func precision(b backend.Backend) time.Duration {
	return max(b.Capabilities().TimePrecision, time.Millisecond)
}

// waitFor polls cond until it returns true or timeout passes, then fails
// with what. It waits on a condition rather than sleeping a fixed time.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := time.Millisecond
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("test ended waiting for %s", what)
		case <-time.After(delay):
		}
		delay = min(delay*2, 50*time.Millisecond)
	}
}

// waitPast waits until the database clock is strictly after at+d.
func waitPast(t *testing.T, b backend.Backend, at time.Time, d time.Duration) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("database clock past %v + %v", at, d), func() bool {
		return now(t, b).After(at.Add(d))
	})
}

// makeStale waits until process's heartbeat is older than threshold by the
// database clock. It refreshes the heartbeat first to learn its time.
func makeStale(t *testing.T, b backend.Backend, process string, threshold time.Duration) {
	t.Helper()
	hb, err := b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: process})
	if err != nil {
		t.Fatalf("Heartbeat(%s): %v", process, err)
	}
	at := hb.At
	if at.IsZero() {
		at = now(t, b)
	}
	waitPast(t, b, at, 2*threshold+precision(b))
}

// wantErr checks that err matches target.
func wantErr(t *testing.T, op string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v; want errors.Is(err, %v)", op, err, target)
	}
}

// equalBytes compares payloads, treating nil and empty as equal.
func equalBytes(a, b []byte) bool { return bytes.Equal(a, b) }

// short renders a payload for a failure message.
func short(p []byte) string {
	if len(p) > 64 {
		return fmt.Sprintf("%q… (%d bytes)", p[:64], len(p))
	}
	return fmt.Sprintf("%q", p)
}

func describeJob(j *backend.Job) string {
	return fmt.Sprintf("job %d run %d node %q scope %q attempt %d crashes %d fence %d",
		j.ID, j.RunID, j.NodeID, j.Scope, j.Attempt, j.Crashes, j.Fence)
}

// sameJobRow compares the stored fields of two listings of one job.
func sameJobRow(a, b *backend.JobInfo) string {
	switch {
	case a.Status != b.Status:
		return fmt.Sprintf("Status %q -> %q", a.Status, b.Status)
	case !equalBytes(a.Output, b.Output):
		return fmt.Sprintf("Output %s -> %s", short(a.Output), short(b.Output))
	case a.Error != b.Error:
		return fmt.Sprintf("Error %q -> %q", a.Error, b.Error)
	case a.Attempt != b.Attempt:
		return fmt.Sprintf("Attempt %d -> %d", a.Attempt, b.Attempt)
	case a.Crashes != b.Crashes:
		return fmt.Sprintf("Crashes %d -> %d", a.Crashes, b.Crashes)
	case a.Fence != b.Fence:
		return fmt.Sprintf("Fence %d -> %d", a.Fence, b.Fence)
	case a.ProcessID != b.ProcessID:
		return fmt.Sprintf("ProcessID %q -> %q", a.ProcessID, b.ProcessID)
	case !a.DueAt.Equal(b.DueAt):
		return fmt.Sprintf("DueAt %v -> %v", a.DueAt, b.DueAt)
	case (a.FinishedAt == nil) != (b.FinishedAt == nil):
		return fmt.Sprintf("FinishedAt %v -> %v", a.FinishedAt, b.FinishedAt)
	}
	return ""
}
