package testdb

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that records Skipf and Fatalf and, as they do,
// ends the calling goroutine.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// call runs dsn with a recorder on a goroutine of its own, as the testing
// package runs a test.
func call(t *testing.T, dsn func(testing.TB) string) (r *recorder, got string) {
	r = &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = dsn(r)
	}()
	<-done
	return r, got
}

// freshContainers gives the test containers that have not started, and
// restores the binary's at its end.
func freshContainers(t *testing.T) {
	pg, my := postgresContainer, mysqlContainer
	postgresContainer, mysqlContainer = &container{kind: "postgres"}, &container{kind: "mariadb"}
	t.Cleanup(func() { postgresContainer, mysqlContainer = pg, my })
}

var servers = []struct {
	env string
	dsn func(testing.TB) string
}{{PostgresEnv, PostgresDSN}, {MySQLEnv, MySQLDSN}}

// TestSkipWithoutDocker: with no variable and no Docker engine, a test is
// skipped with a message naming the variable; with the variable set, its
// value is the DSN.
func TestSkipWithoutDocker(t *testing.T) {
	freshContainers(t)
	t.Setenv("DOCKER_HOST", "")
	missing := filepath.Join(t.TempDir(), "docker.sock")
	sockets := dockerSockets
	dockerSockets = func() []string { return []string{missing} }
	t.Cleanup(func() { dockerSockets = sockets })

	for _, s := range servers {
		t.Setenv(s.env, "")
		r, got := call(t, s.dsn)
		if r.skipped == "" || r.failed != "" || got != "" {
			t.Fatalf("%s unset, no Docker: skipped %q, failed %q, returned %q; want a skip", s.env, r.skipped, r.failed, got)
		}
		want := s.env + " is not set and no Docker engine is reachable to start one (DOCKER_HOST is unset and no socket at " +
			missing + "); set " + s.env + " to run this test"
		if r.skipped != want {
			t.Fatalf("skip message\n%q\nwant\n%q", r.skipped, want)
		}

		t.Setenv(s.env, "server-from-the-variable")
		if r, got := call(t, s.dsn); got != "server-from-the-variable" || r.skipped != "" || r.failed != "" {
			t.Fatalf("%s set: returned %q, skipped %q, failed %q", s.env, got, r.skipped, r.failed)
		}
	}
}

// TestSkipWhenNoEngineAnswers runs the command of ./dbcontainer against an
// address where no Docker engine listens: it reports the engine
// unavailable, and the test is skipped naming the variable.
func TestSkipWhenNoEngineAnswers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the command in ./dbcontainer")
	}
	freshContainers(t)
	t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:1") // nothing listens on port 1
	t.Setenv(PostgresEnv, "")
	r, got := call(t, PostgresDSN)
	if r.failed != "" || got != "" {
		t.Fatalf("failed %q, returned %q; want a skip", r.failed, got)
	}
	prefix := PostgresEnv + " is not set and no Docker engine is reachable to start one ("
	if !strings.HasPrefix(r.skipped, prefix) || !strings.Contains(r.skipped, "tcp://127.0.0.1:1") ||
		!strings.HasSuffix(r.skipped, "; set "+PostgresEnv+" to run this test") {
		t.Fatalf("skip message %q", r.skipped)
	}
	t.Log(r.skipped)
}

// fakeCommand writes a command in the place of ./dbcontainer, for this
// test and the helper processes it starts: for postgres it prints a DSN
// and, when its standard input closes, creates the file named by
// DUCTWORK_TESTDB_FAKE_STOPPED; for mariadb it fails.
func fakeCommand(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module fake\n\ngo 1.26\n",
		"main.go": `package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	if os.Args[1] == "mariadb" {
		fmt.Println("error boom")
		os.Exit(1)
	}
	fmt.Println("dsn fake://" + os.Args[1])
	io.Copy(io.Discard, os.Stdin)
	os.WriteFile(os.Getenv("DUCTWORK_TESTDB_FAKE_STOPPED"), nil, 0o644)
}
`,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// useCommand runs the command in dir in place of ./dbcontainer, with a
// Docker engine said to be reachable.
func useCommand(t *testing.T, dir string) {
	freshContainers(t)
	t.Setenv("DOCKER_HOST", "tcp://engine.invalid:2375")
	saved := commandDir
	commandDir = func() string { return dir }
	t.Cleanup(func() { commandDir = saved })
}

const helperEnv = "DUCTWORK_TESTDB_HELPER"

// TestHelperProcess is the test binary of TestContainerLivesWithTheBinary:
// it gets the DSN twice, reports it and whether the command had stopped,
// and exits.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("a helper process of TestContainerLivesWithTheBinary")
	}
	useCommand(t, dir)
	t.Setenv(PostgresEnv, "")
	first, second := PostgresDSN(t), PostgresDSN(t)
	_, err := os.Stat(os.Getenv("DUCTWORK_TESTDB_FAKE_STOPPED"))
	fmt.Printf("dsn=%s,%s stopped=%v\n", first, second, err == nil)
}

// TestContainerLivesWithTheBinary: the command started for a DSN runs once
// per test binary, is not stopped while the binary runs, and is stopped
// when the binary exits; a command that fails fails the test with its
// message.
func TestContainerLivesWithTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a command and runs the test binary again")
	}
	dir := fakeCommand(t)
	stopped := filepath.Join(t.TempDir(), "stopped")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir, "DUCTWORK_TESTDB_FAKE_STOPPED="+stopped)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "dsn=fake://postgres,fake://postgres stopped=false\n") {
		t.Fatalf("helper output:\n%s", out)
	}
	// The helper has exited: its end of the command's standard input is
	// closed, and the command stops.
	WaitFor(t, time.Minute, "the command to stop after the test binary exited", func() bool {
		_, err := os.Stat(stopped)
		return err == nil
	})

	useCommand(t, dir)
	t.Setenv(MySQLEnv, "")
	r, got := call(t, MySQLDSN)
	if got != "" || r.skipped != "" || !strings.Contains(r.failed, MySQLEnv+" is not set and starting a container failed") ||
		!strings.Contains(r.failed, `"error boom"`) {
		t.Fatalf("failing command: returned %q, skipped %q, failed %q", got, r.skipped, r.failed)
	}
}
