package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// TestMain lets the test binary serve as a worker process: runChaos
// re-executes os.Executable, which is the test binary here.
func TestMain(m *testing.M) {
	if raw := os.Getenv(workerEnv); raw != "" {
		os.Exit(runWorker(raw))
	}
	os.Exit(m.Run())
}

func TestExpectedCoversEveryTransition(t *testing.T) {
	nodes := map[string]bool{}
	for i := range 9 {
		want, _ := expected(inputFor(i))
		if n := inputFor(i).N; len(want) != 3+9*n {
			t.Fatalf("run %d: %d instances, want %d", i, len(want), 3+9*n)
		}
		for inst := range want {
			nodes[inst.node] = true
		}
	}
	for _, id := range Chaos.NodeIDs() {
		if !nodes[id] {
			t.Errorf("node %s never expected to run", id)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-backend", "oracle"}, {"-procs", "1"}, {"extra"}, {"-reap-threshold", "1ms"}} {
		var stderr bytes.Buffer
		if code := runMain(context.Background(), args, &bytes.Buffer{}, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
}

// TestSQLiteSmall runs the whole command on SQLite: two workers, a few runs,
// the SIGSTOP of one worker, no kills.
func TestSQLiteSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	var stdout, stderr bytes.Buffer
	code := runMain(context.Background(), []string{"-backend", "sqlite", "-dsn", t.TempDir(), "-procs", "2", "-runs", "12",
		"-kill-every", "0", "-reap-threshold", "500ms", "-timeout", "2m"}, &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "verdict: ok") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"runs completed / triggered: 12 / 12", "zombie commits accepted: 0", "lost steps: 0"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("missing %q in\n%s", want, stdout.String())
		}
	}
}

// TestSQLiteSmallTxSteps is TestSQLiteSmall with -txsteps: every step
// transactional, and the counters exact.
func TestSQLiteSmallTxSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	var stdout, stderr bytes.Buffer
	code := runMain(context.Background(), []string{"-backend", "sqlite", "-dsn", t.TempDir(), "-procs", "2", "-runs", "12",
		"-kill-every", "0", "-reap-threshold", "500ms", "-timeout", "2m", "-txsteps"}, &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "verdict: ok") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"runs completed / triggered: 12 / 12", "counters: 387 expected 387, mismatched 0", "lost steps: 0"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("missing %q in\n%s", want, stdout.String())
		}
	}
}
