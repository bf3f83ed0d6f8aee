package otel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/step"
	gotel "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/ductwork-go/ductwork/otel"

// Config selects the OpenTelemetry providers. The zero value is valid: it
// uses the global providers and the global propagator, and W3C Trace Context
// when no global propagator is set.
type Config struct {
	// TracerProvider creates the tracer. Default otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider creates the meter. Default otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Propagator writes the trigger's trace context into the run's metadata
	// and reads it back for every step. Default otel.GetTextMapPropagator(),
	// or propagation.TraceContext while that one propagates nothing.
	Propagator propagation.TextMapPropagator
}

// Attribute keys of spans and metrics.
const (
	keyPipeline    = attribute.Key("ductwork.pipeline")
	keyFingerprint = attribute.Key("ductwork.fingerprint")
	keyNode        = attribute.Key("ductwork.node")
	keyScope       = attribute.Key("ductwork.scope")
	keyRunID       = attribute.Key("ductwork.run_id")
	keyStepID      = attribute.Key("ductwork.step_id")
	keyAttempt     = attribute.Key("ductwork.attempt")
	keyCrashes     = attribute.Key("ductwork.crashes")
	keyCrashRerun  = attribute.Key("ductwork.crash_rerun")
	keyOutcome     = attribute.Key("ductwork.outcome")
	keyRunDone     = attribute.Key("ductwork.run_completed")
	keyReason      = attribute.Key("ductwork.halt_reason")
	keySteps       = attribute.Key("ductwork.steps")
	keyAbandoned   = attribute.Key("ductwork.abandoned")
)

// Step outcomes, the values of ductwork.outcome.
const (
	outcomeSucceeded = "succeeded"
	outcomeRetried   = "retried"
	outcomeHalted    = "halted"
	outcomeError     = "error"
	outcomeReleased  = "released"
	outcomeStale     = "stale"
	outcomeCancelled = "cancelled"
)

// New returns an Observer, a hook that traces and measures a client's work;
// pass it in ductwork.Config.Hooks. It returns an error when an instrument
// cannot be created.
func New(cfg Config) (*Observer, error) {
	return newObserver(cfg)
}

// Observer traces and measures a client's work. It implements the trigger,
// step, halt, revive, reap and stuck hooks of package ductworktype, and uses
// nothing else of the library. It is safe for concurrent use.
type Observer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator

	stepStarted, stepSucceeded, stepFailed, stepCrashed metric.Int64Counter
	stepReleased, stepStale, stepReaped                 metric.Int64Counter
	stepDuration, stepQueueWait                         metric.Float64Histogram
	stepInflight                                        metric.Int64UpDownCounter
	runTriggered, runCompleted, runHalted, runRevived   metric.Int64Counter
	processReaped                                       metric.Int64Counter
	stepTimedOut, stepAbandoned                         metric.Int64Counter
	stepStuck                                           metric.Int64UpDownCounter

	// open maps a claimed job to its step span while the step executes, so
	// the halt hook (called with the commit's context) finds the span.
	open sync.Map // *ductworktype.Execution -> trace.Span
}

// secondsBuckets suit steps and waits from milliseconds to an hour.
var secondsBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

func newObserver(cfg Config) (*Observer, error) {
	tp, mp, prop := cfg.TracerProvider, cfg.MeterProvider, cfg.Propagator
	if tp == nil {
		tp = gotel.GetTracerProvider()
	}
	if mp == nil {
		mp = gotel.GetMeterProvider()
	}
	if prop == nil {
		prop = globalPropagator{}
	}
	o := &Observer{tracer: tp.Tracer(ScopeName), prop: prop}
	m := mp.Meter(ScopeName)

	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(secondsBuckets...))
		errs = append(errs, err)
		return h
	}
	o.stepStarted = counter("ductwork.step.started", "{step}", "Step executions started.")
	o.stepSucceeded = counter("ductwork.step.succeeded", "{step}", "Step executions whose output was committed.")
	o.stepFailed = counter("ductwork.step.failed", "{step}", "Step executions that failed (ductwork.outcome: retried, halted or error).")
	o.stepCrashed = counter("ductwork.step.crashed", "{step}", "Crash re-runs started: executions of steps whose previous execution was lost with its process.")
	o.stepReleased = counter("ductwork.step.released", "{step}", "Step executions interrupted by a shutdown; their claims were given back.")
	o.stepStale = counter("ductwork.step.stale", "{step}", "Step executions whose claim had been lost; their result was discarded.")
	o.stepReaped = counter("ductwork.step.reaped", "{step}", "Running steps of dead processes made due again by this process's reaper.")
	o.stepDuration = histogram("ductwork.step.duration", "Duration of step executions, commit included.")
	o.stepQueueWait = histogram("ductwork.step.queue_wait", "Time from a step being due to its claim, by the database clock.")
	var err error
	o.stepInflight, err = m.Int64UpDownCounter("ductwork.step.inflight", metric.WithUnit("{step}"),
		metric.WithDescription("Step executions in progress in this process."))
	errs = append(errs, err)
	o.runTriggered = counter("ductwork.run.triggered", "{run}", "Runs triggered.")
	o.runCompleted = counter("ductwork.run.completed", "{run}", "Runs completed (counted by the process that committed the last step).")
	o.runHalted = counter("ductwork.run.halted", "{run}", "Runs halted (counted by the process that halted them).")
	o.runRevived = counter("ductwork.run.revived", "{run}", "Halted runs revived.")
	o.stepTimedOut = counter("ductwork.step.timed_out", "{step}", "Step executions that exceeded their timeout (ductwork.abandoned: the step ignored its context and was abandoned).")
	o.stepAbandoned = counter("ductwork.step.abandoned", "{step}", "Steps abandoned: they had not returned StuckGrace after their context was cancelled (timeout, cancelled run, shutdown).")
	o.stepStuck, err = m.Int64UpDownCounter("ductwork.step.stuck", metric.WithUnit("{goroutine}"),
		metric.WithDescription("Abandoned step goroutines of this process still running."))
	errs = append(errs, err)
	o.processReaped = counter("ductwork.process.reaped", "{process}", "Dead processes reaped by this process.")
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("ductwork/otel: %w", err)
		}
	}
	return o, nil
}

// TriggerStart starts the producer span of a trigger and injects its
// context into the run's metadata.
func (o *Observer) TriggerStart(ctx context.Context, info *ductworktype.TriggerInfo) (context.Context, func(int64, error)) {
	ctx, span := o.tracer.Start(ctx, "ductwork.trigger "+info.Pipeline,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(keyPipeline.String(info.Pipeline), keyFingerprint.String(info.Fingerprint)))
	if info.Metadata == nil {
		info.Metadata = map[string]string{}
	}
	o.prop.Inject(ctx, propagation.MapCarrier(info.Metadata))
	return ctx, func(runID int64, err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else {
			span.SetAttributes(keyRunID.Int64(runID))
			o.runTriggered.Add(ctx, 1, metric.WithAttributes(keyPipeline.String(info.Pipeline)))
		}
		span.End()
	}
}

// StepStart starts the consumer span of a step execution, as a child of the
// trigger's span carried in the job's metadata.
func (o *Observer) StepStart(ctx context.Context, job *ductworktype.Execution) (context.Context, func(ductworktype.StepEnd)) {
	ctx = o.prop.Extract(ctx, propagation.MapCarrier(job.Metadata))
	ctx, span := o.tracer.Start(ctx, "ductwork.step "+job.Node,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			keyPipeline.String(job.Pipeline),
			keyNode.String(job.Node),
			keyScope.String(job.Scope),
			keyRunID.Int64(job.RunID),
			keyStepID.Int64(job.StepID),
			keyAttempt.Int(job.Attempt),
			keyCrashes.Int(job.Crashes),
			keyCrashRerun.Bool(job.Crashes > 0),
		))
	o.open.Store(job, span)
	start := time.Now()

	pn := metric.WithAttributeSet(attribute.NewSet(keyPipeline.String(job.Pipeline), keyNode.String(job.Node)))
	o.stepStarted.Add(ctx, 1, pn)
	o.stepInflight.Add(ctx, 1, pn)
	if job.Crashes > 0 {
		o.stepCrashed.Add(ctx, 1, pn)
	}
	if !job.DueAt.IsZero() && !job.ClaimedAt.IsZero() {
		o.stepQueueWait.Record(ctx, max(job.ClaimedAt.Sub(job.DueAt), 0).Seconds(), pn)
	}

	return ctx, func(end ductworktype.StepEnd) {
		o.open.Delete(job)
		outcome := outcomeOf(end)
		span.SetAttributes(keyOutcome.String(outcome))
		if end.Err != nil {
			span.RecordError(end.Err)
			if !end.Released {
				span.SetStatus(codes.Error, end.Err.Error())
			}
		}
		if te := (*step.TimeoutError)(nil); errors.As(end.Err, &te) {
			o.stepTimedOut.Add(ctx, 1, metric.WithAttributes(keyPipeline.String(job.Pipeline), keyNode.String(job.Node), keyAbandoned.Bool(te.Abandoned)))
		}
		if end.RunCompleted {
			span.SetAttributes(keyRunDone.Bool(true))
			o.runCompleted.Add(ctx, 1, metric.WithAttributes(keyPipeline.String(job.Pipeline)))
		}
		switch outcome {
		case outcomeSucceeded:
			o.stepSucceeded.Add(ctx, 1, pn)
		case outcomeReleased:
			o.stepReleased.Add(ctx, 1, pn)
		case outcomeStale:
			o.stepStale.Add(ctx, 1, pn)
		case outcomeCancelled:
			// Neither a success nor a failure: the run was cancelled.
		default:
			o.stepFailed.Add(ctx, 1, metric.WithAttributes(keyPipeline.String(job.Pipeline), keyNode.String(job.Node), keyOutcome.String(outcome)))
		}
		o.stepDuration.Record(ctx, time.Since(start).Seconds(),
			metric.WithAttributes(keyPipeline.String(job.Pipeline), keyNode.String(job.Node), keyOutcome.String(outcome)))
		o.stepInflight.Add(ctx, -1, pn) // last: once it is back to zero, everything above is recorded
		span.End()
	}
}

func outcomeOf(end ductworktype.StepEnd) string {
	switch {
	case end.Cancelled:
		return outcomeCancelled
	case end.Stale:
		return outcomeStale
	case end.Released:
		return outcomeReleased
	case end.Halted:
		return outcomeHalted
	case end.Retried:
		return outcomeRetried
	case end.Err != nil:
		return outcomeError
	default:
		return outcomeSucceeded
	}
}

// RunHalted adds a "ductwork.halt" event to the span of the step that halted
// the run. When there is none (the step's input could not be decoded), it
// records the event on a short "ductwork.halt <pipeline>" span in the run's
// trace.
func (o *Observer) RunHalted(ctx context.Context, job *ductworktype.Execution, reason string) {
	o.runHalted.Add(ctx, 1, metric.WithAttributes(keyPipeline.String(job.Pipeline)))
	event := trace.WithAttributes(keyRunID.Int64(job.RunID), keyNode.String(job.Node), keyReason.String(reason))
	if v, ok := o.open.Load(job); ok {
		v.(trace.Span).AddEvent("ductwork.halt", event)
		return
	}
	ctx = o.prop.Extract(ctx, propagation.MapCarrier(job.Metadata))
	_, span := o.tracer.Start(ctx, "ductwork.halt "+job.Pipeline, trace.WithAttributes(
		keyPipeline.String(job.Pipeline), keyNode.String(job.Node), keyRunID.Int64(job.RunID), keyStepID.Int64(job.StepID)))
	span.AddEvent("ductwork.halt", event)
	span.SetStatus(codes.Error, reason)
	span.End()
}

// StepStuck counts an abandoned step, and its goroutine as stuck until it
// returns.
func (o *Observer) StepStuck(ctx context.Context, job *ductworktype.Execution, _ error) func() {
	pn := metric.WithAttributeSet(attribute.NewSet(keyPipeline.String(job.Pipeline), keyNode.String(job.Node)))
	o.stepAbandoned.Add(ctx, 1, pn)
	o.stepStuck.Add(ctx, 1, pn)
	return func() { o.stepStuck.Add(context.WithoutCancel(ctx), -1, pn) }
}

// RunRevived records a short "ductwork.revive" span in the caller's trace.
func (o *Observer) RunRevived(ctx context.Context, runID int64, jobs int) {
	o.runRevived.Add(ctx, 1)
	_, span := o.tracer.Start(ctx, "ductwork.revive", trace.WithAttributes(keyRunID.Int64(runID), keySteps.Int(jobs)))
	span.End()
}

// Reaped counts the processes and steps a reaper recovered.
func (o *Observer) Reaped(ctx context.Context, _ string, res *ductworktype.Reap) {
	if n := len(res.Processes); n > 0 {
		o.processReaped.Add(ctx, int64(n))
	}
	if res.Steps > 0 {
		o.stepReaped.Add(ctx, int64(res.Steps))
	}
}

// globalPropagator delegates to the global propagator, or to W3C Trace
// Context while the global one propagates nothing (it is a no-op until the
// application sets one), so the trace context always travels with a run.
type globalPropagator struct{}

func (globalPropagator) get() propagation.TextMapPropagator {
	if p := gotel.GetTextMapPropagator(); len(p.Fields()) > 0 {
		return p
	}
	return propagation.TraceContext{}
}

func (g globalPropagator) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	g.get().Inject(ctx, c)
}

func (g globalPropagator) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	return g.get().Extract(ctx, c)
}

func (g globalPropagator) Fields() []string { return g.get().Fields() }
