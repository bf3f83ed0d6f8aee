package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/internal/graph"
	"github.com/ductwork-go/ductwork/step"
)

// The chaos pipeline uses every transition:
//
//	start → Expand(load) → Divide2(a1, b1) → a1→a2 | b1→b2→b3 → Combine(combine)
//	→ Divert on the element's key: Case "x"(case-x) | Case "y"(case-y) | Otherwise(case-other)
//	→ Converge(converge) → Collapse(collapse) → Chain(final)
//
// Every value is a deterministic function of the run's input, so the checker
// can compute what each step instance must have committed. Each output also
// carries the tag of the execution that produced it, which ties a committed
// result to exactly one recorded execution.

// Input is a run's input: run number and expansion size.
type Input struct {
	Run int `json:"run"`
	N   int `json:"n"`
}

// Item is what flows between the steps.
type Item struct {
	I   int    `json:"i"`
	Key string `json:"key"`
	V   int64  `json:"v"`
	Tag string `json:"tag"` // the producing execution
}

const modulus = 1_000_000_007

// Node names.
const (
	nStart     = "chaos-start"
	nLoad      = "chaos-load"
	nA1        = "chaos-a1"
	nA2        = "chaos-a2"
	nB1        = "chaos-b1"
	nB2        = "chaos-b2"
	nB3        = "chaos-b3"
	nCombine   = "chaos-combine"
	nCaseX     = "chaos-case-x"
	nCaseY     = "chaos-case-y"
	nOther     = "chaos-case-other"
	nConverge  = "chaos-converge"
	nCollapse  = "chaos-collapse"
	nFinal     = "chaos-final"
	pipeName   = "chaos"
	keyOfOther = "z"
)

var caseKeys = []string{"x", "y", keyOfOther}

// inputFor is the input of run number i: expansions of 0 to 8 elements.
func inputFor(i int) Input { return Input{Run: i, N: i % 9} }

func keyOf(run, i int) string { return caseKeys[(run*7+i)%len(caseKeys)] }

func mix(v int64, node string) int64 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(node))
	return (v%modulus*31 + int64(h.Sum32())) % modulus
}

func combineV(a, b int64) int64 { return (a*7 + b) % modulus }

func collapseV(items []Item) int64 {
	acc := int64(1)
	for _, it := range items {
		acc = (acc*131 + it.V) % modulus
	}
	return acc
}

// recorder is set in worker processes: it records every execution.
var recorder *execRecorder

// run wraps a step body: it records the execution's start, sleeps 1–20ms
// (so that kills land inside steps), computes the output, tags it and
// records it before returning it.
func run[T any](ctx step.Context, compute func(tag string) T) (T, error) {
	var zero T
	tag := tagOf(ctx)
	if recorder != nil {
		if err := recorder.start(ctx, tag); err != nil {
			return zero, err
		}
	}
	select {
	case <-time.After(time.Duration(1+rand.IntN(20)) * time.Millisecond):
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	out := compute(tag)
	if recorder != nil {
		if err := recorder.returned(ctx, tag, out); err != nil {
			return zero, err
		}
	}
	return out, nil
}

// chainStepOf is the chain step name as a plain step (kind "") or as a
// transactional step of the backend kind (-txsteps).
func chainStepOf(kind, name string) step.Step[Item, Item] {
	var opts []step.Option
	if name == limitedNode && stepLimit > 0 {
		opts = append(opts, step.Concurrency(stepLimit))
	}
	return newStep(kind, name, func(in Item, tag string) Item {
		return Item{I: in.I, Key: in.Key, V: mix(in.V, name), Tag: tag}
	}, opts...)
}

// newStep makes a chaos step computing its output with compute: a plain
// step wrapped by run (kind ""), or a transactional step of the backend
// kind wrapped by runTx.
func newStep[In, Out any](kind, name string, compute func(in In, tag string) Out, opts ...step.Option) step.Step[In, Out] {
	if kind != "" {
		return newTxStep(kind, name, compute, opts...)
	}
	return step.New(name, func(ctx step.Context, in In) (Out, error) {
		return run(ctx, func(tag string) Out { return compute(in, tag) })
	}, opts...)
}

// limitEnv carries -limit to the workers: a concurrency limit on
// limitedNode, read when the pipeline is defined (the controller sets it
// before it starts any worker).
const limitEnv = "DUCTWORK_CHAOS_LIMIT"

// limitedNode is the step -limit applies to.
const limitedNode = nA2

var stepLimit, _ = strconv.Atoi(os.Getenv(limitEnv))

func startCompute(in Input, tag string) []Item {
	items := make([]Item, in.N)
	for i := range items {
		items[i] = Item{I: i, Key: keyOf(in.Run, i), V: mix(int64(in.Run*100+i), nStart), Tag: tag}
	}
	return items
}

func combineCompute(in []Item, tag string) Item {
	if len(in) != 2 {
		return Item{V: -1, Tag: tag} // caught by the value check
	}
	return Item{I: in[0].I, Key: in[0].Key, V: mix(combineV(in[0].V, in[1].V), nCombine), Tag: tag}
}

func collapseCompute(in []Item, tag string) Item {
	return Item{I: len(in), V: mix(collapseV(in), nCollapse), Tag: tag}
}

// Chaos is the pipeline every worker registers.
var Chaos = definePipeline("")

// definePipeline defines the chaos pipeline with plain steps (kind "") or
// with every step a transactional step of the backend kind (-txsteps): same
// name, nodes and values, so the same checks apply to both.
func definePipeline(kind string) *flow.Definition[Input, Item] {
	return flow.MustDefine(pipeName, func(p *flow.Pipeline[Input]) flow.End[Item] {
		chain := func(name string) step.Step[Item, Item] { return chainStepOf(kind, name) }
		items := flow.Start(p, newStep(kind, nStart, startCompute))
		el := flow.Expand(items, chain(nLoad))
		a, b := flow.Divide2(el, chain(nA1), chain(nB1))
		a = flow.Chain(a, chain(nA2))
		b = flow.Chain(flow.Chain(b, chain(nB2)), chain(nB3))
		joined := flow.Combine(newStep(kind, nCombine, combineCompute), a, b)
		d := flow.Divert(joined, func(it Item) string { return it.Key })
		conv := flow.Converge(chain(nConverge),
			flow.Case(d, "x", chain(nCaseX)), flow.Case(d, "y", chain(nCaseY)), flow.Otherwise(d, chain(nOther)))
		return flow.Chain(flow.Collapse(conv, newStep(kind, nCollapse, collapseCompute)), chain(nFinal))
	}, flow.Retries(3), flow.Backoff(50*time.Millisecond, time.Second))
}

// instance names one step instance of a run.
type instance struct {
	node, scope string
}

func (i instance) String() string { return fmt.Sprintf("%s@%q", i.node, i.scope) }

// expected returns every step instance a run with input in must have, with
// the values its committed output must carry (one for most steps, N for the
// start step), and the run's final value.
func expected(in Input) (map[instance][]int64, int64) {
	want := map[instance][]int64{}
	starts := make([]int64, in.N)
	var finals []Item
	for i := range in.N {
		v := mix(int64(in.Run*100+i), nStart)
		starts[i] = v
		scope := graph.ChildScope("", i)
		put := func(node string, v int64) int64 { want[instance{node, scope}] = []int64{v}; return v }
		v = put(nLoad, mix(v, nLoad))
		a := put(nA2, mix(put(nA1, mix(v, nA1)), nA2))
		b := put(nB3, mix(put(nB2, mix(put(nB1, mix(v, nB1)), nB2)), nB3))
		c := put(nCombine, mix(combineV(a, b), nCombine))
		caseNode := map[string]string{"x": nCaseX, "y": nCaseY}[keyOf(in.Run, i)]
		if caseNode == "" {
			caseNode = nOther
		}
		c = put(caseNode, mix(c, caseNode))
		finals = append(finals, Item{V: put(nConverge, mix(c, nConverge))})
	}
	want[instance{nStart, ""}] = starts
	col := mix(collapseV(finals), nCollapse)
	want[instance{nCollapse, ""}] = []int64{col}
	final := mix(col, nFinal)
	want[instance{nFinal, ""}] = []int64{final}
	return want, final
}

// tagKey carries the execution tag from the step hook to the step.
type tagKey struct{}

func tagOf(ctx context.Context) string {
	if t, ok := ctx.Value(tagKey{}).(*execTag); ok {
		return t.tag
	}
	return "untagged"
}
