package ductwork_test

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

func TestChain(t *testing.T) {
	double := step.New("double", func(_ step.Context, n int) (int, error) { return n * 2, nil })
	str := step.New("to-string", func(_ step.Context, n int) (string, error) { return strconv.Itoa(n), nil })
	wrap := step.New("wrap", func(_ step.Context, s string) (string, error) { return "(" + s + ")", nil })
	def := flow.MustDefine("chain", func(p *flow.Pipeline[int]) flow.End[string] {
		return flow.Chain(flow.Chain(flow.Start(p, double), str), wrap)
	})
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, 21)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Wait(waitCtx(t))
	if err != nil || out != "(42)" {
		t.Fatalf("out = %q, %v; want (42)", out, err)
	}
	steps, err := r.Steps(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, s := range steps {
		nodes = append(nodes, s.Node+"="+string(s.Output))
	}
	if got := strings.Join(nodes, " "); got != `double=42 to-string="42" wrap="(42)"` {
		t.Fatalf("steps: %s", got)
	}
}

// expandDef expands a slice of ints, squares each on its own branch and
// collapses the squares, which must arrive in index order.
func expandDef(name string) *flow.Definition[[]int, []int] {
	ident := step.New(name+"-ids", func(_ step.Context, in []int) ([]int, error) { return in, nil })
	square := step.New(name+"-square", func(_ step.Context, n int) (int, error) { return n * n, nil })
	gather := step.New(name+"-gather", func(_ step.Context, sq []int) ([]int, error) {
		if sq == nil {
			return nil, errors.New("collapse got a nil slice")
		}
		return sq, nil
	})
	return flow.MustDefine(name, func(p *flow.Pipeline[[]int]) flow.End[[]int] {
		return flow.Collapse(flow.Expand(flow.Start(p, ident), square), gather)
	})
}

func TestExpandCollapseOrder(t *testing.T) {
	def := expandDef("expand")
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	in := make([]int, 60)
	want := make([]int, 60)
	for i := range in {
		in[i] = 60 - i
		want[i] = in[i] * in[i]
	}
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Wait(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("collapse inputs out of order:\n got %v\nwant %v", out, want)
	}
}

func TestEmptyExpandCollapsesToEmptySlice(t *testing.T) {
	def := expandDef("empty-expand")
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, []int{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Wait(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if out == nil || len(out) != 0 {
		t.Fatalf("out = %#v, want an empty non-nil slice", out)
	}
}

func TestExpandInExpand(t *testing.T) {
	start := step.New("groups", func(_ step.Context, g [][]int) ([][]int, error) { return g, nil })
	group := step.New("group", func(_ step.Context, g []int) ([]int, error) { return g, nil })
	item := step.New("item", func(_ step.Context, n int) (int, error) { return n * 10, nil })
	sum := step.New("sum", func(_ step.Context, xs []int) (string, error) { return fmt.Sprint(xs), nil })
	all := step.New("all", func(_ step.Context, xs []string) (string, error) { return strings.Join(xs, "|"), nil })
	def := flow.MustDefine("nested", func(p *flow.Pipeline[[][]int]) flow.End[string] {
		items := flow.Expand(flow.Expand(flow.Start(p, start), group), item)
		return flow.Collapse(flow.Collapse(items, sum), all)
	})
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, [][]int{{1, 2, 3}, {}, {4}, {5, 6}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Wait(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if out != "[10 20 30]|[]|[40]|[50 60]" {
		t.Fatalf("out = %q", out)
	}
}

func TestDivideInExpandWithCombineOrderAndChains(t *testing.T) {
	ids := step.New("ids", func(_ step.Context, n int) ([]int, error) {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out, nil
	})
	each := step.New("each", func(_ step.Context, n int) (int, error) { return n, nil })
	plus := step.New("plus", func(_ step.Context, n int) (string, error) { return fmt.Sprintf("p%d", n+1), nil })
	plus2 := step.New("plus-again", func(_ step.Context, s string) (string, error) { return s + "+", nil })
	minus := step.New("minus", func(_ step.Context, n int) (string, error) { return fmt.Sprintf("m%d", n-1), nil })
	join := step.New("join", func(_ step.Context, xs []string) (string, error) { return strings.Join(xs, ","), nil })
	all := step.New("all", func(_ step.Context, xs []string) ([]string, error) { return xs, nil })
	def := flow.MustDefine("divide-in-expand", func(p *flow.Pipeline[int]) flow.End[[]string] {
		x := flow.Expand(flow.Start(p, ids), each)
		br := flow.Divide(x, plus, minus)
		longer := flow.Chain(br[0], plus2) // a different chain length on one branch
		return flow.Collapse(flow.Combine(join, longer, br[1]), all)
	})
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, 4)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Wait(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"p1+,m-1", "p2+,m0", "p3+,m1", "p4+,m2"}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("out = %v, want %v", out, want)
	}
}

func TestCombine2Heterogeneous(t *testing.T) {
	src := step.New("src", func(_ step.Context, n int) (int, error) { return n, nil })
	name := step.New("name", func(_ step.Context, n int) (string, error) { return fmt.Sprintf("n%d", n), nil })
	half := step.New("half", func(_ step.Context, n int) (float64, error) { return float64(n) / 2, nil })
	both := step.New("both", func(_ step.Context, p flow.Pair[string, float64]) (string, error) {
		return fmt.Sprintf("%s/%.1f", p.First, p.Second), nil
	})
	def := flow.MustDefine("combine2", func(p *flow.Pipeline[int]) flow.End[string] {
		a, b := flow.Divide2(flow.Start(p, src), name, half)
		return flow.Combine2(both, a, b)
	})
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, 5)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := r.Wait(waitCtx(t)); err != nil || out != "n5/2.5" {
		t.Fatalf("out = %q, %v", out, err)
	}
}

func TestDivertRoutesByKeyAndOtherwise(t *testing.T) {
	var mu sync.Mutex
	ran := map[string]int{}
	mark := func(name string) step.Step[int, string] {
		return step.New(name, func(_ step.Context, n int) (string, error) {
			mu.Lock()
			ran[name]++
			mu.Unlock()
			return fmt.Sprintf("%s:%d", name, n), nil
		})
	}
	src := step.New("src", func(_ step.Context, n int) (int, error) { return n, nil })
	fin := step.New("fin", func(_ step.Context, s string) (string, error) { return "[" + s + "]", nil })
	def := flow.MustDefine("divert", func(p *flow.Pipeline[int]) flow.End[string] {
		d := flow.Divert(flow.Start(p, src), func(n int) string {
			switch {
			case n < 0:
				return "neg"
			case n == 0:
				return "zero"
			}
			return "something else"
		})
		return flow.Converge(fin, flow.Case(d, "neg", mark("neg")), flow.Case(d, "zero", mark("zero")), flow.Otherwise(d, mark("pos")))
	})
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	for in, want := range map[int]string{-3: "[neg:-3]", 0: "[zero:0]", 8: "[pos:8]"} {
		r, err := ductwork.Trigger(waitCtx(t), e.client, def, in)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := r.Wait(waitCtx(t)); err != nil || out != want {
			t.Fatalf("input %d: out = %q, %v; want %q", in, out, err, want)
		}
		steps, _ := r.Steps(waitCtx(t))
		if len(steps) != 3 {
			t.Fatalf("input %d: %d step instances, want 3 (only the chosen case runs)", in, len(steps))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if ran["neg"] != 1 || ran["zero"] != 1 || ran["pos"] != 1 {
		t.Fatalf("case executions: %v", ran)
	}
}

func TestRunContextWriteOnce(t *testing.T) {
	var firstErr, secondErr, overwriteErr atomic.Value
	setter := step.New("set", func(ctx step.Context, n int) (int, error) {
		firstErr.Store(fmt.Sprint(ctx.Set("k", "v1")))
		secondErr.Store(fmt.Sprint(errors.Is(ctx.Set("k", "v2"), ductwork.ErrValueExists)))
		overwriteErr.Store(fmt.Sprint(ctx.Set("k2", 1)))
		if err := ctx.Set("k2", 2, step.Overwrite); err != nil {
			return 0, err
		}
		return n, nil
	})
	getter := step.New("get", func(ctx step.Context, n int) (string, error) {
		var v string
		var k2 int
		ok, err := ctx.Get("k", &v)
		if err != nil || !ok {
			return "", fmt.Errorf("get k: found=%v: %w", ok, err)
		}
		if _, err := ctx.Get("k2", &k2); err != nil {
			return "", err
		}
		missing, err := ctx.Get("nope", &v)
		return fmt.Sprintf("%s %d missing=%v", v, k2, missing), err
	})
	def := flow.MustDefine("run-context", func(p *flow.Pipeline[int]) flow.End[string] {
		return flow.Chain(flow.Start(p, setter), getter)
	})
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, 1)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Wait(waitCtx(t))
	if err != nil || out != "v1 2 missing=false" {
		t.Fatalf("out = %q, %v", out, err)
	}
	if firstErr.Load() != "<nil>" || secondErr.Load() != "true" {
		t.Fatalf("set: first %v, second is ErrValueExists: %v", firstErr.Load(), secondErr.Load())
	}
}
