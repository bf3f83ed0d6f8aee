package flow

import (
	"fmt"
	"reflect"
	"time"

	"github.com/ductwork-go/ductwork/internal/graph"
	"github.com/ductwork-go/ductwork/step"
)

// SignalDef is a signal declared once with its payload type P, by Signal.
// A branch waits for it with Await; ductwork.Send delivers it, and the
// compiler checks the payload's type at both ends.
type SignalDef[P any] struct{ name string }

// Signal declares a signal named name whose payload is a P:
//
//	var Approval = flow.Signal[Decision]("manager-approval")
//
// The name is the signal's stable identity (stored with each signal sent and
// with the definitions that await it); it must not be empty.
func Signal[P any](name string) SignalDef[P] { return SignalDef[P]{name: name} }

// Name returns the signal's name.
func (s SignalDef[P]) Name() string { return s.name }

// PayloadType returns the Go type of the signal's payload.
func (s SignalDef[P]) PayloadType() reflect.Type { return reflect.TypeFor[P]() }

// Outcomes of an await, as Awaited.Outcome returns them (for Divert).
const (
	// Received: the signal was delivered before the timeout.
	Received = "received"
	// TimedOut: the timeout passed first; Payload is its zero value.
	TimedOut = "timed-out"
)

// Awaited is the value of an await node: the value that reached the await
// and the signal's payload, or TimedOut set when the await's timeout passed
// first (by the database's clock).
type Awaited[A, P any] struct {
	Input    A    `json:"input"`
	Payload  P    `json:"payload"`
	TimedOut bool `json:"timed_out,omitempty"`
}

// Outcome returns Received or TimedOut. Divert on it to take another path
// after a timeout:
//
//	d := flow.Divert(approved, flow.Awaited[Order, Decision].Outcome)
func (a Awaited[A, P]) Outcome() string {
	if a.TimedOut {
		return TimedOut
	}
	return Received
}

// AwaitOptions configure an await (AwaitWith).
type AwaitOptions[A any] struct {
	// Name is the await node's ID (its step name); the default is
	// "await:" followed by the signal's name. Two awaits of one signal in a
	// pipeline need distinct names.
	Name string
	// Timeout bounds the wait; 0 waits until a signal arrives.
	Timeout time.Duration
	// Key, when set, computes the await's key from the value that reaches
	// it: a signal sent to a key (ductwork.ToKey) reaches only the awaits
	// with that key, so a signal can pick one branch of an expansion by
	// something the user knows (an order ID) rather than by its index.
	Key func(A) string
}

// Await waits, on n's branch, for the signal sig, for at most timeout (0:
// without limit). The branch holds no worker and no claim meanwhile, and the
// run is waiting when nothing else of it runs. The node's value carries n's
// output and the payload, or TimedOut. A signal sent before the branch
// reaches the await is kept and consumed here; each signal is consumed by
// one await (unless sent to all, see ductwork.ToAll).
func Await[A, P any](n Node[A], sig SignalDef[P], timeout time.Duration) Node[Awaited[A, P]] {
	return AwaitWith(n, sig, AwaitOptions[A]{Timeout: timeout})
}

// AwaitWith is Await with options: a node name, a timeout, a key.
func AwaitWith[A, P any](n Node[A], sig SignalDef[P], opts AwaitOptions[A]) Node[Awaited[A, P]] {
	name := opts.Name
	if name == "" {
		name = "await:" + sig.name
	}
	si := stepInfo{name: name, in: reflect.TypeFor[A](), out: reflect.TypeFor[Awaited[A, P]](), decode: decodeAs[A]}
	b := builderOf(n.n)
	if b == nil || !b.check(si, n.n) || !b.free(n.n, si.name) {
		return Node[Awaited[A, P]]{}
	}
	if sig.name == "" {
		b.fail(b.errf(n.n, RuleSignalName, "awaited after it"))
		return Node[Awaited[A, P]]{}
	}
	if opts.Timeout < 0 {
		b.fail(&DefinitionError{Pipeline: b.name, Node: name, Rule: RuleNegativeWait, Detail: fmt.Sprintf("timeout %v", opts.Timeout)})
		return Node[Awaited[A, P]]{}
	}
	if err := b.codec.Check(reflect.TypeFor[P]()); err != nil {
		b.fail(&DefinitionError{Pipeline: b.name, Node: name, Rule: RuleNotEncodable, Detail: "signal payload: " + err.Error()})
		return Node[Awaited[A, P]]{}
	}
	signal := sig.name
	si.call = func(ctx step.Context, in any) (any, error) {
		out := Awaited[A, P]{}
		out.Input, _ = in.(A)
		r, ok := ctx.(graph.SignalReceiver)
		if !ok {
			return nil, step.Permanent(fmt.Errorf("flow: await of %q ran without a signal receiver", signal))
		}
		delivered, err := r.ReceiveSignal(&out.Payload)
		if err != nil {
			return nil, err
		}
		out.TimedOut = !delivered
		return out, nil
	}
	w := &graph.Wait{Signal: sig.name, SignalType: reflect.TypeFor[P](), Timeout: opts.Timeout}
	if key := opts.Key; key != nil {
		w.Key = func(in any) string {
			v, _ := in.(A)
			return key(v)
		}
	}
	x := b.add(si, graph.KindAwait, n.n.frames, n.n)
	x.g.Wait = w
	return Node[Awaited[A, P]]{x}
}

// Sleep waits d on n's branch, then hands n's output on unchanged. The
// branch holds no worker and no claim meanwhile (the run is waiting when
// nothing else of it runs), and it resumes within the poll interval after
// the due time, decided by the database's clock, across restarts. The node
// is named "sleep:" followed by n's ID.
func Sleep[A any](n Node[A], d time.Duration) Node[A] {
	b := builderOf(n.n)
	if b == nil {
		return Node[A]{}
	}
	if d < 0 {
		b.fail(b.errf(n.n, RuleNegativeWait, "sleep of %v after it", d))
		return Node[A]{}
	}
	return sleep(n, "sleep:", &graph.Wait{Sleep: d})
}

// SleepUntil waits on n's branch until the time until computes from n's
// output (a time already past, or the zero time, does not wait), then hands
// the output on unchanged. As Sleep, it holds nothing while it waits; the
// time is compared with the database's clock. The node is named
// "sleep-until:" followed by n's ID.
func SleepUntil[A any](n Node[A], until func(A) time.Time) Node[A] {
	b := builderOf(n.n)
	if b == nil {
		return Node[A]{}
	}
	if until == nil {
		b.fail(b.errf(n.n, RuleNilKeyFunc, "SleepUntil after it"))
		return Node[A]{}
	}
	return sleep(n, "sleep-until:", &graph.Wait{Until: func(in any) time.Time {
		v, _ := in.(A)
		return until(v)
	}})
}

func sleep[A any](n Node[A], prefix string, w *graph.Wait) Node[A] {
	b := builderOf(n.n)
	name := prefix + n.n.g.ID
	si := stepInfo{name: name, in: reflect.TypeFor[A](), out: reflect.TypeFor[A](), decode: decodeAs[A],
		call: func(_ step.Context, in any) (any, error) { return in, nil }}
	if !b.check(si, n.n) || !b.free(n.n, si.name) {
		return Node[A]{}
	}
	x := b.add(si, graph.KindSleep, n.n.frames, n.n)
	x.g.Wait = w
	return Node[A]{x}
}

func decodeAs[A any](c step.Codec, input []byte, _ [][]byte) (any, error) {
	var v A
	if err := c.Unmarshal(input, &v); err != nil {
		return nil, err
	}
	return v, nil
}
