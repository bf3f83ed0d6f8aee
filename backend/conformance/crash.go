package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// The crash points a backend places inside its transactions. A backend
// that sends a transaction as one pipelined batch or one statement places
// the point after the whole transaction was sent and before its reply was
// read; the suite's checks hold whether the transaction committed or not.
const (
	// CrashCompleteTx: inside Complete's transaction, after the job was
	// marked completed, before the commit.
	CrashCompleteTx = "complete-tx"
	// CrashFanoutInsert: inside Complete's transaction, after the plan's
	// jobs were inserted, before the commit.
	CrashFanoutInsert = "fanout-insert"
	// CrashJoinUpdate: inside Complete's transaction, after an arrival at a
	// join was counted, before the commit.
	CrashJoinUpdate = "join-update"
	// CrashReapTx: inside Reap's transaction, after the stale process's
	// jobs were released, before the commit.
	CrashReapTx = "reap-tx"
	// CrashMigrateTx: inside Migrate, after a migration's statements ran,
	// before its version was recorded.
	CrashMigrateTx = "migrate-tx"
)

// CrashPoints lists every crash point the suite has cases for.
var CrashPoints = []string{CrashCompleteTx, CrashFanoutInsert, CrashJoinUpdate, CrashReapTx, CrashMigrateTx}

// CrashHarness lets the suite kill a backend inside its own transactions: a
// helper process (this test binary again) opens the storage of a backend the
// suite made, arms a crash point, runs the operation that passes it and dies
// there by SIGKILL; the suite then checks, on its own backend on the same
// storage, that the work recovers and every step completes exactly once.
//
// The test binary's TestMain must call CrashHelper first, so that the helper
// process runs the operation instead of the tests.
type CrashHarness struct {
	// Points lists the crash points the backend has (names from
	// CrashPoints). The cases of the other points skip.
	Points []string
	// Storage returns a string naming the storage of b (made by
	// NewBackend) that Open accepts in another process: a file path, a
	// schema or a database name.
	Storage func(t *testing.T, b backend.Backend) string
	// Open opens a backend on the named storage, in the helper process.
	Open func(storage string) (backend.Backend, error)
	// Env returns the environment variables that arm point in a process.
	Env func(point string) []string
}

// crashEnv carries the operation to a helper process.
const crashEnv = "DUCTWORK_CONFORMANCE_CRASH"

// crashOp is the operation a helper process runs: its process ID, and the
// run (or, for a reap, nothing more) it works on.
type crashOp struct {
	Point   string `json:"point"`
	Storage string `json:"storage"`
	Process string `json:"process"`
	RunID   int64  `json:"run_id"`
	// Threshold is the reaper's, in milliseconds.
	Threshold int64 `json:"threshold"`
}

// CrashHelper runs the crash helper's operation and exits if this process is
// a helper the suite started; otherwise it returns at once. Call it first in
// TestMain:
//
//	func TestMain(m *testing.M) {
//		conformance.CrashHelper(harness)
//		os.Exit(m.Run())
//	}
//
// A helper that passes its crash point dies there; if it ever returns from
// the operation it exits with status 3, which fails the case.
func CrashHelper(h Harness) {
	raw := os.Getenv(crashEnv)
	if raw == "" {
		return
	}
	var op crashOp
	if err := json.Unmarshal([]byte(raw), &op); err != nil {
		fmt.Fprintln(os.Stderr, "conformance crash helper:", err)
		os.Exit(2)
	}
	if h.Crash == nil || h.Crash.Open == nil {
		fmt.Fprintln(os.Stderr, "conformance crash helper: Harness.Crash.Open is nil")
		os.Exit(2)
	}
	b, err := h.Crash.Open(op.Storage)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance crash helper: open:", err)
		os.Exit(2)
	}
	if err := op.run(context.Background(), b); err != nil {
		fmt.Fprintln(os.Stderr, "conformance crash helper:", op.Point+":", err)
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "conformance crash helper: passed the operation without dying at", op.Point)
	os.Exit(3)
}

// run is the helper's operation for its crash point.
func (op *crashOp) run(ctx context.Context, b backend.Backend) error {
	if op.Point == CrashMigrateTx {
		return b.Migrate(ctx)
	}
	if _, err := b.RegisterProcess(ctx, &backend.RegisterProcessParams{
		ProcessID: op.Process, Host: "conformance-crash", PID: os.Getpid(), Definitions: []backend.DefinitionRef{defA},
	}); err != nil {
		return err
	}
	if op.Point == CrashReapTx {
		_, err := b.Reap(ctx, &backend.ReapParams{ProcessID: op.Process, Threshold: time.Duration(op.Threshold) * time.Millisecond})
		return err
	}
	res, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: op.Process, Limit: 1, Definitions: []backend.DefinitionRef{defA}})
	if err != nil {
		return err
	}
	if len(res.Jobs) != 1 {
		return fmt.Errorf("claimed %d jobs, want 1", len(res.Jobs))
	}
	j := res.Jobs[0]
	_, err = b.Complete(ctx, &backend.CompleteParams{
		JobID: j.ID, ProcessID: op.Process, Fence: j.Fence, Output: crashOutput(j), Plan: crashPlan(j),
	})
	return err
}

// The crash pipeline: root expands into crashWidth branches that arrive at
// the join "collect", whose completion completes the run.
const crashWidth = 3

// crashPlan is what follows j in the crash pipeline.
func crashPlan(j *backend.Job) backend.Plan {
	switch j.NodeID {
	case "root":
		jobs := make([]backend.NewJob, crashWidth)
		for i := range jobs {
			jobs[i] = backend.NewJob{NodeID: "branch", Scope: strconv.Itoa(i), Input: []byte(strconv.Itoa(i))}
		}
		return backend.Plan{Jobs: jobs, OpenJoins: []backend.OpenJoin{{NodeID: "collect", Expected: crashWidth}}}
	case "branch":
		slot, _ := strconv.Atoi(j.Scope)
		return backend.Plan{Arrive: &backend.Arrival{NodeID: "collect", Slot: slot}}
	}
	return backend.Plan{CompleteRun: true}
}

// crashOutput is j's output: its input for a branch, so that the join's
// inputs are the slot numbers in order.
func crashOutput(j *backend.Job) []byte {
	if j.NodeID == "branch" {
		return j.Input
	}
	return []byte(`"` + j.NodeID + `"`)
}

func testCrashPoints(t *testing.T, h Harness) {
	cases := map[string]caseFunc{}
	for _, p := range CrashPoints {
		cases[p] = func(t *testing.T, h Harness) { crashCase(t, h, p) }
	}
	runCases(t, h, cases)
}

// crashCase kills a helper process at point and checks the recovery.
func crashCase(t *testing.T, h Harness, point string) {
	c := h.Crash
	if c == nil || c.Storage == nil || c.Open == nil || c.Env == nil {
		t.Skip("Harness.Crash is not set")
	}
	if !slices.Contains(c.Points, point) {
		t.Skipf("the backend has no crash point %s (Harness.Crash.Points)", point)
	}
	const threshold = 200 * time.Millisecond
	op := &crashOp{Point: point, Process: randomID(t, "crash-helper"), Threshold: threshold.Milliseconds()}
	var b backend.Backend
	var runID int64
	switch point {
	case CrashMigrateTx:
		b = h.NewBackend(t) // not migrated: the helper migrates
	default:
		b = newBackend(t, h)
		runID = trigger(t, b, defA, backend.NewJob{NodeID: "root", Input: enc(t, "root")}).RunID
	}
	switch point {
	case CrashJoinUpdate:
		// The root expands here; the helper completes a branch.
		p := register(t, b, defA)
		root := claimOne(t, b, p, defA)
		complete(t, b, root, p, crashOutput(root), crashPlan(root))
	case CrashReapTx:
		// A process that claimed the root and went silent; the helper
		// reaps it.
		victim := register(t, b, defA)
		claimOne(t, b, victim, defA)
		makeStale(t, b, victim, threshold)
	}
	op.Storage, op.RunID = c.Storage(t, b), runID
	runCrashHelper(t, c, op)

	if point == CrashMigrateTx {
		// The next Migrate finishes what the dead one started, and the
		// schema works.
		if err := b.Migrate(testCtx(t)); err != nil {
			t.Fatalf("Migrate after a crash at %s: %v", point, err)
		}
		if err := b.Migrate(testCtx(t)); err != nil {
			t.Fatalf("second Migrate after a crash at %s: %v", point, err)
		}
		runID = trigger(t, b, defA, backend.NewJob{NodeID: "root", Input: enc(t, "root")}).RunID
	}
	dead := op.Process
	if point == CrashMigrateTx {
		dead = "" // the helper registered no process
	}
	finishCrashRun(t, b, runID, dead, threshold)
}

// runCrashHelper runs the helper process for op and checks that it died by
// SIGKILL (at its crash point).
func runCrashHelper(t *testing.T, c *CrashHarness, op *crashOp) {
	t.Helper()
	raw, err := json.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), crashEnv+"="+string(raw)), c.Env(op.Point)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("crash helper for %s: %v, want death by SIGKILL\n%s", op.Point, err, out)
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL || ctx.Err() != nil {
		t.Fatalf("crash helper for %s ended with %v, want death by SIGKILL at the point (does TestMain call conformance.CrashHelper?)\n%s", op.Point, ee, out)
	}
}

// finishCrashRun plays the part of a live supervisor after the crash: it
// reaps the dead helper's process (if it registered one) once it is stale, then claims and
// completes whatever is due until the run completed. Then every step
// instance of the run must exist once and be completed once, with the join
// fed in slot order.
func finishCrashRun(t *testing.T, b backend.Backend, runID int64, dead string, threshold time.Duration) {
	t.Helper()
	ctx := testCtx(t)
	if dead != "" {
		makeStale(t, b, dead, threshold)
	}
	if _, err := b.Reap(ctx, &backend.ReapParams{ProcessID: "crash-reaper", Threshold: threshold}); err != nil {
		t.Fatalf("Reap after the crash: %v", err)
	}
	p := register(t, b, defA)
	deadline := time.Now().Add(time.Minute)
	for getRun(t, b, runID).Status != "completed" {
		if time.Now().After(deadline) {
			t.Fatalf("run %d did not complete after the crash; jobs: %s", runID, jobSummary(listJobs(t, b, runID)))
		}
		jobs := claim(t, b, p, 10, defA)
		if len(jobs) == 0 {
			// Something of the dead process's may still need its reap
			// (a claim the dead transaction committed after all).
			if _, err := b.Reap(ctx, &backend.ReapParams{ProcessID: "crash-reaper", Threshold: threshold}); err != nil {
				t.Fatalf("Reap: %v", err)
			}
			waitPast(t, b, now(t, b), 10*time.Millisecond)
			continue
		}
		for _, j := range jobs {
			if j.NodeID == "collect" {
				checkJoinInputs(t, j, crashWidth)
			}
			complete(t, b, j, p, crashOutput(j), crashPlan(j))
		}
	}
	seen := map[string]int{}
	for _, j := range listJobs(t, b, runID) {
		seen[j.NodeID+"@"+j.Scope]++
		if j.Status != backend.JobCompleted {
			t.Errorf("job %s@%q is %s after the run completed", j.NodeID, j.Scope, j.Status)
		}
	}
	want := []string{"root@", "collect@"}
	for i := range crashWidth {
		want = append(want, "branch@"+strconv.Itoa(i))
	}
	for _, w := range want {
		if seen[w] != 1 {
			t.Errorf("step instance %s exists %d times; want exactly once", w, seen[w])
		}
	}
	if len(seen) != len(want) {
		t.Errorf("step instances %v; want exactly %v", seen, want)
	}
}

// jobSummary describes a run's jobs for a failure message.
func jobSummary(jobs []*backend.JobInfo) string {
	s := ""
	for _, j := range jobs {
		s += fmt.Sprintf("%s@%q %s (process %q, fence %d); ", j.NodeID, j.Scope, j.Status, j.ProcessID, j.Fence)
	}
	return s
}
