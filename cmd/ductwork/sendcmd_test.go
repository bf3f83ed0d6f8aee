package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/testdb"
	"github.com/ductwork-go/ductwork/internal/windowtest"
)

// TestSendCommand: send delivers a named signal with a JSON payload to a
// waiting run, which then completes; bad input (an unknown signal, a
// payload that is not JSON, exclusive targets, a finished run, a missing
// run) is one line and exit 1, and sends nothing.
func TestSendCommand(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *windowtest.Env) {
		c := e.Client(t)
		if err := c.Register(windowtest.Approvals); err != nil {
			t.Fatal(err)
		}
		e.Supervise(t, c)
		run, err := ductwork.Trigger(t.Context(), c, windowtest.Approvals, "invoice-"+e.Kind)
		if err != nil {
			t.Fatal(err)
		}
		id := strconv.FormatInt(run.ID, 10)
		testdb.WaitFor(t, 30*time.Second, "the run to wait for its approval", func() bool {
			r, err := e.Store.Run(t.Context(), run.ID)
			return err == nil && r.Status == backend.RunWaiting
		})

		for _, bad := range []struct {
			args []string
			want string
		}{
			{[]string{"send", id, "nope", "{}"}, "awaits no signal"},
			{[]string{"send", id, "approval", "{ok: yes}"}, "is not JSON"},
			{[]string{"send", id, "approval", "{}", "--key", "k", "--all"}, "exclude each other"},
			{[]string{"send", id}, "want RUN-ID SIGNAL"},
			{[]string{"send", strconv.FormatInt(run.ID+1000, 10), "approval", "{}"}, "run not found"},
		} {
			code, out, errOut := cli(t, e.URL, bad.args...)
			if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, bad.want) || out != "" {
				t.Fatalf("%v: exit %d, stdout %q, stderr %q; want exit 1 and %q", bad.args, code, out, errOut, bad.want)
			}
		}
		if r, _ := e.Store.Run(t.Context(), run.ID); r.Status != backend.RunWaiting {
			t.Fatalf("a refused send changed the run to %s", r.Status)
		}

		code, out, errOut := cli(t, e.URL, "send", id, "approval", `{"ok": true, "by": "ann"}`, "-json")
		var res ductwork.SendResult
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.SignalID == 0 || res.Delivered != 1 {
			t.Fatalf("send: exit %d %q %q", code, out, errOut)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		got, err := run.Wait(ctx)
		if err != nil || got != "invoice-"+e.Kind+" approved by ann" {
			t.Fatalf("run after the signal: %q, %v", got, err)
		}
		if code, _, errOut := cli(t, e.URL, "send", id, "approval", "{}"); code != 1 || !strings.Contains(errOut, "completed") {
			t.Fatalf("send to a completed run: %d %q", code, errOut)
		}
	})
}
