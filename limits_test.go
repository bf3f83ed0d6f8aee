package ductwork_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

func longStepDef(nameLen int) *flow.Definition[int, int] {
	first := step.New("first", func(_ step.Context, n int) (int, error) { return n, nil })
	long := step.New(strings.Repeat("s", nameLen), func(_ step.Context, n int) (int, error) { return n + 1, nil })
	return flow.MustDefine("long-names", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Chain(flow.Start(p, first), long)
	}, flow.Retries(3), flow.Backoff(time.Millisecond, time.Millisecond))
}

// TestRegisterChecksBackendLimits: a step name longer than the backend
// stores is refused at Register with a *LimitError naming the backend, the
// limit and the node, and nothing is registered. MariaDB stores 255 bytes
// (VARBINARY(255)), so 300 is refused there; PostgreSQL refuses above 1024
// (index entry size), SQLite has no limit.
func TestRegisterChecksBackendLimits(t *testing.T) {
	for _, kind := range allBackends {
		t.Run(kind, func(t *testing.T) {
			b, _ := openCrashBackend(t, kind)
			client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			limit := b.Capabilities().Limits.MaxNodeIDBytes
			if kind == "mysql" && limit != 255 {
				t.Fatalf("mysql MaxNodeIDBytes = %d; want 255", limit)
			}
			for _, n := range []int{300, 2000} {
				def := longStepDef(n)
				err := client.Register(def)
				if limit == 0 || n <= limit {
					if err != nil {
						t.Fatalf("Register with a %d-byte step name: %v; want success (limit %d)", n, err, limit)
					}
					continue
				}
				var le *ductwork.LimitError
				if !errors.As(err, &le) || le.Backend != kind || le.Limit != "MaxNodeIDBytes" || le.Node != strings.Repeat("s", n) ||
					le.Pipeline != "long-names" || le.Len != n || le.Max != limit {
					t.Fatalf("Register with a %d-byte step name = %v (%+v); want *LimitError{%s, MaxNodeIDBytes, node, %d > %d}", n, err, le, kind, n, limit)
				}
				if !strings.Contains(err.Error(), kind) || !strings.Contains(err.Error(), "MaxNodeIDBytes") {
					t.Fatalf("message %q does not name the backend and the limit", err)
				}
			}
		})
	}
}

// unlimited hides a backend's declared limits, as a backend that declares
// none would: the definition is registered and the database's refusal comes
// at the commit.
type unlimited struct{ backend.Backend }

func (u unlimited) Capabilities() backend.Capabilities {
	c := u.Backend.Capabilities()
	c.Limits = backend.Limits{}
	return c
}

// TestPermanentCommitErrorHalts: on MariaDB a completion whose next step has
// a 300-byte name is refused by the backend with a permanent error (the
// value does not fit its column). The run halts at once with that error and
// a backend cause; before, the commit was retried for two minutes, then the
// claim released and the step re-run, for ever.
func TestPermanentCommitErrorHalts(t *testing.T) {
	b, _ := openCrashBackend(t, "mysql")
	def := longStepDef(300)
	client, err := ductwork.NewClient(unlimited{b}, &ductwork.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Register(def); err != nil {
		t.Fatal(err)
	}
	startSupervisor(t, client, nil)
	begin := time.Now()
	r, err := ductwork.Trigger(waitCtx(t), client, def, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Wait(waitCtx(t))
	var he *ductwork.HaltedError
	if !errors.As(err, &he) || he.Cause != ductwork.HaltBackend || he.Node != "first" || he.Attempt != 1 {
		t.Fatalf("Wait = %v; want a backend halt at first, attempt 1", err)
	}
	if !backend.IsPermanent(err) || !strings.Contains(he.Reason, "300 bytes long") {
		t.Fatalf("err = %v; want the permanent too-long error", err)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Fatalf("halting took %s; a permanent error must not be retried", d)
	}
	steps, _ := r.Steps(waitCtx(t))
	if len(steps) != 1 || steps[0].Status != backend.JobFailed || steps[0].CrashReruns != 0 {
		t.Fatalf("steps = %+v; want first failed, never re-run", steps)
	}
}

// TestOverlongProcessIDEndsRun: a supervisor whose ProcessID is longer than
// the backend stores gets a permanent error from registering its process,
// and Run returns it at once instead of retrying for ever (MariaDB: 255
// bytes).
func TestOverlongProcessIDEndsRun(t *testing.T) {
	b, _ := openCrashBackend(t, "mysql")
	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := supervisor.New(client, &supervisor.Config{ProcessID: strings.Repeat("p", 300)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(waitCtx(t)) }()
	select {
	case err := <-done:
		if !backend.IsPermanent(err) {
			t.Fatalf("Run = %v; want the permanent error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run kept retrying a registration that can never succeed")
	}
}
