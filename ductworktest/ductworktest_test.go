package ductworktest_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/ductworktest"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

// sumOfDoubles: split "1 2 3" into numbers, double each on its own branch,
// add them up. Retries are fast so that fault tests take milliseconds.
func sumOfDoubles(t *testing.T, retries int) *flow.Definition[string, int] {
	t.Helper()
	split := step.New("split", func(_ step.Context, s string) ([]int, error) {
		var out []int
		for _, f := range strings.Fields(s) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return nil, step.Permanent(err)
			}
			out = append(out, n)
		}
		return out, nil
	})
	double := step.New("double", func(_ step.Context, n int) (int, error) { return 2 * n, nil })
	sum := step.New("sum", func(_ step.Context, ns []int) (int, error) {
		total := 0
		for _, n := range ns {
			total += n
		}
		return total, nil
	})
	return flow.MustDefine("sum-of-doubles-"+t.Name(), func(p *flow.Pipeline[string]) flow.End[int] {
		return flow.Collapse(flow.Expand(flow.Start(p, split), double), sum)
	}, flow.Retries(retries), flow.Backoff(time.Millisecond, 2*time.Millisecond))
}

func TestRunReturnsOutputAndEveryStep(t *testing.T) {
	t.Parallel()
	out, report := ductworktest.Run(t, sumOfDoubles(t, 0), "1 2 3")
	if out != 12 {
		t.Fatalf("output = %d, want 12", out)
	}
	if report.Status != ductwork.RunCompleted {
		t.Fatalf("status = %s, want completed", report.Status)
	}
	if n := len(report.Instances("double")); n != 3 {
		t.Fatalf("double ran as %d instances, want 3\n%s", n, report)
	}
	for i, want := range []int{2, 4, 6} {
		got, err := ductworktest.Output[int](report, "double", strconv.Itoa(i))
		if err != nil || got != want {
			t.Errorf("double[%d] output = %d, %v; want %d", i, got, err, want)
		}
	}
	for _, s := range report.Steps {
		if s.Status != "completed" || s.Attempt != 1 || s.CrashReruns != 0 {
			t.Errorf("step %s[%s]: status %s attempt %d crashes %d; want completed, 1, 0", s.Node, s.Scope, s.Status, s.Attempt, s.CrashReruns)
		}
	}
	if _, err := ductworktest.Output[int](report, "double", "7"); err == nil {
		t.Error("Output of a missing instance: no error")
	}
}

func TestFailSpendsRetriesThenSucceeds(t *testing.T) {
	t.Parallel()
	out, report := ductworktest.Run(t, sumOfDoubles(t, 2), "1 2", ductworktest.Fail("double", 2))
	if out != 6 {
		t.Fatalf("output = %d, want 6", out)
	}
	for _, s := range report.Instances("double") {
		if s.Attempt != 3 {
			t.Errorf("double[%s] attempt = %d, want 3 (two injected failures, then success)", s.Scope, s.Attempt)
		}
	}
	if s, _ := report.Step("split", ""); s.Attempt != 1 {
		t.Errorf("split attempt = %d, want 1 (faults are by step name)", s.Attempt)
	}
}

func TestFailAlwaysHalts(t *testing.T) {
	t.Parallel()
	herr, report := ductworktest.Halt(t, sumOfDoubles(t, 1), "5", ductworktest.Fail("double", ductworktest.Always))
	if !errors.Is(herr, ductworktest.ErrInjected) || herr.Cause != ductwork.HaltRetriesExhausted || herr.Node != "double" || herr.Attempt != 2 {
		t.Fatalf("halt = %v (cause %s, node %s, attempt %d); want the injected failure at double, retries exhausted after 2 attempts", herr, herr.Cause, herr.Node, herr.Attempt)
	}
	s, ok := report.Step("double", "0")
	if !ok || s.Status != "failed" || s.Attempt != 2 {
		t.Fatalf("double[0] = %+v; want failed after 2 attempts\n%s", s, report)
	}
	if report.Status != ductwork.RunHalted {
		t.Fatalf("status = %s, want halted", report.Status)
	}
}

func TestPanicHaltsWithThePanic(t *testing.T) {
	t.Parallel()
	herr, _ := ductworktest.Halt(t, sumOfDoubles(t, 0), "5", ductworktest.Panic("sum", ductworktest.Always))
	var pe *ductwork.PanicError
	if !errors.As(herr, &pe) || herr.Cause != ductwork.HaltPanic || !strings.Contains(herr.Error(), "injected panic") || herr.Stack == "" {
		t.Fatalf("halt = %v (cause %s); want the injected panic, with its stack", herr, herr.Cause)
	}
}

func TestCrashRerunsWithoutSpendingRetries(t *testing.T) {
	t.Parallel()
	// No retry budget at all: only crash re-runs can get the step through.
	out, report := ductworktest.Run(t, sumOfDoubles(t, 0), "1 2", ductworktest.Crash("double", 2))
	if out != 6 {
		t.Fatalf("output = %d, want 6", out)
	}
	for _, s := range report.Instances("double") {
		if s.Attempt != 1 || s.CrashReruns != 2 {
			t.Errorf("double[%s]: attempt %d, crash re-runs %d; want 1 and 2", s.Scope, s.Attempt, s.CrashReruns)
		}
	}
}

func TestDelayRespectsTheStepContext(t *testing.T) {
	t.Parallel()
	slow := step.New("slow", func(_ step.Context, n int) (int, error) { return n, nil }, step.Timeout(20*time.Millisecond))
	def := flow.MustDefine("delay-"+t.Name(), func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Start(p, slow)
	}, flow.Retries(0))
	herr, _ := ductworktest.Halt(t, def, 1, ductworktest.Delay("slow", time.Minute))
	if !errors.Is(herr, context.DeadlineExceeded) || herr.Cause != ductwork.HaltTimeout {
		t.Fatalf("halt = %v (cause %s), want the step's timeout", herr, herr.Cause)
	}
}

func TestReviveContinuesWhereTheFaultsLeftOff(t *testing.T) {
	t.Parallel()
	env := ductworktest.New(t, ductworktest.Fail("double", 2))
	def := sumOfDoubles(t, 0)
	run := ductworktest.Start(env, def, "4")
	for i := 1; i <= 2; i++ {
		_, err := ductworktest.Wait(env, run)
		var herr *ductwork.HaltedError
		if !errors.As(err, &herr) {
			t.Fatalf("round %d: err = %v, want a halt", i, err)
		}
		env.Revive(run.ID)
	}
	out, err := ductworktest.Wait(env, run)
	if err != nil || out != 8 {
		t.Fatalf("after two revives: %d, %v; want 8\n%s", out, err, env.Report(run.ID))
	}
}

func TestStepContext(t *testing.T) {
	t.Parallel()
	sc := ductworktest.NewContext(t, ductworktest.Attempt(3), ductworktest.IdempotencyKey("k-1"),
		ductworktest.Value("tenant", "acme"))
	greet := step.New("greet", func(ctx step.Context, name string) (string, error) {
		var tenant string
		if ok, err := ctx.Get("tenant", &tenant); !ok || err != nil {
			return "", errors.New("no tenant")
		}
		if err := ctx.Set("greeted", name); err != nil {
			return "", err
		}
		ctx.Logger().Info("greeting", slog.String("key", ctx.IdempotencyKey()), slog.Int("attempt", ctx.Attempt()))
		return tenant + ":" + name, nil
	})
	out, err := greet.Execute(sc, "ada")
	if err != nil || out != "acme:ada" {
		t.Fatalf("Execute = %q, %v", out, err)
	}
	if err := sc.Set("greeted", "again"); !errors.Is(err, step.ErrValueExists) {
		t.Errorf("second Set: err = %v, want ErrValueExists (keys are write-once)", err)
	}
	if err := sc.Set("greeted", "again", step.Overwrite); err != nil {
		t.Errorf("Set with Overwrite: %v", err)
	}
	var n int
	if _, err := sc.Get("tenant", &n); err == nil || !strings.Contains(err.Error(), `"tenant"`) {
		t.Errorf("Get into the wrong type: err = %v, want a decode error naming the key", err)
	}
	logs := sc.Logs()
	if len(logs) != 1 || logs[0].Message != "greeting" {
		t.Fatalf("logs = %v, want one greeting", logs)
	}
	attrs := map[string]string{}
	logs[0].Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	if attrs["key"] != "k-1" || attrs["attempt"] != "3" {
		t.Errorf("logged attrs = %v, want key k-1 and attempt 3", attrs)
	}
}
