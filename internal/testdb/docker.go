package testdb

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds building the command, pulling the image and starting
// the server.
const startTimeout = 10 * time.Minute

// dockerSockets lists the sockets where a Docker engine usually listens
// when DOCKER_HOST is unset (a variable, so that a test can point it
// elsewhere).
var dockerSockets = func() []string {
	s := []string{"/var/run/docker.sock"}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		s = append(s, filepath.Join(d, "docker.sock")) // rootless
	}
	if h, err := os.UserHomeDir(); err == nil {
		s = append(s, filepath.Join(h, ".docker", "run", "docker.sock"), filepath.Join(h, ".docker", "desktop", "docker.sock"))
	}
	return s
}

// dockerEngine names where a Docker engine may listen, or returns "" when
// nothing suggests one: DOCKER_HOST is unset and none of dockerSockets
// exists. The command checks that the engine answers.
func dockerEngine() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return "DOCKER_HOST=" + h
	}
	for _, s := range dockerSockets() {
		if fi, err := os.Stat(s); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return s
		}
	}
	return ""
}

// commandDir returns the directory of the command that starts containers
// (a variable, so that a test can put another command there).
var commandDir = func() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	return filepath.Join(filepath.Dir(file), "dbcontainer")
}

// container is a database server started once per test binary by the
// command in ./dbcontainer (a module of its own, with testcontainers-go).
type container struct {
	kind string // the command's argument: postgres or mariadb

	once sync.Once
	dsn  string
	skip string // why no server can be started, when none can
	err  error
	cmd  *exec.Cmd      // kept with its standard input open for the binary's life
	in   io.WriteCloser // closed by the exit of the binary: the command stops the container
}

// get returns the DSN of the server, starting it on first use. It skips t,
// naming envVar, when no Docker engine is reachable.
func (c *container) get(t testing.TB, envVar string) string {
	t.Helper()
	c.once.Do(c.start)
	if c.skip != "" {
		t.Skipf("%s is not set and no Docker engine is reachable to start one (%s); set %s to run this test",
			envVar, c.skip, envVar)
	}
	if c.err != nil {
		t.Fatalf("%s is not set and starting a container failed: %v", envVar, c.err)
	}
	return c.dsn
}

// start runs `go run . <kind>` in the command's directory and reads its
// first line.
func (c *container) start() {
	engine := dockerEngine()
	if engine == "" {
		c.skip = "DOCKER_HOST is unset and no socket at " + strings.Join(dockerSockets(), ", ")
		return
	}
	dir := commandDir()
	if fi, err := os.Stat(dir); dir == "" || err != nil || !fi.IsDir() {
		c.skip = "the command internal/testdb/dbcontainer is not on disk to start a container on " + engine
		return
	}
	cmd := exec.Command("go", "run", ".", c.kind)
	cmd.Dir = dir
	var stderr tail
	cmd.Stderr = &stderr
	cmd.WaitDelay = 10 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		c.err = err
		return
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.err = err
		return
	}
	if err := cmd.Start(); err != nil {
		c.err = fmt.Errorf("go run in %s: %w", dir, err)
		return
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(l)
		_, _ = io.Copy(io.Discard, out)
	}()
	var first string
	select {
	case first = <-line:
	case <-time.After(startTimeout):
		_ = cmd.Process.Kill()
		first = "error no DSN after " + startTimeout.String()
	}
	verb, rest, _ := strings.Cut(first, " ")
	switch verb {
	case "dsn":
		c.dsn, c.cmd, c.in = rest, cmd, in
		return
	case "unavailable":
		c.skip = rest
	}
	_ = in.Close()
	waitErr := cmd.Wait()
	if c.skip == "" {
		if waitErr == nil {
			waitErr = errors.New("exited")
		}
		c.err = fmt.Errorf("go run . %s in %s: %q (%w)\n%s", c.kind, dir, first, waitErr, stderr.String())
	}
}

// tail keeps the last few kilobytes written to it.
type tail struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *tail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if n := w.buf.Len() - 8<<10; n > 0 {
		w.buf.Next(n)
	}
	return len(p), nil
}

func (w *tail) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// randomName returns prefix followed by 16 random hex digits: a valid,
// unquoted identifier in PostgreSQL and MySQL.
func randomName(t testing.TB, prefix string) string {
	t.Helper()
	var buf [8]byte
	if _, err := rand.Read(buf[:]); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return prefix + hex.EncodeToString(buf[:])
}
