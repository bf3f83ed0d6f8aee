package ductworktest_test

import (
	"strings"
	"testing"

	"github.com/ductwork-go/ductwork/ductworktest"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

var shout = flow.MustDefine("shout", func(p *flow.Pipeline[string]) flow.End[string] {
	words := flow.Expand(flow.Start(p, step.New("words", func(_ step.Context, s string) ([]string, error) {
		return strings.Fields(s), nil
	})), step.New("upper", func(_ step.Context, w string) (string, error) { return strings.ToUpper(w), nil }))
	return flow.Collapse(words, step.New("join", func(_ step.Context, ws []string) (string, error) {
		return strings.Join(ws, " "), nil
	}))
}, flow.Retries(1))

// A test of a whole pipeline: run it to completion on an in-memory database
// with a real supervisor, with one crash injected into every "upper" step, and
// look at the output and at each step instance. (TestShout in this file runs
// exactly this.)
func ExampleRun() {
	var t *testing.T // the *testing.T of func TestShout(t *testing.T)
	out, report := ductworktest.Run(t, shout, "hello durable world", ductworktest.Crash("upper", 1))
	if out != "HELLO DURABLE WORLD" {
		t.Errorf("output = %q", out)
	}
	for _, s := range report.Instances("upper") {
		if s.Status != "completed" || s.Attempt != 1 || s.CrashReruns != 1 {
			t.Errorf("upper[%s]: %s, attempt %d, crash re-runs %d", s.Scope, s.Status, s.Attempt, s.CrashReruns)
		}
	}
}

func TestShout(t *testing.T) {
	t.Parallel()
	out, report := ductworktest.Run(t, shout, "hello durable world", ductworktest.Crash("upper", 1))
	if out != "HELLO DURABLE WORLD" {
		t.Errorf("output = %q", out)
	}
	for _, s := range report.Instances("upper") {
		if s.Status != "completed" || s.Attempt != 1 || s.CrashReruns != 1 {
			t.Errorf("upper[%s]: %s, attempt %d, crash re-runs %d", s.Scope, s.Status, s.Attempt, s.CrashReruns)
		}
	}
}
