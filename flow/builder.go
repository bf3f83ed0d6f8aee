package flow

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/graph"
	"github.com/ductwork-go/ductwork/step"
)

// frame is an open structure (expand, divide, divert) on a branch.
type frame struct {
	kind   graph.Kind // KindExpand, KindDivide or KindCase
	opener *bnode     // the node whose output opened it (divide, divert) or the expand node
	branch int
	key    string
	other  bool
}

type bnode struct {
	b      *builder
	g      *graph.Node
	frames []frame
	// divide: number of branches opened from this node, how many of them a
	// Combine takes and how many end detached (see Detach).
	branches int
	combined int
	detached int
	closed   bool // an expand already collapsed, a divide already combined, a divert already converged
}

type builder struct {
	name   string
	codec  step.Codec
	inType reflect.Type
	nodes  []*bnode
	ids    map[string]*bnode
	start  *bnode
	err    error
	// sealed is set when Define returns: a finished definition never changes,
	// so transitions on its nodes are refused.
	sealed bool
}

func (b *builder) errf(n *bnode, rule, detail string, args ...any) *DefinitionError {
	e := &DefinitionError{Pipeline: b.name, Rule: rule}
	if n != nil && n.g != nil {
		e.Node = n.g.ID
	}
	if detail != "" {
		e.Detail = fmt.Sprintf(detail, args...)
	}
	return e
}

// fail records the first error; later transitions become no-ops.
func (b *builder) fail(e *DefinitionError) {
	if b.err == nil {
		b.err = e
	}
}

// stepInfo is what a transition knows about the step it attaches.
type stepInfo struct {
	name    string
	nilStep bool
	opts    step.Options
	txKind  string
	in, out reflect.Type
	call    func(ctx step.Context, in any) (any, error)
	decode  func(c step.Codec, input []byte, parts [][]byte) (any, error)
}

func infoOf[In, Out any](s step.Step[In, Out]) stepInfo {
	si := stepInfo{in: reflect.TypeFor[In](), out: reflect.TypeFor[Out]()}
	if s == nil || reflect.ValueOf(s).Kind() == reflect.Pointer && reflect.ValueOf(s).IsNil() {
		si.nilStep = true
		return si
	}
	si.name = s.Name()
	if o, ok := s.(step.Optioned); ok {
		si.opts = o.StepOptions()
	}
	if t, ok := s.(step.Transactional); ok {
		si.txKind = t.TxKind()
	}
	si.call = func(ctx step.Context, in any) (any, error) {
		v, _ := in.(In)
		return s.Execute(ctx, v)
	}
	si.decode = func(c step.Codec, input []byte, _ [][]byte) (any, error) {
		var v In
		if err := c.Unmarshal(input, &v); err != nil {
			return nil, err
		}
		return v, nil
	}
	return si
}

// check validates preds and the step, returning false (after recording an
// error) when the transition must not proceed.
func (b *builder) check(si stepInfo, preds ...*bnode) bool {
	if b.err != nil || b.sealed {
		return false
	}
	for _, p := range preds {
		if p == nil {
			b.fail(b.errf(nil, RuleNilNode, "while attaching step %q", si.name))
			return false
		}
		if p.b != b {
			b.fail(b.errf(p, RuleForeignNode, "while attaching step %q", si.name))
			return false
		}
	}
	if si.nilStep {
		d := ""
		if len(preds) > 0 {
			d = "after node " + preds[0].g.ID
		}
		b.fail(&DefinitionError{Pipeline: b.name, Rule: RuleNilStep, Detail: d})
		return false
	}
	if si.name == "" {
		b.fail(&DefinitionError{Pipeline: b.name, Rule: RuleEmptyName})
		return false
	}
	if _, dup := b.ids[si.name]; dup {
		b.fail(&DefinitionError{Pipeline: b.name, Node: si.name, Rule: RuleDuplicateName})
		return false
	}
	return true
}

func (b *builder) add(si stepInfo, kind graph.Kind, frames []frame, preds ...*bnode) *bnode {
	g := &graph.Node{
		ID: si.name, Pos: len(b.nodes), Kind: kind, InType: si.in, OutType: si.out,
		Options: si.opts, TxKind: si.txKind, Call: si.call, Decode: si.decode,
	}
	n := &bnode{b: b, g: g, frames: frames}
	if reason := b.checkFlowControl(g); reason != "" {
		b.fail(&DefinitionError{Pipeline: b.name, Node: si.name, Rule: RuleFlowControl, Detail: reason})
	}
	for _, p := range preds {
		g.Preds = append(g.Preds, p.g)
		p.g.Succs = append(p.g.Succs, g)
	}
	b.nodes = append(b.nodes, n)
	b.ids[si.name] = n
	return n
}

// free reports whether p can take one more (non-divide) successor.
func (b *builder) free(p *bnode, name string) bool {
	if p.g.Detached {
		b.fail(b.errf(p, RuleAlreadyContinues, "it is detached, so it cannot also continue to %q", name))
		return false
	}
	if len(p.g.Succs) > 0 || p.g.Divert != nil {
		b.fail(b.errf(p, RuleAlreadyContinues, "cannot also continue to %q", name))
		return false
	}
	return true
}

func push(frames []frame, f frame) []frame {
	out := make([]frame, len(frames), len(frames)+1)
	copy(out, frames)
	return append(out, f)
}

func top(n *bnode) (frame, bool) {
	if len(n.frames) == 0 {
		return frame{}, false
	}
	return n.frames[len(n.frames)-1], true
}

func (b *builder) finish(end *bnode, outType reflect.Type) (*graph.Graph, error) {
	if b.start == nil {
		return nil, &DefinitionError{Pipeline: b.name, Rule: RuleNoStart}
	}
	if end == nil {
		return nil, &DefinitionError{Pipeline: b.name, Rule: RuleNilDefine,
			Detail: "the returned node was never built: was a transition given a zero Node or a node of another pipeline?"}
	}
	if end.b != b {
		return nil, b.errf(end, RuleForeignNode, "returned as the end")
	}
	if len(end.frames) > 0 {
		f := end.frames[len(end.frames)-1]
		return nil, b.errf(end, RuleEndOpen, "%s opened at %q is not closed; join it, or detach its branches and end before it", f.kind, f.opener.g.ID)
	}
	g := &graph.Graph{
		Pipeline: b.name, Codec: b.codec, ByID: map[string]*graph.Node{},
		Start: b.start.g, End: end.g, InType: b.inType, OutType: outType,
	}
	if err := b.codec.Check(b.inType); err != nil {
		return nil, &DefinitionError{Pipeline: b.name, Rule: RuleNotEncodable, Detail: "pipeline input: " + err.Error()}
	}
	// A Combine may be written before the Detach of the branches it leaves
	// out, so whether it takes every other branch is checked here, once the
	// definition function has returned.
	for _, n := range b.nodes {
		if n.branches > 0 && n.combined > 0 && n.combined+n.detached != n.branches {
			return nil, b.errf(n, RuleCombineIncomplete, "%q takes %d of %d branches and %d end detached",
				n.g.Succs[0].Join.ID, n.combined, n.branches, n.detached)
		}
	}
	for _, n := range b.nodes {
		g.Nodes = append(g.Nodes, n.g)
		g.ByID[n.g.ID] = n.g
		g.Waits = g.Waits || n.g.Wait != nil
		if err := b.codec.Check(n.g.OutType); err != nil {
			return nil, b.errf(n, RuleNotEncodable, "output: %v", err)
		}
		if d := n.g.Divert; d != nil {
			if d.Otherwise == nil {
				return nil, b.errf(n, RuleNoOtherwise, "")
			}
			if !n.closed {
				return nil, b.errf(n, RuleDangling, "its Divert is never converged")
			}
			continue
		}
		if n != end && len(n.g.Succs) == 0 && !n.g.Detached {
			if len(n.frames) > 0 {
				return nil, b.errf(n, RuleDangling, "join its branch, or end it with Detach")
			}
			return nil, b.errf(n, RuleDangling, "")
		}
		g.Detaches = g.Detaches || n.g.Detached
	}
	if g.Detaches {
		markLoose(g)
	}
	g.Fingerprint = g.ComputeFingerprint()
	return g, nil
}

// markLoose marks the nodes whose output never reaches the end node: every
// node the end cannot be traced back to through its predecessors. Their
// instances are the run's outstanding detached work.
func markLoose(g *graph.Graph) {
	main := map[*graph.Node]bool{g.End: true}
	stack := []*graph.Node{g.End}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, p := range n.Preds {
			if !main[p] {
				main[p] = true
				stack = append(stack, p)
			}
		}
	}
	for _, n := range g.Nodes {
		n.Loose = !main[n]
	}
}

func keysOf(m map[string]*graph.Node) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// checkFlowControl returns why the flow-control options of node g are
// invalid, or "". Steps of the pipeline naming the same rate limit must
// state the same rate.
func (b *builder) checkFlowControl(g *graph.Node) string {
	o := &g.Options
	if len(o.Queue) > backend.MaxQueueBytes {
		return fmt.Sprintf("queue name of %d bytes, longer than %d", len(o.Queue), backend.MaxQueueBytes)
	}
	if !utf8.ValidString(o.Queue) || strings.ContainsRune(o.Queue, 0) {
		return "queue name is not valid UTF-8 text"
	}
	if o.Concurrency < 0 {
		return fmt.Sprintf("Concurrency(%d): the limit must be at least 1", o.Concurrency)
	}
	if k := o.ConcurrencyKey; k != nil {
		switch {
		case k.Key == nil:
			return "ConcurrencyKey: the key function is nil"
		case k.Limit < 1:
			return fmt.Sprintf("ConcurrencyKey: the limit %d must be at least 1", k.Limit)
		case o.Concurrency > 0:
			return "ConcurrencyKey and Concurrency on one step: choose one"
		case g.Kind == graph.KindCollapse || g.Kind == graph.KindCombine:
			return "ConcurrencyKey on a join step: its input is not known until it starts; use Concurrency"
		case k.InType != g.InType:
			return fmt.Sprintf("ConcurrencyKey: the key function takes %v, the step's input is %v", k.InType, g.InType)
		}
	}
	if r := o.RateLimit; r != nil {
		switch {
		case r.Name == "" || len(r.Name) > backend.MaxLimitKeyBytes-2 || !utf8.ValidString(r.Name) || strings.ContainsRune(r.Name, 0):
			return fmt.Sprintf("RateLimit: the name must be 1 to %d bytes of text", backend.MaxLimitKeyBytes-2)
		case r.N < 1 || r.Per <= 0 || r.Per/time.Duration(r.N) <= 0:
			return fmt.Sprintf("RateLimit(%q, %d, %s): the count must be at least 1 and the period long enough to hold it", r.Name, r.N, r.Per)
		case r.Burst < 1:
			return fmt.Sprintf("RateLimit(%q): the burst %d must be at least 1", r.Name, r.Burst)
		}
		for _, other := range b.nodes {
			if q := other.g.Options.RateLimit; q != nil && q.Name == r.Name && *q != *r {
				return fmt.Sprintf("RateLimit(%q): step %q states another rate for the same limit", r.Name, other.g.ID)
			}
		}
	}
	return ""
}
