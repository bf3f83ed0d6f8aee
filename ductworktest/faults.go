package ductworktest

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ductwork-go/ductwork/internal/engine"
	"github.com/ductwork-go/ductwork/internal/graph"
	"github.com/ductwork-go/ductwork/step"
)

// Always, as the times argument of a fault, injects it into every execution.
const Always = -1

// ErrInjected is the error a Fail fault makes a step return.
var ErrInjected = errors.New("ductworktest: injected failure")

type faultKind int

const (
	faultFail faultKind = iota
	faultPanic
	faultCrash
	faultDelay
)

func (k faultKind) String() string {
	return [...]string{"fail", "panic", "crash", "delay"}[k]
}

type fault struct {
	step  string
	kind  faultKind
	times int
	delay time.Duration
}

// Fail makes the first times executions of every instance of the named step
// return ErrInjected instead of running (Always: every execution). Each one
// spends the step's retry budget, as a real error would.
func Fail(stepName string, times int) Option {
	return func(c *config) { c.faults = append(c.faults, fault{step: stepName, kind: faultFail, times: times}) }
}

// Panic makes the first times executions of every instance of the named step
// panic instead of running. A panic is a step failure: it spends the retry
// budget, and a halt records a *step.PanicError.
func Panic(stepName string, times int) Option {
	return func(c *config) { c.faults = append(c.faults, fault{step: stepName, kind: faultPanic, times: times}) }
}

// Crash loses the first times executions of every instance of the named step
// as a process crash would: nothing is committed, the claim is given back and
// the step runs again as a crash re-run (StepInfo.CrashReruns grows; the
// attempt number and the retry budget do not change).
func Crash(stepName string, times int) Option {
	return func(c *config) { c.faults = append(c.faults, fault{step: stepName, kind: faultCrash, times: times}) }
}

// Delay holds every execution of the named step for d before it runs (less if
// the step's context ends first: then the step sees its context's error).
func Delay(stepName string, d time.Duration) Option {
	return func(c *config) {
		c.faults = append(c.faults, fault{step: stepName, kind: faultDelay, times: Always, delay: d})
	}
}

// injector applies the faults of one Env. Counts are kept per step instance
// (step name and scope) for the life of the Env, so a revived run continues
// where the counts left off.
type injector struct {
	faults map[string][]fault
	mu     sync.Mutex
	seen   map[instance]map[faultKind]int
}

type instance struct {
	run   int64
	node  string
	scope string
}

func newInjector(fs []fault) *injector {
	in := &injector{faults: map[string][]fault{}, seen: map[instance]map[faultKind]int{}}
	for _, f := range fs {
		in.faults[f.step] = append(in.faults[f.step], f)
	}
	return in
}

// due reports whether fault f applies to this execution of inst, counting it.
func (in *injector) due(inst instance, f fault) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	m := in.seen[inst]
	if m == nil {
		m = map[faultKind]int{}
		in.seen[inst] = m
	}
	if f.times != Always && m[f.kind] >= f.times {
		return false
	}
	m[f.kind]++
	return true
}

func (in *injector) intercept(sc step.Context, node *graph.Node, scope string, next func() (any, error)) (any, error) {
	fs := in.faults[node.ID]
	if len(fs) == 0 {
		return next()
	}
	inst := instance{run: sc.RunID(), node: node.ID, scope: scope}
	for _, f := range fs {
		if !in.due(inst, f) {
			continue
		}
		switch f.kind {
		case faultFail:
			return nil, fmt.Errorf("step %q: %w", node.ID, ErrInjected)
		case faultPanic:
			panic(fmt.Sprintf("ductworktest: injected panic in step %q", node.ID))
		case faultCrash:
			return nil, engine.ErrSimulatedCrash
		case faultDelay:
			select {
			case <-sc.Done():
				return nil, sc.Err()
			case <-time.After(f.delay):
			}
		}
	}
	return next()
}
