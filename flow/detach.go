package flow

import "github.com/ductwork-go/ductwork/internal/graph"

// Detach ends n's branch without joining it: nothing takes n's output, and n
// is the branch's last step. Use it for work nobody waits on the result of:
// one branch of a Divide (send the receipt while another branch updates the
// CRM), or every branch of an Expand (one email per user), which then needs
// no Collapse. Every hand-off up to n is still checked by the compiler.
//
// n must be on a branch opened by Divide or Expand, at any depth. Detach
// closes the innermost of them for n's branch: a Combine of that Divide
// takes only its other branches, and an Expand whose branches are detached
// has no Collapse. A branch that has nothing left to continue (a Divide
// branch whose work all went into detached expansions, say) ends detached
// too. The step before a Divide or Expand whose branches are all detached
// is where its line ends: it may be the pipeline's end, whose output is the
// run's output.
//
// A run completes when its end node and every detached branch have
// finished. A detached branch whose step fails for good halts the run, like
// any other branch (Revive resumes it); a detached branch of an empty
// expansion is nothing to wait for; Cancel stops detached branches with the
// rest of the run.
//
// Detach inside a Divert case is refused (a Divert's cases always
// Converge), as is a Detach of the pipeline's main line, which must reach
// the node the definition function returns.
func Detach[T any](n Node[T]) {
	b := builderOf(n.n)
	if b == nil || !b.check(stepInfo{name: "\x00detach"}, n.n) || !b.free(n.n, "Detach") {
		return
	}
	n.n.g.Detached = true
	b.endBranch(n.n, n.n.frames)
}

// endBranch records that the branch whose open frames are frames has no
// further step at its own level: its innermost frame ends detached. When
// that leaves the enclosing branch with nothing to continue (an Expand with
// no Collapse, a Divide whose branches are all detached), that branch ends
// too.
func (b *builder) endBranch(at *bnode, frames []frame) {
	if len(frames) == 0 {
		// The main line ends at a Divide or Expand whose branches are all
		// detached; the end node must come before it (checked by Define).
		if at.g.Detached {
			b.fail(b.errf(at, RuleDetachMainLine, ""))
		}
		return
	}
	f := frames[len(frames)-1]
	switch f.kind {
	case graph.KindExpand:
		f.opener.closed = true
		b.endBranch(f.opener, frames[:len(frames)-1])
	case graph.KindDivide:
		o := f.opener
		o.detached++
		if o.detached == o.branches {
			o.closed = true
			b.endBranch(o, o.frames)
		}
	default:
		b.fail(b.errf(at, RuleDetachCase, "the Divert at %q", f.opener.g.ID))
	}
}
