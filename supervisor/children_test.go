//go:build linux

package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// The helper process of these tests is this test binary started with
// childrenHelperEnv set: a program whose main (runChildrenHelper) opens the
// SQLite database DW_DB, registers the pipelines below and runs a
// supervisor with Processes set. Its children are the same program again.
// Steps and children append lines to the file DW_MARKS.
const childrenHelperEnv = "DUCTWORK_CHILDREN_HELPER"

var (
	// victim blocks (ignoring its context) on its first execution, until
	// its process is killed; its crash re-run returns.
	victimStep = step.New("victim", func(ctx step.Context, n int) (int, error) {
		markChild(fmt.Sprintf("victim %d %d", os.Getpid(), ctx.Crashes()))
		if ctx.Crashes() == 0 {
			select {}
		}
		return n, nil
	})
	victimDef = flow.MustDefine("children-victim", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, victimStep) })

	// leak keeps 96 MiB per execution, resident (mapped and populated), for
	// as long as its process lives.
	leaked   [][]byte
	leakMu   sync.Mutex
	leakStep = step.New("leak", func(ctx step.Context, n int) (int, error) {
		b, err := syscall.Mmap(-1, 0, 96<<20, syscall.PROT_READ|syscall.PROT_WRITE,
			syscall.MAP_ANON|syscall.MAP_PRIVATE|syscall.MAP_POPULATE)
		if err != nil {
			return 0, err
		}
		leakMu.Lock()
		leaked = append(leaked, b)
		leakMu.Unlock()
		markChild(fmt.Sprintf("leak %d", os.Getpid()))
		return n, nil
	})
	leakDef = flow.MustDefine("children-leak", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, leakStep) })

	// count marks the process it runs in.
	countStep = step.New("count", func(ctx step.Context, n int) (int, error) {
		markChild(fmt.Sprintf("count %d", os.Getpid()))
		return n, nil
	})
	countDef = flow.MustDefine("children-count", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, countStep) })

	// hang ignores its context on its first attempt, past its timeout:
	// only the end of its process stops it. Its retry returns.
	hangStep = step.New("hang", func(ctx step.Context, n int) (int, error) {
		markChild(fmt.Sprintf("hang %d %d", os.Getpid(), ctx.Attempt()))
		if ctx.Attempt() == 1 {
			select {}
		}
		return n, nil
	}, step.Timeout(200*time.Millisecond), step.Retries(1), step.Backoff(time.Millisecond, time.Millisecond))
	hangDef = flow.MustDefine("children-hang", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, hangStep) })
)

func markChild(line string) {
	f, err := os.OpenFile(os.Getenv("DW_MARKS"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		panic(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.WriteString(line + "\n"); err != nil {
		panic(err)
	}
}

// runChildrenHelper is the helper program's main.
func runChildrenHelper() {
	if err := childrenHelper(); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
}

func childrenHelper() error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("DW_VERBOSE") != "" {
		quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b, err := sqlite.Open(os.Getenv("DW_DB"), nil)
	if err != nil {
		return err
	}
	defer func() { _ = b.Close(context.Background()) }()
	c, err := ductwork.NewClient(b, &ductwork.Config{Logger: quiet})
	if err != nil {
		return err
	}
	if err := c.Register(victimDef, leakDef, countDef, hangDef); err != nil {
		return err
	}
	atoi := func(k string) int { n, _ := strconv.Atoi(os.Getenv(k)); return n }
	cfg := &supervisor.Config{
		Processes: atoi("DW_PROCESSES"), Workers: 1, Prefetch: -1, PollInterval: 5 * time.Millisecond,
		ReapThreshold: time.Hour, // the parent recovers a dead child's claims itself
		ShutdownGrace: time.Second, StuckGrace: 100 * time.Millisecond, ReleaseTimeout: time.Second, Logger: quiet,
		Children: supervisor.Children{
			MaxSteps: atoi("DW_MAXSTEPS"), MaxRSS: int64(atoi("DW_MAXRSS")),
			CheckInterval: 10 * time.Millisecond, RestartBackoff: 10 * time.Millisecond,
		},
	}
	s, err := supervisor.New(c, cfg)
	if err != nil {
		return err
	}
	if supervisor.IsChild() {
		markChild(fmt.Sprintf("child %d %s", os.Getpid(), s.ProcessID()))
	} else {
		markChild(fmt.Sprintf("parent %d %s", os.Getpid(), s.ProcessID()))
	}
	ctx, stop := supervisor.SignalContext(context.Background())
	defer stop()
	return s.Run(ctx)
}

// childEnv is a helper program's database, marks file and client.
type childEnv struct {
	b      *sqlite.Backend
	client *ductwork.Client
	db     string
	marks  string
}

func newChildEnv(t *testing.T) *childEnv {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "dw.db")
	b, err := sqlite.Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if err := b.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := ductwork.NewClient(b, &ductwork.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(victimDef, leakDef, countDef, hangDef); err != nil {
		t.Fatal(err)
	}
	return &childEnv{b: b, client: c, db: db, marks: filepath.Join(dir, "marks")}
}

// start starts the helper program (the parent of the children); the test's
// cleanup kills it and every child it started.
func (e *childEnv) start(t *testing.T, env ...string) (*exec.Cmd, chan error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childrenHelperEnv+"=1", "DW_DB="+e.db, "DW_MARKS="+e.marks)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		for _, l := range e.lines(t, "child") {
			if pid, _ := strconv.Atoi(l[1]); pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return cmd, done
}

// lines returns the marks whose first field is kind, split in fields.
func (e *childEnv) lines(t *testing.T, kind string) [][]string {
	t.Helper()
	data, err := os.ReadFile(e.marks)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == kind {
			out = append(out, f)
		}
	}
	return out
}

// pids returns the distinct processes (field 1) of the marks of kind.
func (e *childEnv) pids(t *testing.T, kind string) []string {
	var out []string
	for _, l := range e.lines(t, kind) {
		if !slices.Contains(out, l[1]) {
			out = append(out, l[1])
		}
	}
	return out
}

// gone reports whether process pid has exited (it may be a zombie, waiting
// for whichever process adopted it to reap it).
func gone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

func childWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// stopParent stops the helper program with SIGTERM and checks that it and
// its children exit gracefully: the parent with status 0, every child
// gone, and no process row left (each deregistered itself).
func (e *childEnv) stopParent(t *testing.T, cmd *exec.Cmd, done chan error) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("the parent exited with %v after SIGTERM; want a graceful exit", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the parent did not stop after SIGTERM")
	}
	for _, l := range e.lines(t, "child") {
		pid, _ := strconv.Atoi(l[1])
		if !gone(pid) {
			t.Errorf("child %d outlived its parent's shutdown", pid)
		}
	}
	for _, kind := range []string{"child", "parent"} {
		for _, l := range e.lines(t, kind) {
			_, err := e.b.Heartbeat(waitCtx(t), &backend.HeartbeatParams{ProcessID: l[2]})
			if !errors.Is(err, backend.ErrProcessNotFound) {
				t.Errorf("%s %s is still registered (%v); want it deregistered", kind, l[2], err)
			}
		}
	}
}

// TestChildKilledIsReplaced: a child process killed with SIGKILL in the
// middle of a step is replaced, and its step runs again in the new child
// as a crash re-run (no retry spent) well before any reaper would notice
// (the threshold is an hour): the parent released the dead child's claim.
// SIGTERM to the parent then stops everything gracefully.
func TestChildKilledIsReplaced(t *testing.T) {
	e := newChildEnv(t)
	cmd, done := e.start(t, "DW_PROCESSES=2")
	r, err := ductwork.Trigger(waitCtx(t), e.client, victimDef, 5)
	if err != nil {
		t.Fatal(err)
	}
	childWait(t, "the victim to start", func() bool { return len(e.lines(t, "victim")) == 1 })
	victim, _ := strconv.Atoi(e.lines(t, "victim")[0][1])
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if out, err := r.Wait(waitCtx(t)); err != nil || out != 5 {
		t.Fatalf("Wait = %d, %v; want 5", out, err)
	}
	runs := e.lines(t, "victim")
	if len(runs) != 2 || runs[1][1] == runs[0][1] || runs[1][2] != "1" {
		t.Fatalf("victim executions = %v; want 2, the second a crash re-run in another process", runs)
	}
	steps, err := r.Steps(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 1 || steps[0].Attempt != 1 || steps[0].CrashReruns != 1 {
		t.Fatalf("steps = %+v; want one instance, attempt 1, one crash re-run", steps)
	}
	childWait(t, "a replacement child", func() bool { return len(e.lines(t, "child")) >= 3 })
	e.stopParent(t, cmd, done)
}

// TestChildRecycledAboveMaxRSS: a child whose step leaks 96 MiB per
// execution is recycled once its RSS is above 200 MiB; every run completes,
// across several children.
func TestChildRecycledAboveMaxRSS(t *testing.T) {
	e := newChildEnv(t)
	cmd, done := e.start(t, "DW_PROCESSES=1", fmt.Sprintf("DW_MAXRSS=%d", 200<<20))
	var runs []*ductwork.Run[int]
	for i := range 6 {
		r, err := ductwork.Trigger(waitCtx(t), e.client, leakDef, i)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	for i, r := range runs {
		if out, err := r.Wait(waitCtx(t)); err != nil || out != i {
			t.Fatalf("run %d = %d, %v", i, out, err)
		}
	}
	if p := e.pids(t, "leak"); len(p) < 2 {
		t.Fatalf("the leaking steps ran in %d process(es) %v; want the child recycled at least once", len(p), p)
	}
	e.stopParent(t, cmd, done)
}

// TestChildRecycledAfterMaxSteps: with MaxSteps 1, three one-step runs
// are executed by three children in turn.
func TestChildRecycledAfterMaxSteps(t *testing.T) {
	e := newChildEnv(t)
	cmd, done := e.start(t, "DW_PROCESSES=1", "DW_MAXSTEPS=1")
	for i := range 3 {
		r, err := ductwork.Trigger(waitCtx(t), e.client, countDef, i)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := r.Wait(waitCtx(t)); err != nil || out != i {
			t.Fatalf("run %d = %d, %v", i, out, err)
		}
	}
	counts := map[string]int{}
	for _, l := range e.lines(t, "count") {
		counts[l[1]]++
	}
	if len(counts) != 3 {
		t.Fatalf("steps per process = %v; want 3 processes, one step each", counts)
	}
	e.stopParent(t, cmd, done)
}

// TestChildOfStuckStepIsReplaced: a step that ignores its context past its
// 200ms timeout is abandoned; the execution fails (its retry is spent, no
// crash counted), its child process stops claiming and is replaced, which
// ends the stuck code for good; the retry runs in the new child and the run
// completes.
func TestChildOfStuckStepIsReplaced(t *testing.T) {
	e := newChildEnv(t)
	cmd, done := e.start(t, "DW_PROCESSES=1")
	r, err := ductwork.Trigger(waitCtx(t), e.client, hangDef, 3)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := r.Wait(waitCtx(t)); err != nil || out != 3 {
		t.Fatalf("Wait = %d, %v; want 3", out, err)
	}
	runs := e.lines(t, "hang")
	if len(runs) != 2 || runs[0][2] != "1" || runs[1][2] != "2" || runs[0][1] == runs[1][1] {
		t.Fatalf("hang executions = %v; want attempt 1 and attempt 2 in another process", runs)
	}
	stuck, _ := strconv.Atoi(runs[0][1])
	childWait(t, "the process of the stuck step to end", func() bool { return gone(stuck) })
	steps, err := r.Steps(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 1 || steps[0].Attempt != 2 || steps[0].CrashReruns != 0 {
		t.Fatalf("steps = %+v; want one instance on attempt 2, no crash re-run", steps)
	}
	e.stopParent(t, cmd, done)
}

// TestParentKilledLeavesNoOrphans: when the parent is killed with SIGKILL,
// its children notice and exit, gracefully: each deregisters itself.
func TestParentKilledLeavesNoOrphans(t *testing.T) {
	e := newChildEnv(t)
	cmd, done := e.start(t, "DW_PROCESSES=2")
	childWait(t, "2 children to register", func() bool {
		n := 0
		for _, l := range e.lines(t, "child") {
			if _, err := e.b.Heartbeat(waitCtx(t), &backend.HeartbeatParams{ProcessID: l[2]}); err == nil {
				n++
			}
		}
		return n == 2
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err := <-done
	done <- err
	for _, l := range e.lines(t, "child") {
		pid, _ := strconv.Atoi(l[1])
		childWait(t, fmt.Sprintf("child %d to exit", pid), func() bool { return gone(pid) })
		if _, err := e.b.Heartbeat(waitCtx(t), &backend.HeartbeatParams{ProcessID: l[2]}); !errors.Is(err, backend.ErrProcessNotFound) {
			t.Errorf("child %s is still registered (%v); want it to have stopped gracefully", l[2], err)
		}
	}
}

func init() {
	// The helper program (see childrenHelperEnv) runs instead of the tests.
	if os.Getenv(childrenHelperEnv) != "" {
		runChildrenHelper()
		os.Exit(0)
	}
}
