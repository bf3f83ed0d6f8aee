package leakcheck_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/internal/leakcheck"
)

const helperEnv = "DUCTWORK_LEAKCHECK_HELPER"

// TestMain checks this package's own tests with Main. As a helper process
// (helperEnv set) it runs TestHelper under Main with a short wait instead.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		leakcheck.Main(m, leakcheck.Wait(100*time.Millisecond))
	}
	leakcheck.Main(m)
}

// blocked is the leaked goroutine of these tests: it waits on release and
// then closes done.
//
//go:noinline
func blocked(release <-chan struct{}, done chan<- struct{}) {
	<-release
	close(done)
}

const blockedName = "github.com/ductwork-go/ductwork/internal/leakcheck_test.blocked"

// leak starts blocked and returns the function that ends it and waits
// until it has returned.
func leak() (end func()) {
	release, done := make(chan struct{}), make(chan struct{})
	go blocked(release, done)
	return func() { close(release); <-done }
}

func TestFindCatchesALeak(t *testing.T) {
	end := leak()
	err := leakcheck.Find(leakcheck.Wait(50 * time.Millisecond))
	end()
	if err == nil {
		t.Fatal("Find returned nil with a goroutine blocked on a channel")
	}
	if msg := err.Error(); !strings.Contains(msg, "[chan receive]") || !strings.Contains(msg, blockedName+" on top") {
		t.Fatalf("the error does not name the leaked goroutine:\n%s", msg)
	}
	if err := leakcheck.Find(); err != nil {
		t.Fatalf("after the goroutine ended: %v", err)
	}
}

func TestIgnoreTopFunction(t *testing.T) {
	end := leak()
	defer end()
	// Polls until the new goroutine has parked in blocked.
	if err := leakcheck.Find(leakcheck.IgnoreTopFunction(blockedName)); err != nil {
		t.Fatalf("ignored by its top function, still reported: %v", err)
	}
	// Only the exact name on top: not a prefix, not a function further down.
	for _, other := range []string{
		"github.com/ductwork-go/ductwork/internal/leakcheck_test.block",
		"github.com/ductwork-go/ductwork/internal/leakcheck_test.leak",
		"runtime.goexit",
	} {
		if err := leakcheck.Find(leakcheck.Wait(0), leakcheck.IgnoreTopFunction(other)); err == nil {
			t.Fatalf("ignoring %s hid a goroutine with %s on top", other, blockedName)
		}
	}
}

// TestFindWaitsForEndingGoroutines: a goroutine that ends during the wait
// is not a leak.
func TestFindWaitsForEndingGoroutines(t *testing.T) {
	end := leak()
	time.AfterFunc(30*time.Millisecond, end)
	if err := leakcheck.Find(leakcheck.Wait(10 * time.Second)); err != nil {
		t.Fatalf("a goroutine that ended within the wait was reported: %v", err)
	}
}

// TestHelper runs only in the helper process: it leaks a goroutine when
// asked to.
func TestHelper(t *testing.T) {
	if os.Getenv(helperEnv) == "leak" {
		leak() // never ended
	}
}

// TestMainExitStatus runs this binary as a helper under Main: a binary
// whose passing tests leak a goroutine exits 1 and names it; one that
// leaks nothing exits 0.
func TestMainExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the test binary again")
	}
	run := func(mode string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelper$")
		cmd.Env = append(os.Environ(), helperEnv+"="+mode)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("leak")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("leaking helper: %v, want exit status 1\n%s", err, out)
	}
	if !strings.Contains(out, "leakcheck: the tests passed, but 1 unexpected goroutine(s)") || !strings.Contains(out, blockedName+" on top") {
		t.Fatalf("leaking helper's output does not report the goroutine:\n%s", out)
	}
	if out, err := run("clean"); err != nil {
		t.Fatalf("clean helper: %v\n%s", err, out)
	}
}
