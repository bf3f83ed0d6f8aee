package testdb

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
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
