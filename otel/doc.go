// Package otel traces and measures Ductwork with OpenTelemetry. It is the
// only Ductwork package that imports OpenTelemetry; the core exposes hooks
// (the interfaces of package ductworktype) and this package implements them
// with nothing but that public API, as any third-party hook would.
//
//	obs, err := otel.New(otel.Config{TracerProvider: tp, MeterProvider: mp})
//	if err != nil { ... }
//	client, err := ductwork.NewClient(b, &ductwork.Config{Hooks: []ductwork.Hook{obs}})
//
// The zero Config uses the global tracer and meter providers and the global
// propagator; while no global propagator is set, W3C Trace Context is used,
// so a run's steps always join the trace of its trigger.
//
// # Traces
//
// Triggering a run starts a producer span "ductwork.trigger <pipeline>" as a
// child of the caller's span, and writes its trace context into the run's
// metadata (for example the traceparent key). The metadata is stored with
// the run and comes back with every job claimed for it, in whatever process,
// so each step execution starts a consumer span "ductwork.step <node>" whose
// parent is the trigger span: all the steps of a run, their retries and their
// crash re-runs are one trace. The step runs with that span in its context,
// so spans the step creates nest under it.
//
// Step spans carry ductwork.pipeline, ductwork.node, ductwork.scope (the
// expansion path), ductwork.run_id, ductwork.step_id, ductwork.attempt,
// ductwork.crashes and ductwork.crash_rerun (the previous execution was lost
// with its process), set when the span starts; and, when it ends,
// ductwork.outcome: succeeded, retried, halted, error (a failure neither
// retried nor halted, such as a commit the database refused), released (a
// shutdown interrupted the step and gave its claim back) or stale (the claim
// had been lost and the result was discarded). Errors are recorded on the
// span with status Error, except for a released step, which did not fail.
// The step whose commit completes the run has ductwork.run_completed=true.
//
// A halt adds the event "ductwork.halt" (with ductwork.halt_reason) to the
// span of the step that halted the run. Reviving a run records a short span
// "ductwork.revive" with ductwork.run_id in the caller's trace.
//
// An execution lost with its process never ends its span, so the span is
// never exported; its re-run's span has ductwork.crash_rerun=true.
//
// # Metrics
//
// Counters (attributes ductwork.pipeline and ductwork.node for steps,
// ductwork.pipeline for runs):
//
//	ductwork.step.started     step executions started
//	ductwork.step.succeeded   step executions whose output was committed
//	ductwork.step.failed      step executions that failed; ductwork.outcome is retried, halted or error
//	ductwork.step.released    executions interrupted by a shutdown, claim given back
//	ductwork.step.stale       executions whose claim had been lost, result discarded
//	ductwork.step.crashed     crash re-runs started (the job's previous execution died with its process)
//	ductwork.step.reaped      running steps of dead processes made due again by this process (no attributes)
//	ductwork.run.triggered    runs triggered (inserted: with TriggerTx, before the caller commits)
//	ductwork.run.completed    runs completed, counted by the process that committed the last step
//	ductwork.run.halted       runs halted, counted by the process that halted them
//	ductwork.run.revived      runs revived (no attributes)
//	ductwork.process.reaped   dead processes reaped by this process (no attributes)
//
// In every process, started = succeeded + failed + released + stale +
// executions in progress; executions lost with a dead process are counted
// as started by that process only.
//
// Histograms, in seconds:
//
//	ductwork.step.duration    step execution, commit included; plus ductwork.outcome
//	ductwork.step.queue_wait  from the step being due to its claim, both by the database's clock
//
// and the up-down counter ductwork.step.inflight, the step executions in
// progress in this process.
package otel
