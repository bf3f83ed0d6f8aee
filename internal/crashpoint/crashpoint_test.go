package crashpoint_test

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/ductwork-go/ductwork/internal/crashpoint"
)

const helperEnv = "DUCTWORK_CRASHPOINT_TEST_HELPER"

// TestMain turns the test binary into the helper process when asked: it
// passes two points, and prints a line after each.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		crashpoint.Hit(crashpoint.AfterStepBeforeCommit)
		os.Stdout.WriteString("passed " + crashpoint.AfterStepBeforeCommit + "\n")
		crashpoint.Hit(crashpoint.AfterClaim)
		os.Stdout.WriteString("passed " + crashpoint.AfterClaim + "\n")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(t *testing.T, point string) (string, error) {
	t.Helper()
	if !crashpoint.Compiled {
		t.Skip("crash points are compiled in only with -tags ductwork_crashpoints")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", crashpoint.EnvVar+"="+point)
	out, err := cmd.Output()
	return string(out), err
}

func TestHelperDiesAtItsPoint(t *testing.T) {
	out, err := helper(t, crashpoint.AfterClaim)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("helper: %v, want death by SIGKILL", err)
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want SIGKILL", ee)
	}
	if want := "passed " + crashpoint.AfterStepBeforeCommit + "\n"; out != want {
		t.Fatalf("helper printed %q, want %q: it must pass other points and die at its own", out, want)
	}
}

func TestOtherPointsDoNothing(t *testing.T) {
	for _, point := range []string{"", "no-such-point"} {
		out, err := helper(t, point)
		if err != nil {
			t.Fatalf("%s=%q: helper: %v", crashpoint.EnvVar, point, err)
		}
		want := "passed " + crashpoint.AfterStepBeforeCommit + "\npassed " + crashpoint.AfterClaim + "\n"
		if out != want {
			t.Fatalf("%s=%q: helper printed %q, want %q", crashpoint.EnvVar, point, out, want)
		}
	}
}

// TestNotCompiled: without the build tag, an armed point does nothing.
func TestNotCompiled(t *testing.T) {
	if crashpoint.Compiled {
		t.Skip("built with ductwork_crashpoints")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", crashpoint.EnvVar+"="+crashpoint.AfterClaim)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v: an armed point must do nothing without the build tag", err)
	}
	if want := "passed " + crashpoint.AfterStepBeforeCommit + "\npassed " + crashpoint.AfterClaim + "\n"; string(out) != want {
		t.Fatalf("helper printed %q, want %q", out, want)
	}
}

func TestEnabled(t *testing.T) {
	// This process has no crash point armed (TestMain runs the helper
	// only in children).
	if os.Getenv(crashpoint.EnvVar) == "" && crashpoint.Enabled(crashpoint.AfterClaim) {
		t.Fatal("Enabled without the variable")
	}
}
