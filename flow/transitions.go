package flow

import (
	"github.com/ductwork-go/ductwork/internal/graph"
	"github.com/ductwork-go/ductwork/step"
)

// Start makes s the first step of the pipeline: it receives the run's input.
func Start[In, Out any](p *Pipeline[In], s step.Step[In, Out]) Node[Out] {
	if p == nil || p.b == nil {
		return Node[Out]{}
	}
	b := p.b
	si := infoOf(s)
	if !b.check(si) {
		return Node[Out]{}
	}
	if b.start != nil {
		b.fail(&DefinitionError{Pipeline: b.name, Node: si.name, Rule: RuleTwoStarts})
		return Node[Out]{}
	}
	n := b.add(si, graph.KindStart, nil)
	b.start = n
	return Node[Out]{n}
}

// Chain runs s after n, on the same branch, with n's output as its input.
func Chain[A, B any](n Node[A], s step.Step[A, B]) Node[B] {
	si := infoOf(s)
	b := builderOf(n.n)
	if b == nil || !b.check(si, n.n) || !b.free(n.n, si.name) {
		return Node[B]{}
	}
	return Node[B]{b.add(si, graph.KindChain, n.n.frames, n.n)}
}

// Expand runs s once per element of n's output, each on a branch of its own
// (with the element's index). Close the expansion with Collapse, or end its
// branches with Detach.
func Expand[E, B any](n Node[[]E], s step.Step[E, B]) Node[B] {
	si := infoOf(s)
	b := builderOf(n.n)
	if b == nil || !b.check(si, n.n) || !b.free(n.n, si.name) {
		return Node[B]{}
	}
	x := b.add(si, graph.KindExpand, nil, n.n)
	x.frames = push(n.n.frames, frame{kind: graph.KindExpand, opener: x})
	x.g.Split = func(c step.Codec, out any) ([][]byte, error) {
		elems, _ := out.([]E)
		parts := make([][]byte, len(elems))
		for i := range elems {
			p, err := c.Marshal(elems[i])
			if err != nil {
				return nil, err
			}
			parts[i] = p
		}
		return parts, nil
	}
	return Node[B]{x}
}

// Collapse gathers the innermost open expansion on n's branch: s runs once,
// when every element's branch has finished, with their outputs in index
// order. An empty expansion hands s an empty slice.
func Collapse[A, B any](n Node[A], s step.Step[[]A, B]) Node[B] {
	si := infoOf(s)
	b := builderOf(n.n)
	if b == nil || !b.check(si, n.n) || !b.free(n.n, si.name) {
		return Node[B]{}
	}
	f, ok := top(n.n)
	if !ok || f.kind != graph.KindExpand {
		b.fail(b.errf(n.n, RuleCollapseNoExpand, "collapsing into %q", si.name))
		return Node[B]{}
	}
	si.decode = decodeSlice[A]
	c := b.add(si, graph.KindCollapse, n.n.frames[:len(n.n.frames)-1], n.n)
	f.opener.g.Join = c.g
	f.opener.closed = true
	return Node[B]{c}
}

func decodeSlice[A any](c step.Codec, _ []byte, parts [][]byte) (any, error) {
	out := make([]A, len(parts))
	for i, p := range parts {
		if err := c.Unmarshal(p, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Divide hands n's output to every step, each on a parallel branch. Join the
// branches with Combine, or end some or all of them with Detach.
func Divide[A, B any](n Node[A], steps ...step.Step[A, B]) []Node[B] {
	b := builderOf(n.n)
	if b == nil {
		return nil
	}
	if len(steps) == 0 {
		b.fail(b.errf(n.n, RuleDivideEmpty, ""))
		return nil
	}
	infos := make([]stepInfo, len(steps))
	for i, s := range steps {
		infos[i] = infoOf(s)
	}
	nodes := divide(b, n.n, infos)
	out := make([]Node[B], len(nodes))
	for i, x := range nodes {
		out[i] = Node[B]{x}
	}
	return out
}

// Divide2 is Divide for two steps with different output types.
func Divide2[A, B, C any](n Node[A], s1 step.Step[A, B], s2 step.Step[A, C]) (Node[B], Node[C]) {
	b := builderOf(n.n)
	if b == nil {
		return Node[B]{}, Node[C]{}
	}
	nodes := divide(b, n.n, []stepInfo{infoOf(s1), infoOf(s2)})
	if nodes == nil {
		return Node[B]{}, Node[C]{}
	}
	return Node[B]{nodes[0]}, Node[C]{nodes[1]}
}

// Divide3 is Divide for three steps with different output types.
func Divide3[A, B, C, D any](n Node[A], s1 step.Step[A, B], s2 step.Step[A, C], s3 step.Step[A, D]) (Node[B], Node[C], Node[D]) {
	b := builderOf(n.n)
	if b == nil {
		return Node[B]{}, Node[C]{}, Node[D]{}
	}
	nodes := divide(b, n.n, []stepInfo{infoOf(s1), infoOf(s2), infoOf(s3)})
	if nodes == nil {
		return Node[B]{}, Node[C]{}, Node[D]{}
	}
	return Node[B]{nodes[0]}, Node[C]{nodes[1]}, Node[D]{nodes[2]}
}

func divide(b *builder, n *bnode, infos []stepInfo) []*bnode {
	for _, si := range infos {
		if !b.check(si, n) {
			return nil
		}
	}
	if !b.free(n, infos[0].name) {
		return nil
	}
	seen := map[string]bool{}
	for _, si := range infos {
		if seen[si.name] {
			b.fail(&DefinitionError{Pipeline: b.name, Node: si.name, Rule: RuleDuplicateName})
			return nil
		}
		seen[si.name] = true
	}
	n.branches = len(infos)
	out := make([]*bnode, len(infos))
	for i, si := range infos {
		x := b.add(si, graph.KindDivide, push(n.frames, frame{kind: graph.KindDivide, opener: n, branch: i}), n)
		x.g.Branch = i
		out[i] = x
	}
	return out
}

// Combine joins every branch of one Divide that is not detached: s runs once,
// when all of them have finished, with their outputs in the order the nodes
// are passed.
func Combine[A, B any](s step.Step[[]A, B], nodes ...Node[A]) Node[B] {
	bs := make([]*bnode, len(nodes))
	for i, n := range nodes {
		bs[i] = n.n
	}
	si := infoOf(s)
	si.decode = decodeSlice[A]
	return Node[B]{combine(si, bs)}
}

// Combine2 joins the two branches of a Divide whose outputs differ in type.
func Combine2[A, B, V any](s step.Step[Pair[A, B], V], a Node[A], b Node[B]) Node[V] {
	si := infoOf(s)
	si.decode = func(c step.Codec, _ []byte, parts [][]byte) (any, error) {
		var p Pair[A, B]
		if err := decodeParts(c, parts, &p.First, &p.Second); err != nil {
			return nil, err
		}
		return p, nil
	}
	return Node[V]{combine(si, []*bnode{a.n, b.n})}
}

// Combine3 joins the three branches of a Divide whose outputs differ in type.
func Combine3[A, B, C, V any](s step.Step[Triple[A, B, C], V], a Node[A], b Node[B], c Node[C]) Node[V] {
	si := infoOf(s)
	si.decode = func(cd step.Codec, _ []byte, parts [][]byte) (any, error) {
		var t Triple[A, B, C]
		if err := decodeParts(cd, parts, &t.First, &t.Second, &t.Third); err != nil {
			return nil, err
		}
		return t, nil
	}
	return Node[V]{combine(si, []*bnode{a.n, b.n, c.n})}
}

func decodeParts(c step.Codec, parts [][]byte, dst ...any) error {
	if len(parts) != len(dst) {
		return &DefinitionError{Rule: RuleCombineIncomplete, Detail: "stored arrivals do not match the join"}
	}
	for i := range dst {
		if err := c.Unmarshal(parts[i], dst[i]); err != nil {
			return err
		}
	}
	return nil
}

func combine(si stepInfo, nodes []*bnode) *bnode {
	if len(nodes) == 0 {
		return nil
	}
	b := builderOf(nodes[0])
	if b == nil || !b.check(si, nodes...) {
		return nil
	}
	var opener *bnode
	seen := map[int]bool{}
	for _, n := range nodes {
		if !b.free(n, si.name) {
			return nil
		}
		f, ok := top(n)
		if !ok || f.kind != graph.KindDivide {
			b.fail(b.errf(n, RuleCombineNoDivide, "combining into %q", si.name))
			return nil
		}
		if opener == nil {
			opener = f.opener
		} else if opener != f.opener {
			b.fail(b.errf(n, RuleCombineMixed, "combining into %q: divides at %q and %q", si.name, opener.g.ID, f.opener.g.ID))
			return nil
		}
		if seen[f.branch] {
			b.fail(b.errf(n, RuleCombineIncomplete, "branch %d passed twice to %q", f.branch, si.name))
			return nil
		}
		seen[f.branch] = true
	}
	if opener.combined > 0 {
		b.fail(b.errf(opener, RuleCombineIncomplete, "its branches are already combined; cannot also combine into %q", si.name))
		return nil
	}
	// Whether the Combine takes every branch that is not detached is checked
	// by Define: a Detach may come after the Combine.
	opener.combined = len(seen)
	c := b.add(si, graph.KindCombine, nodes[0].frames[:len(nodes[0].frames)-1], nodes...)
	for _, x := range opener.g.Succs {
		x.Join = c.g
	}
	opener.closed = true
	return c
}

// Divert routes n's output to exactly one case by the key that key returns.
// Add cases with Case, the fallback with Otherwise (required), and join them
// with Converge.
func Divert[A any](n Node[A], key func(A) string) Diversion[A] {
	b := builderOf(n.n)
	if b == nil || !b.check(stepInfo{name: "\x00divert"}, n.n) {
		return Diversion[A]{}
	}
	if key == nil {
		b.fail(b.errf(n.n, RuleNilKeyFunc, ""))
		return Diversion[A]{}
	}
	if !b.free(n.n, "a Divert") {
		return Diversion[A]{}
	}
	n.n.g.Divert = &graph.Divert{
		Key:   func(out any) string { v, _ := out.(A); return key(v) },
		Cases: map[string]*graph.Node{},
	}
	return Diversion[A](n)
}

// Case runs s when the diversion's key equals key.
func Case[A, B any](d Diversion[A], key string, s step.Step[A, B]) Node[B] {
	return Node[B]{addCase(d.n, infoOf(s), key, false)}
}

// Otherwise runs s when no Case matches the diversion's key.
func Otherwise[A, B any](d Diversion[A], s step.Step[A, B]) Node[B] {
	return Node[B]{addCase(d.n, infoOf(s), "", true)}
}

func addCase(n *bnode, si stepInfo, key string, other bool) *bnode {
	b := builderOf(n)
	if b == nil || !b.check(si, n) {
		return nil
	}
	d := n.g.Divert
	if d == nil {
		b.fail(b.errf(n, RuleConvergeNoDivert, "Case on a node without Divert"))
		return nil
	}
	if other && d.Otherwise != nil {
		b.fail(b.errf(n, RuleOtherwiseTwice, "adding %q", si.name))
		return nil
	}
	if _, dup := d.Cases[key]; !other && dup {
		b.fail(b.errf(n, RuleCaseDuplicate, "key %q, adding %q", key, si.name))
		return nil
	}
	x := b.add(si, graph.KindCase, push(n.frames, frame{kind: graph.KindCase, opener: n, key: key, other: other}), n)
	// The divert node routes by key; it has no ordinary successors.
	n.g.Succs = nil
	x.g.CaseKey, x.g.Fallback = key, other
	if other {
		d.Otherwise = x.g
	} else {
		d.Cases[key] = x.g
	}
	return x
}

// Converge joins the cases of one Divert: s runs with the output of whichever
// case was taken. Every case and the Otherwise must be passed, once each.
func Converge[A, B any](s step.Step[A, B], nodes ...Node[A]) Node[B] {
	if len(nodes) == 0 {
		return Node[B]{}
	}
	bs := make([]*bnode, len(nodes))
	for i, n := range nodes {
		bs[i] = n.n
	}
	si := infoOf(s)
	b := builderOf(bs[0])
	if b == nil || !b.check(si, bs...) {
		return Node[B]{}
	}
	var opener *bnode
	seen := map[string]bool{}
	other := false
	for _, n := range bs {
		if !b.free(n, si.name) {
			return Node[B]{}
		}
		f, ok := top(n)
		if !ok || f.kind != graph.KindCase {
			b.fail(b.errf(n, RuleConvergeNoDivert, "converging into %q", si.name))
			return Node[B]{}
		}
		if opener == nil {
			opener = f.opener
		} else if opener != f.opener {
			b.fail(b.errf(n, RuleConvergeMixed, "converging into %q: diverts at %q and %q", si.name, opener.g.ID, f.opener.g.ID))
			return Node[B]{}
		}
		if f.other {
			if other {
				b.fail(b.errf(n, RuleConvergeMissing, "Otherwise passed twice to %q", si.name))
				return Node[B]{}
			}
			other = true
		} else {
			if seen[f.key] {
				b.fail(b.errf(n, RuleConvergeMissing, "case %q passed twice to %q", f.key, si.name))
				return Node[B]{}
			}
			seen[f.key] = true
		}
	}
	d := opener.g.Divert
	if d.Otherwise == nil {
		b.fail(b.errf(opener, RuleNoOtherwise, "converging into %q", si.name))
		return Node[B]{}
	}
	if !other || len(seen) != len(d.Cases) {
		b.fail(b.errf(opener, RuleConvergeMissing, "%q takes %d of the cases {%s} (otherwise: %t)", si.name, len(seen), keysOf(d.Cases), other))
		return Node[B]{}
	}
	c := b.add(si, graph.KindConverge, bs[0].frames[:len(bs[0].frames)-1], bs...)
	opener.closed = true
	return Node[B]{c}
}

func builderOf(n *bnode) *builder {
	if n == nil {
		return nil
	}
	return n.b
}
