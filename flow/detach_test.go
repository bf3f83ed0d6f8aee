package flow_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/internal/graph"
	"github.com/ductwork-go/ductwork/step"
)

func TestDetachRules(t *testing.T) {
	type fn = func(p *flow.Pipeline[int]) flow.End[int]
	cases := []struct {
		name, rule, node string
		def              fn
	}{
		{"detach on the main line", flow.RuleDetachMainLine, "b", func(p *flow.Pipeline[int]) flow.End[int] {
			a := flow.Start(p, st[int, int]("a"))
			flow.Detach(flow.Chain(a, st[int, int]("b")))
			return a
		}},
		{"detach inside a divert case", flow.RuleDetachCase, "x", func(p *flow.Pipeline[int]) flow.End[int] {
			d := flow.Divert(flow.Start(p, st[int, int]("a")), func(int) string { return "x" })
			flow.Detach(flow.Case(d, "x", st[int, int]("x")))
			return flow.Converge(st[int, int]("c"), flow.Otherwise(d, st[int, int]("o")))
		}},
		{"expansion inside a divert case ends detached", flow.RuleDetachCase, "e", func(p *flow.Pipeline[int]) flow.End[int] {
			d := flow.Divert(flow.Start(p, st[int, []int]("a")), func([]int) string { return "x" })
			flow.Detach(flow.Expand(flow.Case(d, "x", st[[]int, []int]("x")), st[int, int]("e")))
			return flow.Converge(st[[]int, int]("c"), flow.Otherwise(d, st[[]int, []int]("o")))
		}},
		{"continue after detach", flow.RuleAlreadyContinues, "x1", func(p *flow.Pipeline[int]) flow.End[int] {
			x := flow.Divide(flow.Start(p, st[int, int]("a")), st[int, int]("x1"), st[int, int]("x2"))
			flow.Detach(x[0])
			flow.Chain(x[0], st[int, int]("late"))
			return flow.Combine(st[[]int, int]("c"), x[1])
		}},
		{"detach twice", flow.RuleAlreadyContinues, "x1", func(p *flow.Pipeline[int]) flow.End[int] {
			x := flow.Divide(flow.Start(p, st[int, int]("a")), st[int, int]("x1"), st[int, int]("x2"))
			flow.Detach(x[0])
			flow.Detach(x[0])
			return flow.Combine(st[[]int, int]("c"), x[1])
		}},
		{"detach of a joined node", flow.RuleAlreadyContinues, "x1", func(p *flow.Pipeline[int]) flow.End[int] {
			x := flow.Divide(flow.Start(p, st[int, int]("a")), st[int, int]("x1"), st[int, int]("x2"))
			c := flow.Combine(st[[]int, int]("c"), x...)
			flow.Detach(x[0])
			return c
		}},
		{"combine misses a branch that is not detached", flow.RuleCombineIncomplete, "a", func(p *flow.Pipeline[int]) flow.End[int] {
			x := flow.Divide(flow.Start(p, st[int, int]("a")), st[int, int]("x1"), st[int, int]("x2"), st[int, int]("x3"))
			flow.Detach(x[0])
			return flow.Combine(st[[]int, int]("c"), x[1])
		}},
		{"two combines of one divide", flow.RuleCombineIncomplete, "a", func(p *flow.Pipeline[int]) flow.End[int] {
			x := flow.Divide(flow.Start(p, st[int, int]("a")), st[int, int]("x1"), st[int, int]("x2"))
			flow.Combine(st[[]int, int]("c1"), x[0])
			return flow.Combine(st[[]int, int]("c2"), x[1])
		}},
		{"branch neither joined nor detached", flow.RuleDangling, "x2", func(p *flow.Pipeline[int]) flow.End[int] {
			a := flow.Start(p, st[int, int]("a"))
			x := flow.Divide(a, st[int, int]("x1"), st[int, int]("x2"))
			flow.Detach(x[0])
			return a
		}},
		{"end inside a divide with detached siblings", flow.RuleEndOpen, "x2", func(p *flow.Pipeline[int]) flow.End[int] {
			x := flow.Divide(flow.Start(p, st[int, int]("a")), st[int, int]("x1"), st[int, int]("x2"))
			flow.Detach(x[0])
			return x[1]
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := flow.Define("p", tc.def)
			wantRule(t, err, tc.rule, tc.node)
		})
	}
}

func TestDetachDanglingHint(t *testing.T) {
	_, err := flow.Define("p", func(p *flow.Pipeline[int]) flow.End[[]int] {
		a := flow.Start(p, st[int, []int]("a"))
		flow.Expand(a, st[int, int]("x"))
		return a
	})
	wantRule(t, err, flow.RuleDangling, "x")
	if !strings.Contains(err.Error(), "Detach") {
		t.Errorf("a dangling branch's error does not mention Detach: %v", err)
	}
}

// Shapes a definition with detached branches may take, each with inputs to
// simulate it on.
var detachedShapes = []struct {
	name   string
	def    func() *graph.Graph
	inputs []int
}{
	{"expand without collapse after the end", func() *graph.Graph {
		return flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[[]int] {
			src := flow.Start(p, count("src"))
			flow.Detach(flow.Chain(flow.Expand(src, id("email")), id("log")))
			return src
		}).Erased()
	}, []int{0, 1, 7}},
	{"divide with detached branches of different lengths, detached before the combine", func() *graph.Graph {
		return flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[int] {
			x := flow.Divide(flow.Start(p, id("a")), id("x1"), id("x2"), id("x3"))
			flow.Detach(flow.Chain(flow.Chain(x[0], id("x1b")), id("x1c")))
			flow.Detach(x[1])
			return flow.Chain(flow.Combine(sum("c"), x[2]), id("end"))
		}).Erased()
	}, []int{3}},
	{"detach after the combine", func() *graph.Graph {
		return flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[int] {
			x := flow.Divide(flow.Start(p, id("a")), id("x1"), id("x2"))
			c := flow.Combine(sum("c"), x[1])
			flow.Detach(x[0])
			return c
		}).Erased()
	}, []int{3}},
	{"nested: a divide branch that ends in a detached expansion, inside a collapsed expansion", func() *graph.Graph {
		return flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[int] {
			groups := flow.Expand(flow.Start(p, count("src")), count("group"))
			fan, keep := flow.Divide2(groups, ids("fan"), total("keep"))
			flow.Detach(flow.Chain(flow.Expand(fan, id("item")), id("item-log")))
			return flow.Collapse(flow.Combine(sum("kept"), keep), sum("end"))
		}).Erased()
	}, []int{0, 1, 4}},
	{"a join on a detached branch", func() *graph.Graph {
		return flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[int] {
			side, main := flow.Divide2(flow.Start(p, id("a")), count("side"), id("main"))
			flow.Detach(flow.Collapse(flow.Expand(side, id("e")), sum("gather")))
			return flow.Combine(sum("end"), main)
		}).Erased()
	}, []int{0, 2, 5}},
	{"every branch detached, at two depths", func() *graph.Graph {
		return flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[[]int] {
			src := flow.Start(p, count("src"))
			outer := flow.Expand(src, count("outer"))
			a, b := flow.Divide2(outer, ids("a"), ids("b"))
			flow.Detach(flow.Expand(a, id("a-item")))
			flow.Detach(b)
			return src
		}).Erased()
	}, []int{0, 3}},
}

// TestDetachedPlansCountExactly runs each shape through the planner in a
// random completion order, applying its plans as a backend would (jobs,
// joins, the outstanding-work count starting at 1), and checks that the
// count reaches 0 with the run's last job and never before, and that the
// run's output is the end node's.
func TestDetachedPlansCountExactly(t *testing.T) {
	for _, shape := range detachedShapes {
		for _, in := range shape.inputs {
			for seed := range uint64(5) {
				t.Run(fmt.Sprintf("%s/%d/%d", shape.name, in, seed), func(t *testing.T) {
					simulate(t, shape.def(), in, rand.New(rand.NewPCG(seed, 1)))
				})
			}
		}
	}
}

func TestPlanWithoutDetachCountsNothing(t *testing.T) {
	g := flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[int] {
		x := flow.Divide(flow.Expand(flow.Start(p, count("src")), id("e")), id("y"), id("z"))
		return flow.Collapse(flow.Combine(sum("c"), x...), sum("d"))
	}).Erased()
	if g.Detaches {
		t.Fatal("a definition without Detach has Detaches set")
	}
	for _, n := range g.Nodes {
		if n.Loose {
			t.Errorf("node %s is loose in a definition without Detach", n.ID)
		}
	}
	simulate(t, g, 3, rand.New(rand.NewPCG(1, 1)))
}

func TestFingerprintDetached(t *testing.T) {
	joined := flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[int] {
		x := flow.Divide(flow.Start(p, id("a")), id("x1"), id("x2"))
		return flow.Combine(sum("c"), x[0], x[1])
	})
	detached := flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[int] {
		x := flow.Divide(flow.Start(p, id("a")), id("x1"), id("x2"))
		flow.Detach(x[0])
		return flow.Combine(sum("c"), x[1])
	})
	if joined.Fingerprint() == detached.Fingerprint() {
		t.Fatalf("a detached branch and a joined one share the fingerprint %s", joined.Fingerprint())
	}
	if !strings.Contains(graphText(detached.Erased()), "x1:detached") {
		t.Error("the detached node is not marked in the definition")
	}
	// Definitions without Detach keep the fingerprints they always had, so
	// runs started before Detach existed stay claimable.
	old := flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[int] {
		a := flow.Start(p, st[int, []int]("a"))
		x := flow.Divide(flow.Expand(a, st[int, int]("x")), st[int, int]("y"), st[int, int]("z"))
		return flow.Collapse(flow.Combine(st[[]int, int]("c"), x...), st[[]int, int]("d"))
	})
	if got, want := old.Fingerprint(), "3bde68ff73f32c1a"; got != want {
		t.Errorf("fingerprint of a definition without Detach changed: %s, was %s", got, want)
	}
}

func graphText(g *graph.Graph) string {
	var b strings.Builder
	for _, n := range g.Nodes {
		fmt.Fprintf(&b, "%s:", n.ID)
		if n.Detached {
			b.WriteString("detached")
		}
		b.WriteString(" ")
	}
	return b.String()
}

func id(name string) step.Step[int, int] {
	return step.New(name, func(_ step.Context, n int) (int, error) { return n, nil })
}

func ids(name string) step.Step[[]int, []int] {
	return step.New(name, func(_ step.Context, ns []int) ([]int, error) { return ns, nil })
}

// count returns the slice 0..n-1.
func count(name string) step.Step[int, []int] {
	return step.New(name, func(_ step.Context, n int) ([]int, error) {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out, nil
	})
}

func sum(name string) step.Step[[]int, int] {
	return step.New(name, func(_ step.Context, ns []int) (int, error) {
		s := 0
		for _, n := range ns {
			s += n
		}
		return s, nil
	})
}

func total(name string) step.Step[[]int, int] {
	return step.New(name, func(_ step.Context, ns []int) (int, error) { return len(ns), nil })
}

// simJob is a job of the simulated run.
type simJob struct {
	node  *graph.Node
	scope string
	input []byte
	parts [][]byte
	join  bool
}

// simulate runs g on in with every step executed by the planner's own
// closures, picking the next job at random among the pending ones, and
// applies each plan the way the backend contract says.
func simulate(t *testing.T, g *graph.Graph, in int, rng *rand.Rand) {
	t.Helper()
	input, err := g.Codec.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	type joinState struct {
		node     *graph.Node
		expected int
		parts    map[int][]byte
	}
	joins := map[string]*joinState{}
	pending := []simJob{{node: g.Start, input: input}}
	outstanding, done := 1, 0
	var output []byte
	fire := func(key string, j *joinState, scope string) {
		parts := make([][]byte, j.expected)
		for i := range parts {
			parts[i] = j.parts[i]
		}
		pending = append(pending, simJob{node: j.node, scope: scope, parts: parts, join: true})
		delete(joins, key)
	}
	for len(pending) > 0 {
		if outstanding <= 0 {
			t.Fatalf("the outstanding count is %d with %d jobs pending (first: %s)", outstanding, len(pending), pending[0].node.ID)
		}
		i := rng.IntN(len(pending))
		job := pending[i]
		pending = append(pending[:i], pending[i+1:]...)
		v, err := job.node.Decode(g.Codec, job.input, job.parts)
		if err != nil {
			t.Fatalf("decode %s: %v", job.node.ID, err)
		}
		out, err := job.node.Call(nil, v)
		if err != nil {
			t.Fatalf("call %s: %v", job.node.ID, err)
		}
		outBytes, _ := g.Codec.Marshal(out)
		plan, err := g.Plan(job.node, job.scope, out, outBytes)
		if err != nil {
			t.Fatalf("plan after %s at %q: %v", job.node.ID, job.scope, err)
		}
		done++
		outstanding += plan.Detached
		if plan.CompleteRun {
			outstanding--
			output = outBytes
		}
		for _, nj := range plan.Jobs {
			pending = append(pending, simJob{node: g.ByID[nj.NodeID], scope: nj.Scope, input: nj.Input})
		}
		for _, o := range plan.OpenJoins {
			key := o.NodeID + "@" + o.Scope
			j := &joinState{node: g.ByID[o.NodeID], expected: o.Expected, parts: map[int][]byte{}}
			joins[key] = j
			if o.Expected == 0 {
				fire(key, j, o.Scope)
			}
		}
		if a := plan.Arrive; a != nil {
			key := a.NodeID + "@" + a.Scope
			j := joins[key]
			if j == nil {
				t.Fatalf("%s arrives at %s, which is not open", job.node.ID, key)
			}
			j.parts[a.Slot] = outBytes
			if len(j.parts) == j.expected {
				fire(key, j, a.Scope)
			}
		}
		if outstanding == 0 && len(pending) > 0 {
			t.Fatalf("the count reached 0 after %s with %d jobs pending", job.node.ID, len(pending))
		}
	}
	if outstanding != 0 || len(joins) != 0 || output == nil {
		t.Fatalf("after %d jobs: outstanding %d, open joins %d, output %s; want 0, 0 and the end node's", done, outstanding, len(joins), output)
	}
}
