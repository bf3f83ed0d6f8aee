package flow_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
)

type decision struct {
	OK bool `json:"ok"`
}

var approval = flow.Signal[decision]("approval")

// TestAwaitAndSleepShape: awaits and sleeps are nodes of their own kinds, on
// their predecessor's branch; the stored shape names the signal, its payload
// type, the timeout, the key and the sleeps, and lists the signals awaited.
func TestAwaitAndSleepShape(t *testing.T) {
	d := flow.MustDefine("waits", func(p *flow.Pipeline[int]) flow.End[int] {
		n := flow.Start(p, st[int, int]("a"))
		s := flow.Sleep(n, time.Minute)
		u := flow.SleepUntil(s, func(int) time.Time { return time.Time{} })
		a := flow.AwaitWith(u, approval, flow.AwaitOptions[int]{Timeout: time.Hour, Key: func(int) string { return "k" }})
		return flow.Chain(a, st[flow.Awaited[int, decision], int]("b"))
	})
	sd, err := d.Erased().StoredShape()
	if err != nil {
		t.Fatal(err)
	}
	var s backend.Shape
	if err := json.Unmarshal(sd.Shape, &s); err != nil {
		t.Fatal(err)
	}
	byID := map[string]backend.ShapeNode{}
	for _, n := range s.Nodes {
		byID[n.ID] = n
	}
	sl, un, aw := byID["sleep:a"], byID["sleep-until:sleep:a"], byID["await:approval"]
	if sl.Kind != "sleep" || sl.Wait == nil || sl.Wait.Sleep != time.Minute || len(sl.Preds) != 1 || sl.Preds[0] != "a" {
		t.Errorf("sleep node %+v (wait %+v)", sl, sl.Wait)
	}
	if un.Kind != "sleep" || un.Wait == nil || !un.Wait.Until {
		t.Errorf("sleep-until node %+v", un)
	}
	if aw.Kind != "await" || aw.Wait == nil || aw.Wait.Signal != "approval" || aw.Wait.Timeout != time.Hour || !aw.Wait.Keyed ||
		aw.Wait.SignalType != "flow_test.decision" {
		t.Errorf("await node %+v (wait %+v)", aw, aw.Wait)
	}
	if len(s.Signals) != 1 || s.Signals[0] != (backend.ShapeSignal{Name: "approval", Type: "flow_test.decision"}) {
		t.Errorf("shape signals %+v", s.Signals)
	}
}

// TestWaitsEnterTheFingerprint: a different timeout, signal or sleep is a
// different definition; a definition without waits keeps its fingerprint.
func TestWaitsEnterTheFingerprint(t *testing.T) {
	other := flow.Signal[decision]("other")
	mk := func(sig flow.SignalDef[decision], timeout time.Duration) string {
		return flow.MustDefine("fp", func(p *flow.Pipeline[int]) flow.End[flow.Awaited[int, decision]] {
			return flow.Await(flow.Start(p, st[int, int]("a")), sig, timeout)
		}).Fingerprint()
	}
	a, b, c := mk(approval, time.Hour), mk(approval, 2*time.Hour), mk(other, time.Hour)
	if a == b || a == c || b == c {
		t.Errorf("fingerprints %s %s %s; want all different", a, b, c)
	}
	sleep := func(d time.Duration) string {
		return flow.MustDefine("fp", func(p *flow.Pipeline[int]) flow.End[int] {
			return flow.Sleep(flow.Start(p, st[int, int]("a")), d)
		}).Fingerprint()
	}
	if sleep(time.Second) == sleep(time.Minute) {
		t.Error("sleeps of different durations share a fingerprint")
	}
}

// TestWaitDefinitionErrors: an unnamed signal, a negative timeout or sleep,
// a nil SleepUntil function and two awaits of one signal without names are
// refused by Define with the rule.
func TestWaitDefinitionErrors(t *testing.T) {
	cases := map[string]struct {
		fn   func(p *flow.Pipeline[int]) flow.End[int]
		rule string
	}{
		"unnamed signal": {func(p *flow.Pipeline[int]) flow.End[int] {
			a := flow.Await(flow.Start(p, st[int, int]("a")), flow.Signal[decision](""), 0)
			return flow.Chain(a, st[flow.Awaited[int, decision], int]("b"))
		}, flow.RuleSignalName},
		"negative timeout": {func(p *flow.Pipeline[int]) flow.End[int] {
			a := flow.Await(flow.Start(p, st[int, int]("a")), approval, -time.Second)
			return flow.Chain(a, st[flow.Awaited[int, decision], int]("b"))
		}, flow.RuleNegativeWait},
		"negative sleep": {func(p *flow.Pipeline[int]) flow.End[int] {
			return flow.Sleep(flow.Start(p, st[int, int]("a")), -time.Second)
		}, flow.RuleNegativeWait},
		"nil until": {func(p *flow.Pipeline[int]) flow.End[int] {
			return flow.SleepUntil(flow.Start(p, st[int, int]("a")), nil)
		}, flow.RuleNilKeyFunc},
		"two unnamed awaits": {func(p *flow.Pipeline[int]) flow.End[int] {
			a := flow.Await(flow.Start(p, st[int, int]("a")), approval, 0)
			b := flow.Await(flow.Chain(a, st[flow.Awaited[int, decision], int]("b")), approval, 0)
			return flow.Chain(b, st[flow.Awaited[int, decision], int]("c"))
		}, flow.RuleDuplicateName},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := flow.Define("bad", c.fn)
			var de *flow.DefinitionError
			if !errors.As(err, &de) || de.Rule != c.rule {
				t.Fatalf("Define = %v; want rule %q", err, c.rule)
			}
		})
	}
}

// TestAwaitedOutcome: Outcome names what happened, for Divert.
func TestAwaitedOutcome(t *testing.T) {
	if got := (flow.Awaited[int, decision]{}).Outcome(); got != flow.Received {
		t.Errorf("Outcome() = %q; want %q", got, flow.Received)
	}
	if got := (flow.Awaited[int, decision]{TimedOut: true}).Outcome(); got != flow.TimedOut {
		t.Errorf("Outcome() = %q; want %q", got, flow.TimedOut)
	}
}

// TestDivertedAwaitWaits: a definition whose await is diverted on (the
// usual way to handle its timeout) still settles its runs' status.
func TestDivertedAwaitWaits(t *testing.T) {
	d := flow.MustDefine("diverted", func(p *flow.Pipeline[int]) flow.End[int] {
		a := flow.Await(flow.Start(p, st[int, int]("a")), approval, time.Hour)
		dv := flow.Divert(a, flow.Awaited[int, decision].Outcome)
		return flow.Converge(st[int, int]("c"),
			flow.Case(dv, flow.Received, st[flow.Awaited[int, decision], int]("ok")),
			flow.Otherwise(dv, st[flow.Awaited[int, decision], int]("late")))
	})
	if !d.Erased().Waits {
		t.Fatal("Graph.Waits is false for a definition with a diverted await")
	}
}
