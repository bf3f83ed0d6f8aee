package ductwork_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
	_ "github.com/mattn/go-sqlite3"
)

// The crash pipeline: prepare -> victim -> after. Every execution appends a
// line "node key attempt crashes pid" to the file named by DW_MARKS. In the
// helper process the victim blocks until DW_RELEASE exists (or forever).
var (
	markMu      sync.Mutex
	crashPrep   = step.New("prepare", func(ctx step.Context, n int) (int, error) { mark(ctx); return n, nil })
	crashVictim = step.New("victim", func(ctx step.Context, n int) (int, error) {
		mark(ctx)
		if os.Getenv(helperEnv) != "" && os.Getenv("DW_NORMAL") == "" {
			for {
				if rel := os.Getenv("DW_RELEASE"); rel != "" {
					if _, err := os.Stat(rel); err == nil {
						return n + 1000, nil // the zombie's result: must never land
					}
				}
				time.Sleep(10 * time.Millisecond) // a step doing slow work, not test synchronisation
			}
		}
		return n + 1, nil
	})
	crashAfter = step.New("after", func(ctx step.Context, n int) (int, error) { mark(ctx); return n * 2, nil })
	crashDef   = flow.MustDefine("crash", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Chain(flow.Chain(flow.Start(p, crashPrep), crashVictim), crashAfter)
	})
)

const helperEnv = "DUCTWORK_TEST_HELPER"

func mark(ctx step.Context) {
	appendLine(os.Getenv("DW_MARKS"), fmt.Sprintf("%s %s %d %d %d", ctx.Node(), ctx.IdempotencyKey(), ctx.Attempt(), ctx.Crashes(), os.Getpid()))
}

func appendLine(path, line string) {
	if path == "" {
		return
	}
	markMu.Lock()
	defer markMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		panic(err)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// staleRecorder is a step hook that records commits refused as stale.
type staleRecorder struct{ path string }

func (s staleRecorder) StepStart(ctx context.Context, job *ductworktype.Execution) (context.Context, func(ductworktype.StepEnd)) {
	return ctx, func(end ductworktype.StepEnd) {
		if end.Stale {
			appendLine(s.path, fmt.Sprintf("stale %s %d", job.Node, job.Fence))
		}
	}
}

// runHelper is the body of a helper process: a supervisor on the backend
// named by DW_BACKEND (sqlite: DW_DB; postgres: DW_DSN and DW_SCHEMA;
// mysql: DW_DSN).
func runHelper() {
	b, err := openHelperBackend()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	var hook ductworktype.StepHook = staleRecorder{os.Getenv("DW_MARKS")}
	if rel := os.Getenv("DW_ZOMBIE"); rel != "" {
		hook = zombieHook{marks: os.Getenv("DW_MARKS"), release: rel}
	}
	c, _ := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger(), Hooks: []ductwork.Hook{hook}})
	if kind := os.Getenv("DW_TXKIND"); kind != "" {
		if err := c.Register(txDefs[kind]); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
	} else {
		_ = c.Register(crashDef, doomedDef, crashDetachedDef, crashAwaitDef, crashSleepDef)
	}
	cfg := &supervisor.Config{PollInterval: 5 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond, ReapThreshold: time.Hour}
	if os.Getenv("DW_TXKIND") != "" {
		cfg.Workers, cfg.Prefetch = 2, -1 // claims a few jobs, leaving work for the next helper
	}
	s, _ := supervisor.New(c, cfg)
	ctx, stop := supervisor.SignalContext(context.Background())
	defer stop()
	_ = s.Run(ctx)
}

func startHelper(t *testing.T, e *env, marks string, extra ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "DW_DB="+e.path, "DW_MARKS="+marks)
	cmd.Env = append(cmd.Env, extra...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func marksOf(t *testing.T, path, node string) [][]string {
	var out [][]string
	for _, l := range readLines(t, path) {
		f := strings.Fields(l)
		if f[0] == node {
			out = append(out, f)
		}
	}
	return out
}

// TestCrashKill9InsideStep: a helper process is SIGKILLed inside a step;
// this process reaps it and completes the run. The crash spends no retry
// budget, every step instance has exactly one committed result, and both
// executions of the victim saw the same idempotency key.
func TestCrashKill9InsideStep(t *testing.T) {
	e := newEnv(t, crashDef)
	marks := filepath.Join(t.TempDir(), "marks")
	r, err := ductwork.Trigger(waitCtx(t), e.client, crashDef, 20)
	if err != nil {
		t.Fatal(err)
	}
	helper := startHelper(t, e, marks)
	waitFor(t, func() bool { return len(marksOf(t, marks, "victim")) == 1 })
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()

	t.Setenv("DW_MARKS", marks)
	startSupervisor(t, e.client, &supervisor.Config{HeartbeatInterval: 50 * time.Millisecond, ReapThreshold: 300 * time.Millisecond, ReapInterval: 50 * time.Millisecond})
	out, err := r.Wait(waitCtx(t))
	if err != nil || out != 42 {
		t.Fatalf("out = %d, %v; want 42", out, err)
	}
	victims := marksOf(t, marks, "victim")
	if len(victims) != 2 {
		t.Fatalf("victim executions: %v, want 2", victims)
	}
	if victims[0][1] != victims[1][1] {
		t.Fatalf("idempotency keys differ across the crash: %s vs %s", victims[0][1], victims[1][1])
	}
	if victims[0][4] == victims[1][4] {
		t.Fatalf("both executions ran in pid %s", victims[0][4])
	}
	if victims[1][2] != "1" || victims[1][3] != "1" {
		t.Fatalf("re-run saw attempt %s crashes %s, want attempt 1 crashes 1", victims[1][2], victims[1][3])
	}
	if n := len(marksOf(t, marks, "prepare")); n != 1 {
		t.Fatalf("prepare ran %d times; its committed result must not be redone", n)
	}
	steps, _ := r.Steps(waitCtx(t))
	if len(steps) != 3 {
		t.Fatalf("%d step instances, want 3", len(steps))
	}
	for _, s := range steps {
		if s.Status != backend.JobCompleted || s.Output == nil {
			t.Fatalf("step %s: %s output %q", s.Node, s.Status, s.Output)
		}
		wantCrashes := 0
		if s.Node == "victim" {
			wantCrashes = 1
		}
		if s.Attempt != 1 || s.CrashReruns != wantCrashes {
			t.Fatalf("step %s: attempt %d crash re-runs %d; the crash must not spend the retry budget", s.Node, s.Attempt, s.CrashReruns)
		}
	}
}

// TestZombieCommitIsRefused: a helper process is frozen with SIGSTOP inside a
// step, reaped, and its step re-run and committed here. Woken with SIGCONT,
// the zombie finishes its step; its commit is refused as stale and changes
// no row.
func TestZombieCommitIsRefused(t *testing.T) {
	e := newEnv(t, crashDef)
	dir := t.TempDir()
	marks, release := filepath.Join(dir, "marks"), filepath.Join(dir, "release")
	r, err := ductwork.Trigger(waitCtx(t), e.client, crashDef, 20)
	if err != nil {
		t.Fatal(err)
	}
	helper := startHelper(t, e, marks, "DW_RELEASE="+release)
	waitFor(t, func() bool { return len(marksOf(t, marks, "victim")) == 1 })
	freezeOutsideWriteLock(t, helper, e.path)
	t.Setenv("DW_MARKS", marks)
	startSupervisor(t, e.client, &supervisor.Config{HeartbeatInterval: 50 * time.Millisecond, ReapThreshold: 300 * time.Millisecond, ReapInterval: 50 * time.Millisecond})
	out, err := r.Wait(waitCtx(t))
	if err != nil || out != 42 {
		t.Fatalf("out = %d, %v; want 42", out, err)
	}
	before, _ := r.Steps(waitCtx(t))

	// Wake the zombie and let its step return.
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := helper.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(marksOf(t, marks, "stale")) == 1 })
	after, _ := r.Steps(waitCtx(t))
	if fmt.Sprintf("%+v", before) != fmt.Sprintf("%+v", after) {
		t.Fatalf("the zombie's refused commit changed rows:\nbefore %+v\nafter  %+v", before, after)
	}
	if out, _ := r.Wait(waitCtx(t)); out != 42 {
		t.Fatalf("output changed to %d", out)
	}
}

// freezeOutsideWriteLock stops cmd with SIGSTOP at a moment when it does not
// hold SQLite's write lock. (A process frozen inside a write transaction
// stalls every writer of the file until it resumes: that is SQLite's locking,
// not something a reaper can undo, so the zombie scenario freezes it between
// transactions.)
func freezeOutsideWriteLock(t *testing.T, cmd *exec.Cmd, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := 0; ; i++ {
		if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		_, err := db.Exec("BEGIN IMMEDIATE; ROLLBACK")
		if err == nil {
			return
		}
		if i > 100 {
			t.Fatalf("could not freeze the helper outside a write transaction: %v", err)
		}
		if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i+1) * time.Millisecond) // let it finish its transaction
	}
}
