// Package graph holds the erased, immutable form of a pipeline definition and
// the pure advancement logic: given a node that finished and its output, the
// plan of what follows. It does no I/O.
package graph

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/step"
)

// Kind is how a node is reached from its predecessor(s).
type Kind int

// Node kinds.
const (
	KindStart    Kind = iota + 1 // first step of the pipeline
	KindChain                    // one predecessor, same branch
	KindExpand                   // one job per element of the predecessor's slice output
	KindCollapse                 // join of an expansion, inputs in index order
	KindDivide                   // one branch of a divide: same input as its siblings
	KindCombine                  // join of a divide's branches, inputs in branch order
	KindCase                     // a case (or the otherwise) of a divert
	KindConverge                 // the diverted branch's output, whichever it was
	KindSleep                    // one predecessor, same branch: waits until a due time, then hands the value on
	KindAwait                    // one predecessor, same branch: waits for a signal (or its timeout)
)

var kindNames = map[Kind]string{
	KindStart: "start", KindChain: "chain", KindExpand: "expand", KindCollapse: "collapse",
	KindDivide: "divide", KindCombine: "combine", KindCase: "case", KindConverge: "converge",
	KindSleep: "sleep", KindAwait: "await",
}

func (k Kind) String() string { return kindNames[k] }

// Node is one step of a definition.
type Node struct {
	ID    string // the step name; unique in the pipeline
	Pos   int    // order of definition
	Kind  Kind
	Preds []*Node
	// Succs are the nodes that take this node's output (filled by Finish).
	Succs []*Node

	InType, OutType reflect.Type
	Options         step.Options
	// TxKind is set for a transactional step (step.Transactional): the
	// backend kind whose completion transaction it runs in.
	TxKind string

	// Branch is the divide branch index (KindDivide) or the case key (KindCase).
	Branch   int
	CaseKey  string
	Fallback bool // KindCase: this is the Otherwise branch

	// Divert, when set, routes this node's output to one of its cases.
	Divert *Divert
	// Wait is set for KindSleep and KindAwait nodes.
	Wait *Wait

	// Join is the join node (collapse or combine) that closes the expansion or
	// divide opened towards this node's successors (Expand and Divide children).
	// It is nil when every branch is detached; a Combine's predecessors are
	// the branches it takes.
	Join *Node

	// Detached marks the last step of a detached branch: nothing takes its
	// output.
	Detached bool
	// Loose marks a node whose output never reaches the end node (it lies on
	// a detached branch, or after the end node). Each pending instance of a
	// loose node, and each open join at one, is outstanding detached work the
	// run waits for before it completes.
	Loose bool

	// Decode turns the stored input (or, for joins, the arrivals) into the
	// step's typed input, boxed.
	Decode func(c step.Codec, input []byte, parts [][]byte) (any, error)
	// Call executes the step on a decoded input.
	Call func(ctx step.Context, in any) (any, error)
	// Split (KindExpand) encodes each element of the predecessor's slice output.
	Split func(c step.Codec, out any) ([][]byte, error)
}

// Wait is what a sleep or await node waits for.
type Wait struct {
	// Sleep (KindSleep) is how long the branch sleeps; Until, when set,
	// computes the due time from the node's input instead.
	Sleep time.Duration
	Until func(in any) time.Time
	// Signal (KindAwait) is the awaited signal's name and SignalType its
	// payload type; Timeout is 0 for none.
	Signal     string
	SignalType reflect.Type
	Timeout    time.Duration
	// Key, when set, computes the await's key from its input (signals sent
	// to a key reach only the awaits with that key).
	Key func(in any) string
}

// SignalReceiver is implemented by the step.Context the engine hands an
// await node's Call: it decodes the signal delivered to the await into v
// and reports whether one was (false: the await timed out).
type SignalReceiver interface {
	ReceiveSignal(v any) (delivered bool, err error)
}

// Divert routes a node's output by key.
type Divert struct {
	Key       func(out any) string
	Cases     map[string]*Node
	Otherwise *Node
}

// Graph is a finished, validated definition.
type Graph struct {
	Pipeline    string
	Fingerprint string
	// Version is the user's mark of a code change (flow.Version); it enters
	// the fingerprint when set.
	Version string
	Codec   step.Codec
	Nodes   []*Node
	ByID    map[string]*Node
	Start   *Node
	End     *Node
	// Retries and backoff defaults for steps that set none.
	Retries    int
	Backoff    time.Duration
	MaxBackoff time.Duration
	MaxFanOut  int
	// MaxCrashes is the crash budget of steps that set none: a step
	// instance claimed after more crash re-runs than this halts the run.
	// Negative means no budget.
	MaxCrashes int
	InType     reflect.Type
	OutType    reflect.Type
	// Detaches is true when some branch ends detached; only then do plans
	// count outstanding work (Plan.Detached).
	Detaches bool
	// Waits is true when the definition sleeps or awaits; only then do plans
	// settle the run's status (Plan.Settle).
	Waits bool
	// OnHalt runs at most once per halt, after the halt is committed.
	OnHalt func(ctx context.Context, h Halt)
}

// Halt describes the failure that halted a run.
type Halt struct {
	RunID   int64
	Node    string
	Scope   string
	Cause   backend.HaltCause
	Attempt int
	// Reason is the stored reason (the error's message, without stack).
	Reason string
	// Err is the failure, as this process saw it.
	Err error
}

// Ref names the definition version.
func (g *Graph) Ref() backend.DefinitionRef {
	return backend.DefinitionRef{Pipeline: g.Pipeline, Fingerprint: g.Fingerprint}
}

// ComputeFingerprint derives the fingerprint from the definition's shape:
// node IDs, kinds, positions, edges, types and divert keys, and from Version
// when it is set. It cannot see the code of steps or key functions.
func (g *Graph) ComputeFingerprint() string {
	var b strings.Builder
	b.WriteString(g.Pipeline)
	if g.Version != "" {
		// Only when set, so that definitions without a version keep the
		// fingerprint they had before versions existed.
		fmt.Fprintf(&b, "|version:%q", g.Version)
	}
	for _, n := range g.Nodes {
		fmt.Fprintf(&b, "|%d:%s:%s:%v->%v:b%d:k%q:f%t", n.Pos, n.ID, n.Kind, n.InType, n.OutType, n.Branch, n.CaseKey, n.Fallback)
		for _, p := range n.Preds {
			b.WriteString("<" + p.ID)
		}
		if n.Divert != nil {
			b.WriteString("/divert")
		}
		if n.Detached {
			// Only detached nodes add to the text, so the fingerprints of
			// definitions without Detach are what they always were.
			b.WriteString("/detached")
		}
		if w := n.Wait; w != nil {
			// Likewise only waits add their own text.
			fmt.Fprintf(&b, "/wait:%q:%v:%v:%t:%t:%v", w.Signal, w.SignalType, w.Timeout, w.Key != nil, w.Until != nil, w.Sleep)
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:8])
}

// ChildScope is the scope of element i of an expansion opened at scope s.
func ChildScope(s string, i int) string {
	if s == "" {
		return strconv.Itoa(i)
	}
	return s + "." + strconv.Itoa(i)
}

// ParentScope splits a child scope into its parent and its index.
func ParentScope(s string) (string, int, error) {
	i := strings.LastIndexByte(s, '.')
	parent, last := "", s
	if i >= 0 {
		parent, last = s[:i], s[i+1:]
	}
	n, err := strconv.Atoi(last)
	if err != nil {
		return "", 0, fmt.Errorf("scope %q is not inside an expansion", s)
	}
	return parent, n, nil
}

// Carrier holds the erased graph inside a typed definition. flow.Definition
// embeds it under an unexported name, so that package ductwork can reach the
// graph (Erased) while the graph stays out of the public API's documentation.
type Carrier struct {
	G *Graph
}

// Erased returns the definition's erased graph.
func (c Carrier) Erased() *Graph { return c.G }

// The errors a plan or an execution returns are defined in the public package
// ductworktype, so that a program can name them.
type (
	FanOutError          = ductworktype.FanOutError
	PayloadTooLargeError = ductworktype.PayloadTooLargeError
	DecodeError          = ductworktype.DecodeError
	CrashBudgetError     = ductworktype.CrashBudgetError
	EncodeError          = ductworktype.EncodeError
)

// Plan decides what follows node n, which finished at scope with the typed
// output out (encoded as outBytes).
//
// What each completion adds to or removes from the run's outstanding work
// (backend.Plan): the end node sets CompleteRun (the backend counts -1 for
// it). When the definition has detached branches, Plan.Detached is +1 for
// every job and open join the plan creates at a loose node (one whose
// output never reaches the end node) and -1 when n itself is loose. A step
// in the middle of a detached branch therefore changes nothing (-1 +1), a
// Divide or Expand into detached branches adds one per branch, the last
// step of a detached branch removes one, and a join on a detached branch
// counts once, from its opening until its own job completes. Completions
// outside detached branches carry 0, so they never touch the run row.
func (g *Graph) Plan(n *Node, scope string, out any, outBytes []byte) (backend.Plan, error) {
	p, err := g.next(n, scope, out, outBytes)
	if err != nil {
		return p, err
	}
	if g.Waits {
		// Settle the run's status when this completion may change whether
		// all its work waits: the completing node waited, or nothing the
		// plan inserts is due at once.
		p.Settle = n.Wait != nil
		if !p.Settle {
			p.Settle = true
			for _, j := range p.Jobs {
				if j.Wait == "" && j.Delay <= 0 {
					p.Settle = false
					break
				}
			}
		}
	}
	if !g.Detaches {
		return p, nil
	}
	p.Detached = g.detachedDelta(n, &p)
	return p, nil
}

// detachedDelta is Plan.Detached for p, the plan that follows n.
func (g *Graph) detachedDelta(n *Node, p *backend.Plan) int {
	d := 0
	if n.Loose {
		d--
	}
	var last *Node // an expansion's jobs are all of one node
	for i := range p.Jobs {
		if last == nil || last.ID != p.Jobs[i].NodeID {
			last = g.ByID[p.Jobs[i].NodeID]
		}
		if last.Loose {
			d++
		}
	}
	for _, o := range p.OpenJoins {
		if g.ByID[o.NodeID].Loose {
			d++
		}
	}
	return d
}

func (g *Graph) next(n *Node, scope string, out any, outBytes []byte) (backend.Plan, error) {
	var p backend.Plan
	if n == g.End {
		p.CompleteRun = true
		if len(n.Succs) == 0 && n.Divert == nil {
			return p, nil
		}
		// The end node's output is also handed on, to detached branches.
	}
	if n.Detached {
		return p, nil
	}
	if n.Divert != nil {
		key := n.Divert.Key(out)
		next, ok := n.Divert.Cases[key]
		if !ok {
			next = n.Divert.Otherwise
		}
		j, err := g.newJob(next, scope, outBytes, out)
		if err != nil {
			return p, err
		}
		p.Jobs = append(p.Jobs, j)
		return p, nil
	}
	if len(n.Succs) == 0 {
		return p, fmt.Errorf("node %q has no successor", n.ID)
	}
	first := n.Succs[0]
	switch first.Kind {
	case KindChain, KindConverge:
		j, err := g.newJob(first, scope, outBytes, out)
		if err != nil {
			return p, err
		}
		p.Jobs = append(p.Jobs, j)
	case KindSleep, KindAwait:
		j, err := waitJob(first, scope, out, outBytes)
		if err != nil {
			return p, err
		}
		p.Jobs = append(p.Jobs, j)
	case KindExpand:
		parts, err := first.Split(g.Codec, out)
		if err != nil {
			return p, &EncodeError{Node: n.ID, Err: err}
		}
		if g.MaxFanOut > 0 && len(parts) > g.MaxFanOut {
			return p, &FanOutError{Node: first.ID, Count: len(parts), Max: g.MaxFanOut}
		}
		if first.Join != nil {
			p.OpenJoins = append(p.OpenJoins, openJoin(first.Join, scope, len(parts)))
		}
		p.Jobs = make([]backend.NewJob, 0, len(parts))
		for i, part := range parts {
			j, err := g.newJob(first, ChildScope(scope, i), part, nil)
			if err != nil {
				return p, err
			}
			p.Jobs = append(p.Jobs, j)
		}
	case KindDivide:
		if j := first.Join; j != nil {
			// The Combine's predecessors are the branches it takes; the
			// others end detached.
			p.OpenJoins = append(p.OpenJoins, openJoin(j, scope, len(j.Preds)))
		}
		for _, s := range n.Succs {
			j, err := g.newJob(s, scope, outBytes, out)
			if err != nil {
				return p, err
			}
			p.Jobs = append(p.Jobs, j)
		}
	case KindCollapse:
		parent, slot, err := ParentScope(scope)
		if err != nil {
			return p, err
		}
		p.Arrive = &backend.Arrival{NodeID: first.ID, Scope: parent, Slot: slot, Queue: first.Options.Queue, Gated: JoinGate(first).Gated()}
	case KindCombine:
		slot := -1
		for i, pred := range first.Preds {
			if pred == n {
				slot = i
			}
		}
		p.Arrive = &backend.Arrival{NodeID: first.ID, Scope: scope, Slot: slot, Queue: first.Options.Queue, Gated: JoinGate(first).Gated()}
	default:
		return p, fmt.Errorf("node %q: unexpected successor kind %s", n.ID, first.Kind)
	}
	return p, nil
}

// newJob is the job of node n at scope with the encoded input; typed is
// the decoded input when the caller has it (nil: decoded here, and only for
// a step whose concurrency key needs it).
func (g *Graph) newJob(n *Node, scope string, input []byte, typed any) (backend.NewJob, error) {
	j := backend.NewJob{NodeID: n.ID, Scope: scope, Input: input, Delay: n.Options.Delay, Priority: n.Options.Priority,
		Queue: n.Options.Queue}
	if n.Options.Concurrency > 0 || n.Options.ConcurrencyKey != nil || n.Options.RateLimit != nil {
		if n.Options.ConcurrencyKey != nil && typed == nil {
			v, err := n.Decode(g.Codec, input, nil)
			if err != nil {
				return j, fmt.Errorf("decode the input of %q for its concurrency key: %w", n.ID, err)
			}
			typed = v
		}
		gate, err := Gate(n, typed)
		if err != nil {
			return j, err
		}
		j.Gate = gate
	}
	return j, nil
}

// FirstJob is the job of the start node for the pipeline input in (typed)
// encoded as input.
func (g *Graph) FirstJob(input []byte, in any) (backend.NewJob, error) {
	return g.newJob(g.Start, "", input, in)
}

// waitJob is the job of a sleep or await node n, whose input is out.
func waitJob(n *Node, scope string, out any, outBytes []byte) (backend.NewJob, error) {
	j := backend.NewJob{NodeID: n.ID, Scope: scope, Input: outBytes, Delay: n.Options.Delay, Priority: n.Options.Priority}
	w := n.Wait
	if n.Kind == KindSleep {
		j.Wait = backend.WaitSleep
		if w.Until != nil {
			j.DueAt = w.Until(out)
			if j.DueAt.IsZero() {
				// The zero time is "no due time": due at once.
				j.DueAt = time.Unix(0, 0)
			}
		} else {
			j.Delay = max(w.Sleep, 0)
		}
		return j, nil
	}
	j.Wait, j.Signal, j.Delay = backend.WaitSignal, w.Signal, w.Timeout
	if w.Timeout <= 0 {
		j.Delay = backend.Forever
	}
	if w.Key != nil {
		j.SignalKey = w.Key(out)
	}
	return j, nil
}

func openJoin(n *Node, scope string, expected int) backend.OpenJoin {
	return backend.OpenJoin{NodeID: n.ID, Scope: scope, Expected: expected, Delay: n.Options.Delay, Priority: n.Options.Priority,
		Queue: n.Options.Queue, Gate: JoinGate(n)}
}

// JoinGate is the gate of a join node's job: its step-wide concurrency limit
// and rate limit (a join has no concurrency key: its input is not known
// when the join opens).
func JoinGate(n *Node) backend.Gate {
	g, _ := Gate(n, nil)
	return g
}

// Gate is the gate of a job of node n whose input is in (used only by a
// concurrency key). Keys of a step-wide limit are "step:" and the step name;
// keys of a keyed limit are "key:", the step name, a unit separator (0x1f)
// and the key, or a digest of the key when that would be longer than the
// backends store, or is not text every backend stores (invalid UTF-8, NUL).
func Gate(n *Node, in any) (backend.Gate, error) {
	var g backend.Gate
	o := &n.Options
	switch {
	case o.ConcurrencyKey != nil && in != nil:
		k := o.ConcurrencyKey.Key(in)
		key := "key:" + n.ID + "\x1f" + k
		if len(key) > backend.MaxLimitKeyBytes || !utf8.ValidString(k) || strings.ContainsRune(k, 0) {
			sum := sha256.Sum256([]byte(k))
			key = "key:" + n.ID + "\x1f#" + hex.EncodeToString(sum[:])
		}
		g.ConcurrencyKey, g.Concurrency = key, o.ConcurrencyKey.Limit
	case o.Concurrency > 0:
		g.ConcurrencyKey, g.Concurrency = "step:"+n.ID, o.Concurrency
	}
	if o.RateLimit != nil {
		g.RateLimit = o.RateLimit.Name
	}
	return g, nil
}

// RateLimits lists the rate limits the definition's steps name.
func (g *Graph) RateLimits() []backend.RateLimit {
	var rs []backend.RateLimit
	seen := map[string]bool{}
	for _, n := range g.Nodes {
		if r := n.Options.RateLimit; r != nil && !seen[r.Name] {
			seen[r.Name] = true
			rs = append(rs, backend.RateLimit{Name: r.Name, Interval: r.Interval(), Burst: r.Burst})
		}
	}
	return rs
}

// Gated reports whether any step of the definition on queue has limits.
func (g *Graph) Gated(queue string) bool {
	for _, n := range g.Nodes {
		o := &n.Options
		if o.Queue == queue && (o.Concurrency > 0 || o.ConcurrencyKey != nil || o.RateLimit != nil) {
			return true
		}
	}
	return false
}
