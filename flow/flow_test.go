package flow_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

func st[In, Out any](name string) step.Step[In, Out] {
	return step.New(name, func(step.Context, In) (Out, error) { var o Out; return o, nil })
}

func wantRule(t *testing.T, err error, rule, node string) {
	t.Helper()
	var de *flow.DefinitionError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v, want *DefinitionError with rule %q", err, rule)
	}
	if de.Rule != rule {
		t.Fatalf("rule = %q, want %q (err: %v)", de.Rule, rule, err)
	}
	if node != "" && de.Node != node {
		t.Fatalf("node = %q, want %q (err: %v)", de.Node, node, err)
	}
	if de.Pipeline != "p" || !strings.Contains(err.Error(), `pipeline "p"`) {
		t.Fatalf("error does not name the pipeline: %v", err)
	}
}

func TestDefinitionRules(t *testing.T) {
	type fn = func(p *flow.Pipeline[int]) flow.End[int]
	cases := []struct {
		name, rule, node string
		def              fn
	}{
		{"no start", flow.RuleNoStart, "", func(p *flow.Pipeline[int]) flow.End[int] { return flow.End[int]{} }},
		{"two starts", flow.RuleTwoStarts, "b", func(p *flow.Pipeline[int]) flow.End[int] {
			flow.Start(p, st[int, int]("a"))
			return flow.Start(p, st[int, int]("b"))
		}},
		{"duplicate name", flow.RuleDuplicateName, "a", func(p *flow.Pipeline[int]) flow.End[int] {
			return flow.Chain(flow.Start(p, st[int, int]("a")), st[int, int]("a"))
		}},
		{"nil step", flow.RuleNilStep, "", func(p *flow.Pipeline[int]) flow.End[int] {
			return flow.Chain[int, int](flow.Start(p, st[int, int]("a")), nil)
		}},
		{"empty name", flow.RuleEmptyName, "", func(p *flow.Pipeline[int]) flow.End[int] {
			return flow.Start(p, st[int, int](""))
		}},
		{"collapse without expand", flow.RuleCollapseNoExpand, "a", func(p *flow.Pipeline[int]) flow.End[int] {
			return flow.Collapse(flow.Start(p, st[int, int]("a")), st[[]int, int]("b"))
		}},
		{"expand never collapsed", flow.RuleEndOpen, "b", func(p *flow.Pipeline[int]) flow.End[int] {
			return flow.Expand(flow.Start(p, st[int, []int]("a")), st[int, int]("b"))
		}},
		{"combine from different divides", flow.RuleCombineMixed, "", func(p *flow.Pipeline[int]) flow.End[int] {
			a := flow.Start(p, st[int, int]("a"))
			x := flow.Divide(a, st[int, int]("x1"), st[int, int]("x2"))
			y := flow.Divide(x[0], st[int, int]("y1"), st[int, int]("y2"))
			return flow.Combine(st[[]int, int]("c"), y[0], x[1])
		}},
		{"combine missing a branch", flow.RuleCombineIncomplete, "a", func(p *flow.Pipeline[int]) flow.End[int] {
			a := flow.Start(p, st[int, int]("a"))
			x := flow.Divide(a, st[int, int]("x1"), st[int, int]("x2"), st[int, int]("x3"))
			return flow.Combine(st[[]int, int]("c"), x[0], x[1])
		}},
		{"combine of a plain node", flow.RuleCombineNoDivide, "a", func(p *flow.Pipeline[int]) flow.End[int] {
			return flow.Combine(st[[]int, int]("c"), flow.Start(p, st[int, int]("a")))
		}},
		{"divert without otherwise", flow.RuleNoOtherwise, "a", func(p *flow.Pipeline[int]) flow.End[int] {
			d := flow.Divert(flow.Start(p, st[int, int]("a")), func(int) string { return "x" })
			return flow.Converge(st[int, int]("c"), flow.Case(d, "x", st[int, int]("x")))
		}},
		{"converge misses a case", flow.RuleConvergeMissing, "a", func(p *flow.Pipeline[int]) flow.End[int] {
			d := flow.Divert(flow.Start(p, st[int, int]("a")), func(int) string { return "x" })
			flow.Case(d, "y", st[int, int]("y"))
			return flow.Converge(st[int, int]("c"), flow.Case(d, "x", st[int, int]("x")), flow.Otherwise(d, st[int, int]("o")))
		}},
		{"duplicate case", flow.RuleCaseDuplicate, "a", func(p *flow.Pipeline[int]) flow.End[int] {
			d := flow.Divert(flow.Start(p, st[int, int]("a")), func(int) string { return "x" })
			flow.Case(d, "x", st[int, int]("x1"))
			return flow.Case(d, "x", st[int, int]("x2"))
		}},
		{"dangling node", flow.RuleDangling, "b", func(p *flow.Pipeline[int]) flow.End[int] {
			a := flow.Start(p, st[int, int]("a"))
			flow.Chain(a, st[int, int]("b"))
			return a
		}},
		{"chain twice from one node", flow.RuleAlreadyContinues, "a", func(p *flow.Pipeline[int]) flow.End[int] {
			a := flow.Start(p, st[int, int]("a"))
			flow.Chain(a, st[int, int]("b"))
			return flow.Chain(a, st[int, int]("c"))
		}},
		{"output cannot be encoded", flow.RuleNotEncodable, "b", func(p *flow.Pipeline[int]) flow.End[int] {
			a := flow.Chain(flow.Start(p, st[int, int]("a")), st[int, func()]("b"))
			return flow.Chain(a, st[func(), int]("c"))
		}},
		{"node of another pipeline", flow.RuleNilDefine, "", func(p *flow.Pipeline[int]) flow.End[int] {
			var other flow.Node[int]
			_, _ = flow.Define("other", func(q *flow.Pipeline[int]) flow.End[int] {
				other = flow.Start(q, st[int, int]("x"))
				return other
			})
			flow.Start(p, st[int, int]("a"))
			return flow.Chain(other, st[int, int]("b"))
		}},
		{"combine across pipelines", flow.RuleForeignNode, "x", func(p *flow.Pipeline[int]) flow.End[int] {
			var other flow.Node[int]
			_, _ = flow.Define("other", func(q *flow.Pipeline[int]) flow.End[int] {
				other = flow.Start(q, st[int, int]("x"))
				return other
			})
			a := flow.Start(p, st[int, int]("a"))
			x := flow.Divide(a, st[int, int]("x1"), st[int, int]("x2"))
			return flow.Combine(st[[]int, int]("c"), x[0], other)
		}},
		{"nil divert key", flow.RuleNilKeyFunc, "a", func(p *flow.Pipeline[int]) flow.End[int] {
			d := flow.Divert[int](flow.Start(p, st[int, int]("a")), nil)
			return flow.Otherwise(d, st[int, int]("o"))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := flow.Define("p", tc.def)
			wantRule(t, err, tc.rule, tc.node)
		})
	}
}

func TestPipelineInputNotEncodable(t *testing.T) {
	_, err := flow.Define("p", func(p *flow.Pipeline[chan int]) flow.End[int] {
		return flow.Start(p, st[chan int, int]("a"))
	})
	wantRule(t, err, flow.RuleNotEncodable, "")
}

func TestFingerprintDeterministicAndShapeSensitive(t *testing.T) {
	def := func(second string) *flow.Definition[int, int] {
		return flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[int] {
			return flow.Chain(flow.Start(p, st[int, int]("a")), st[int, int](second))
		})
	}
	a1, a2, b := def("b"), def("b"), def("c")
	if a1.Fingerprint() != a2.Fingerprint() {
		t.Fatalf("same definition, different fingerprints: %s %s", a1.Fingerprint(), a2.Fingerprint())
	}
	if a1.Fingerprint() == b.Fingerprint() {
		t.Fatalf("renamed step kept the fingerprint %s", a1.Fingerprint())
	}
	if got := strings.Join(a1.NodeIDs(), ","); got != "a,b" {
		t.Fatalf("node IDs = %s", got)
	}
}

func TestVersionEntersFingerprint(t *testing.T) {
	def := func(opts ...flow.Option) *flow.Definition[int, int] {
		return flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[int] {
			return flow.Start(p, st[int, int]("a"))
		}, opts...)
	}
	plain, empty := def(), def(flow.Version(""))
	v2a, v2b, v3 := def(flow.Version("2")), def(flow.Version("2")), def(flow.Version("3"))
	if plain.Fingerprint() != empty.Fingerprint() {
		t.Errorf("Version(\"\") changed the fingerprint: %s, %s", plain.Fingerprint(), empty.Fingerprint())
	}
	if v2a.Fingerprint() != v2b.Fingerprint() {
		t.Errorf("one version, two fingerprints: %s, %s", v2a.Fingerprint(), v2b.Fingerprint())
	}
	if v2a.Fingerprint() == plain.Fingerprint() || v2a.Fingerprint() == v3.Fingerprint() {
		t.Errorf("fingerprints of no version, version 2 and version 3 = %s, %s, %s; want three different ones",
			plain.Fingerprint(), v2a.Fingerprint(), v3.Fingerprint())
	}
}

func TestNilDefinitionMethods(t *testing.T) {
	var d *flow.Definition[int, int]
	if d.Name() != "" || d.Fingerprint() != "" {
		t.Errorf("nil Definition: Name %q, Fingerprint %q; want zero values", d.Name(), d.Fingerprint())
	}
}

func TestMustDefinePanicsWithDefinitionError(t *testing.T) {
	defer func() {
		r := recover()
		if _, ok := r.(*flow.DefinitionError); !ok {
			t.Fatalf("recovered %v, want *DefinitionError", r)
		}
	}()
	flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[int] { return flow.End[int]{} })
}

func TestNestedStructuresDefine(t *testing.T) {
	_, err := flow.Define("p", func(p *flow.Pipeline[int]) flow.End[int] {
		a := flow.Start(p, st[int, [][]int]("a"))
		outer := flow.Expand(a, st[[]int, []int]("outer"))
		inner := flow.Expand(outer, st[int, int]("inner"))
		x, y := flow.Divide2(inner, st[int, int]("x"), st[int, string]("y"))
		c := flow.Combine2(st[flow.Pair[int, string], int]("c"), x, y)
		d := flow.Divert(c, func(v int) string { return "even" })
		e := flow.Chain(flow.Case(d, "even", st[int, int]("even")), st[int, int]("even2"))
		conv := flow.Converge(st[int, int]("conv"), e, flow.Otherwise(d, st[int, int]("odd")))
		innerDone := flow.Collapse(conv, st[[]int, int]("inner-collapse"))
		return flow.Collapse(innerDone, st[[]int, int]("outer-collapse"))
	})
	if err != nil {
		t.Fatal(err)
	}
}
