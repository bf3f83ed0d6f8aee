package otel_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/internal/leakcheck"
	"github.com/ductwork-go/ductwork/otel"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const helperEnv = "DUCTWORK_OTEL_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		runHelper()
		os.Exit(0)
	}
	leakcheck.Main(m)
}

// The chain pipeline: a -> b -> c. In a helper process, b marks the file
// named by DW_MARK and blocks until it is killed.
var (
	stepA = step.New("a", func(_ step.Context, n int) (int, error) { return n + 1, nil })
	stepB = step.New("b", func(ctx step.Context, n int) (int, error) {
		if os.Getenv(helperEnv) != "" {
			if err := os.WriteFile(os.Getenv("DW_MARK"), nil, 0o644); err != nil {
				panic(err)
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return n * 10, nil
	})
	stepC    = step.New("c", func(_ step.Context, n int) (int, error) { return n + 100, nil })
	chainDef = flow.MustDefine("otel-chain", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Chain(flow.Chain(flow.Start(p, stepA), stepB), stepC)
	})
)

type env struct {
	client *ductwork.Client
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	path   string
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newEnv opens a migrated SQLite database under t.TempDir and a client on it
// whose hooks record spans and metrics in memory. The propagator is left to
// its default.
func newEnv(t *testing.T, defs ...ductwork.Definition) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dw.db")
	b, err := sqlite.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if err := b.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	hooks, err := otel.New(otel.Config{
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger(), Hooks: []ductwork.Hook{hooks}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(defs...); err != nil {
		t.Fatal(err)
	}
	return &env{client: c, spans: spans, reader: reader, path: path}
}

// startSupervisor runs a fast-polling supervisor until the test ends.
func startSupervisor(t *testing.T, c *ductwork.Client, cfg *supervisor.Config) {
	t.Helper()
	if cfg == nil {
		cfg = &supervisor.Config{}
	}
	cfg.PollInterval = 5 * time.Millisecond
	s, err := supervisor.New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("supervisor: %v", err)
		}
	})
}

func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds, failing the test after 30 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func attrOf(attrs []attribute.KeyValue, key string) string {
	for _, a := range attrs {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// spanNamed returns the only ended span called name.
func spanNamed(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans named %q, want 1", len(found), name)
	}
	return found[0]
}

// collect sums the data points of every instrument: counters by value,
// histograms by count.
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] += int64(p.Count)
				}
			default:
				t.Fatalf("unexpected data type %T for %s", d, m.Name)
			}
		}
	}
	return out
}

// TestChainIsOneTrace: the trigger span is the parent of every step span,
// and the trace context is stored with the run.
func TestChainIsOneTrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, chainDef)
	startSupervisor(t, e.client, nil)
	r, err := ductwork.Trigger(waitCtx(t), e.client, chainDef, 4)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := r.Wait(waitCtx(t)); err != nil || out != 150 {
		t.Fatalf("out = %d, %v; want 150", out, err)
	}
	waitFor(t, "4 ended spans", func() bool { return len(e.spans.Ended()) == 4 })
	ended := e.spans.Ended()

	trig := spanNamed(t, ended, "ductwork.trigger otel-chain")
	if trig.SpanKind() != trace.SpanKindProducer || attrOf(trig.Attributes(), "ductwork.run_id") != fmt.Sprint(r.ID) {
		t.Fatalf("trigger span: kind %v, attributes %v", trig.SpanKind(), trig.Attributes())
	}
	info, err := e.client.Inspect(waitCtx(t), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tp := info.Metadata["traceparent"]; tp != fmt.Sprintf("00-%s-%s-01", trig.SpanContext().TraceID(), trig.SpanContext().SpanID()) {
		t.Fatalf("stored traceparent %q does not name the trigger span", tp)
	}

	seen := map[trace.SpanID]bool{}
	for _, node := range []string{"a", "b", "c"} {
		s := spanNamed(t, ended, "ductwork.step "+node)
		if s.SpanContext().TraceID() != trig.SpanContext().TraceID() {
			t.Fatalf("step %s: trace %s, want the trigger's %s", node, s.SpanContext().TraceID(), trig.SpanContext().TraceID())
		}
		if s.Parent().SpanID() != trig.SpanContext().SpanID() || !s.Parent().IsRemote() {
			t.Fatalf("step %s: parent %s (remote %v), want the trigger span %s, remote", node, s.Parent().SpanID(), s.Parent().IsRemote(), trig.SpanContext().SpanID())
		}
		if seen[s.SpanContext().SpanID()] {
			t.Fatalf("step %s reuses a span ID", node)
		}
		seen[s.SpanContext().SpanID()] = true
		want := map[string]string{
			"ductwork.pipeline": "otel-chain", "ductwork.node": node, "ductwork.run_id": fmt.Sprint(r.ID),
			"ductwork.attempt": "1", "ductwork.crash_rerun": "false", "ductwork.scope": "", "ductwork.outcome": "succeeded",
		}
		for k, v := range want {
			if got := attrOf(s.Attributes(), k); got != v {
				t.Errorf("step %s: %s = %q, want %q", node, k, got, v)
			}
		}
		if attrOf(s.Attributes(), "ductwork.step_id") == "" {
			t.Errorf("step %s: no ductwork.step_id", node)
		}
		if s.SpanKind() != trace.SpanKindConsumer || s.Status().Code != codes.Unset {
			t.Errorf("step %s: kind %v, status %v", node, s.SpanKind(), s.Status())
		}
		if got, want := attrOf(s.Attributes(), "ductwork.run_completed"), map[bool]string{true: "true"}[node == "c"]; got != want {
			t.Errorf("step %s: ductwork.run_completed = %q, want %q", node, got, want)
		}
	}
}

// The flaky pipeline: x -> y -> z, where y fails once (in the whole test
// binary) and is retried.
var (
	yFailed  atomic.Bool
	flakyDef = flow.MustDefine("otel-flaky", func(p *flow.Pipeline[int]) flow.End[int] {
		x := flow.Start(p, step.New("x", func(_ step.Context, n int) (int, error) { return n, nil }))
		y := flow.Chain(x, step.New("y", func(_ step.Context, n int) (int, error) {
			if yFailed.CompareAndSwap(false, true) {
				return 0, errors.New("flaky")
			}
			return n, nil
		}, step.Retries(3), step.Backoff(time.Millisecond, 5*time.Millisecond)))
		return flow.Chain(y, step.New("z", func(_ step.Context, n int) (int, error) { return n, nil }))
	})
)

// TestMetricsAddUp: N runs of a three-step chain, one step failing once.
func TestMetricsAddUp(t *testing.T) {
	t.Parallel()
	const n = 5
	yFailed.Store(false)
	e := newEnv(t, flakyDef)
	startSupervisor(t, e.client, &supervisor.Config{Workers: 4})
	var runs []*ductwork.Run[int]
	for i := range n {
		r, err := ductwork.Trigger(waitCtx(t), e.client, flakyDef, i)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	for i, r := range runs {
		if out, err := r.Wait(waitCtx(t)); err != nil || out != i {
			t.Fatalf("run %d: out = %d, %v", i, out, err)
		}
	}
	// Wait returns when the last commit is visible; the hooks end just after.
	waitFor(t, "every step to be counted", func() bool {
		m := collect(t, e.reader)
		return m["ductwork.step.succeeded"] == 3*n && m["ductwork.step.inflight"] == 0
	})
	m := collect(t, e.reader)

	if m["ductwork.step.started"] != m["ductwork.step.succeeded"]+m["ductwork.step.failed"] {
		t.Errorf("started %d != succeeded %d + failed %d", m["ductwork.step.started"], m["ductwork.step.succeeded"], m["ductwork.step.failed"])
	}
	want := map[string]int64{
		"ductwork.step.started":    3*n + 1,
		"ductwork.step.failed":     1,
		"ductwork.step.duration":   3*n + 1,
		"ductwork.step.queue_wait": 3*n + 1,
		"ductwork.step.inflight":   0,
		"ductwork.step.crashed":    0,
		"ductwork.run.triggered":   n,
		"ductwork.run.completed":   n,
		"ductwork.run.halted":      0,
	}
	for name, v := range want {
		if m[name] != v {
			t.Errorf("%s = %d, want %d", name, m[name], v)
		}
	}

	// The failure is attributed to its node and marked as retried.
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otel.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, otel.ScopeName)
		}
		for _, met := range sm.Metrics {
			switch met.Name {
			case "ductwork.step.failed":
				p := met.Data.(metricdata.Sum[int64]).DataPoints[0]
				if v, _ := p.Attributes.Value("ductwork.node"); v.AsString() != "y" {
					t.Errorf("failed step attributed to node %q", v.AsString())
				}
				if v, _ := p.Attributes.Value("ductwork.outcome"); v.AsString() != "retried" {
					t.Errorf("failed step outcome %q, want retried", v.AsString())
				}
			case "ductwork.step.started":
				if pts := met.Data.(metricdata.Sum[int64]).DataPoints; len(pts) != 3 {
					t.Errorf("started has %d series, want one per node", len(pts))
				}
			}
		}
	}
	// The failed attempt's span carries the error.
	var failed int
	for _, s := range e.spans.Ended() {
		if s.Status().Code == codes.Error {
			failed++
			if s.Name() != "ductwork.step y" || attrOf(s.Attributes(), "ductwork.outcome") != "retried" || s.Status().Description != "flaky" {
				t.Errorf("error span %s: outcome %q, status %v", s.Name(), attrOf(s.Attributes(), "ductwork.outcome"), s.Status())
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d error spans, want 1", failed)
	}
}

// The halting pipeline: one step that fails permanently until allowed.
var (
	haltAllowed atomic.Bool
	haltDef     = flow.MustDefine("otel-halt", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Start(p, step.New("h", func(_ step.Context, n int) (int, error) {
			if !haltAllowed.Load() {
				return 0, step.Permanent(errors.New("refused"))
			}
			return n, nil
		}))
	})
)

// TestHaltAndRevive: a halt is an event on the step span; a revive is a span;
// the revived step joins the run's trace.
func TestHaltAndRevive(t *testing.T) {
	t.Parallel()
	haltAllowed.Store(false)
	e := newEnv(t, haltDef)
	startSupervisor(t, e.client, nil)
	r, err := ductwork.Trigger(waitCtx(t), e.client, haltDef, 9)
	if err != nil {
		t.Fatal(err)
	}
	var he *ductwork.HaltedError
	if _, err := r.Wait(waitCtx(t)); !errors.As(err, &he) {
		t.Fatalf("Wait: %v, want a halt", err)
	}
	waitFor(t, "the halted step's span", func() bool { return len(e.spans.Ended()) == 2 })
	trig := spanNamed(t, e.spans.Ended(), "ductwork.trigger otel-halt")
	s := spanNamed(t, e.spans.Ended(), "ductwork.step h")
	if s.Status().Code != codes.Error || attrOf(s.Attributes(), "ductwork.outcome") != "halted" {
		t.Fatalf("halted step: status %v, outcome %q", s.Status(), attrOf(s.Attributes(), "ductwork.outcome"))
	}
	var halts int
	for _, ev := range s.Events() {
		if ev.Name == "ductwork.halt" {
			halts++
			if attrOf(ev.Attributes, "ductwork.halt_reason") != "refused" || attrOf(ev.Attributes, "ductwork.run_id") != fmt.Sprint(r.ID) {
				t.Errorf("halt event attributes %v", ev.Attributes)
			}
		}
	}
	if halts != 1 {
		t.Fatalf("%d halt events on the step span, want 1", halts)
	}

	haltAllowed.Store(true)
	if err := e.client.Revive(waitCtx(t), r.ID); err != nil {
		t.Fatal(err)
	}
	if out, err := r.Wait(waitCtx(t)); err != nil || out != 9 {
		t.Fatalf("after revive: %d, %v", out, err)
	}
	waitFor(t, "the revived step's span", func() bool { return len(e.spans.Ended()) == 4 })
	rev := spanNamed(t, e.spans.Ended(), "ductwork.revive")
	if attrOf(rev.Attributes(), "ductwork.run_id") != fmt.Sprint(r.ID) {
		t.Errorf("revive span attributes %v", rev.Attributes())
	}
	for _, s := range e.spans.Ended() {
		if s.Name() == "ductwork.step h" && s.Parent().SpanID() != trig.SpanContext().SpanID() {
			t.Errorf("step span %s not a child of the trigger", s.SpanContext().SpanID())
		}
	}
	m := collect(t, e.reader)
	for name, v := range map[string]int64{"ductwork.run.halted": 1, "ductwork.run.revived": 1, "ductwork.run.completed": 1, "ductwork.step.failed": 1, "ductwork.step.succeeded": 1} {
		if m[name] != v {
			t.Errorf("%s = %d, want %d", name, m[name], v)
		}
	}
}

// spanLine is a span as the helper process writes it: at its start ("start")
// and at its end ("end").
type spanLine struct {
	Event   string            `json:"event"`
	Name    string            `json:"name"`
	TraceID string            `json:"trace_id"`
	SpanID  string            `json:"span_id"`
	Parent  string            `json:"parent_span_id"`
	Attrs   map[string]string `json:"attributes"`
	PID     int               `json:"pid"`
}

// lineWriter is a span processor that appends a spanLine to a file when a
// span starts and when it ends, so spans of a process that is killed are
// still known.
type lineWriter struct {
	mu   sync.Mutex
	path string
}

func (w *lineWriter) write(event string, s sdktrace.ReadOnlySpan) {
	l := spanLine{
		Event: event, Name: s.Name(), TraceID: s.SpanContext().TraceID().String(), SpanID: s.SpanContext().SpanID().String(),
		Parent: s.Parent().SpanID().String(), Attrs: map[string]string{}, PID: os.Getpid(),
	}
	for _, a := range s.Attributes() {
		l.Attrs[string(a.Key)] = a.Value.String()
	}
	b, err := json.Marshal(l)
	if err != nil {
		panic(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	f, err := os.OpenFile(w.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		panic(err)
	}
}

func (w *lineWriter) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) { w.write("start", s) }
func (w *lineWriter) OnEnd(s sdktrace.ReadOnlySpan)                       { w.write("end", s) }
func (w *lineWriter) Shutdown(context.Context) error                      { return nil }
func (w *lineWriter) ForceFlush(context.Context) error                    { return nil }

// runHelper is the body of a helper process: a supervisor on DW_DB whose
// spans go to DW_SPANS.
func runHelper() {
	b, err := sqlite.Open(os.Getenv("DW_DB"), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(&lineWriter{path: os.Getenv("DW_SPANS")}))
	hooks, err := otel.New(otel.Config{TracerProvider: tp})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	c, _ := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger(), Hooks: []ductwork.Hook{hooks}})
	_ = c.Register(chainDef)
	s, _ := supervisor.New(c, &supervisor.Config{PollInterval: 5 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond, ReapThreshold: time.Hour})
	ctx, stop := supervisor.SignalContext(context.Background())
	defer stop()
	_ = s.Run(ctx)
}

func readSpanLines(t *testing.T, path string) []spanLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []spanLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l spanLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("span line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// TestTraceAcrossProcesses: this process triggers a run; a helper process
// runs step a and is killed with SIGKILL inside step b; this process reaps it
// and runs b again and c. Every span, in both processes, including the lost
// execution of b, is in the trigger's trace.
func TestTraceAcrossProcesses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, chainDef)
	dir := t.TempDir()
	spansFile, mark := filepath.Join(dir, "spans.jsonl"), filepath.Join(dir, "b-started")
	r, err := ductwork.Trigger(waitCtx(t), e.client, chainDef, 2)
	if err != nil {
		t.Fatal(err)
	}

	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"=1", "DW_DB="+e.path, "DW_SPANS="+spansFile, "DW_MARK="+mark)
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = helper.Process.Kill(); _ = helper.Wait() })
	waitFor(t, "the helper to start step b", func() bool { _, err := os.Stat(mark); return err == nil })
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()

	startSupervisor(t, e.client, &supervisor.Config{HeartbeatInterval: 50 * time.Millisecond, ReapThreshold: 300 * time.Millisecond, ReapInterval: 50 * time.Millisecond})
	if out, err := r.Wait(waitCtx(t)); err != nil || out != 130 {
		t.Fatalf("out = %d, %v; want 130", out, err)
	}
	waitFor(t, "3 ended spans here", func() bool { return len(e.spans.Ended()) == 3 })
	ended := e.spans.Ended()
	trig := spanNamed(t, ended, "ductwork.trigger otel-chain")
	traceID, trigID := trig.SpanContext().TraceID().String(), trig.SpanContext().SpanID().String()

	// The helper: a started and ended; b started and never ended.
	lines := readSpanLines(t, spansFile)
	var got []string
	for _, l := range lines {
		got = append(got, l.Event+" "+l.Name)
		if l.TraceID != traceID || l.Parent != trigID {
			t.Errorf("helper %s %s: trace %s parent %s, want trace %s parent %s", l.Event, l.Name, l.TraceID, l.Parent, traceID, trigID)
		}
		if l.PID == os.Getpid() || l.Attrs["ductwork.crash_rerun"] != "false" || l.Attrs["ductwork.run_id"] != fmt.Sprint(r.ID) {
			t.Errorf("helper %s %s: pid %d, attributes %v", l.Event, l.Name, l.PID, l.Attrs)
		}
	}
	if want := "[start ductwork.step a end ductwork.step a start ductwork.step b]"; fmt.Sprint(got) != want {
		t.Fatalf("helper spans %v, want %s", got, want)
	}
	lostB := lines[2]

	// This process: the re-run of b, then c, in the same trace.
	b, c := spanNamed(t, ended, "ductwork.step b"), spanNamed(t, ended, "ductwork.step c")
	for _, s := range []sdktrace.ReadOnlySpan{b, c} {
		if s.SpanContext().TraceID().String() != traceID || s.Parent().SpanID().String() != trigID {
			t.Errorf("%s: trace %s parent %s, want trace %s parent %s", s.Name(), s.SpanContext().TraceID(), s.Parent().SpanID(), traceID, trigID)
		}
	}
	if b.SpanContext().SpanID().String() == lostB.SpanID {
		t.Errorf("the re-run of b reuses the lost execution's span ID")
	}
	if attrOf(b.Attributes(), "ductwork.crash_rerun") != "true" || attrOf(b.Attributes(), "ductwork.crashes") != "1" || attrOf(b.Attributes(), "ductwork.attempt") != "1" {
		t.Errorf("re-run of b: attributes %v", b.Attributes())
	}
	if attrOf(b.Attributes(), "ductwork.step_id") != lostB.Attrs["ductwork.step_id"] {
		t.Errorf("re-run of b has step ID %s, the lost execution %s", attrOf(b.Attributes(), "ductwork.step_id"), lostB.Attrs["ductwork.step_id"])
	}
	if attrOf(c.Attributes(), "ductwork.crash_rerun") != "false" {
		t.Errorf("c: attributes %v", c.Attributes())
	}

	m := collect(t, e.reader)
	for name, v := range map[string]int64{
		"ductwork.process.reaped": 1, "ductwork.step.reaped": 1, "ductwork.step.crashed": 1,
		"ductwork.step.started": 2, "ductwork.step.succeeded": 2, "ductwork.run.triggered": 1, "ductwork.run.completed": 1,
	} {
		if m[name] != v {
			t.Errorf("%s = %d, want %d", name, m[name], v)
		}
	}
}

// TestStuckStepMetrics: a step that ignores its context past its timeout
// is counted as timed out (abandoned) and abandoned, and its goroutine as
// stuck until it returns.
func TestStuckStepMetrics(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hang := step.New("hang", func(_ step.Context, n int) (int, error) { <-release; return n, nil },
		step.Timeout(20*time.Millisecond), step.Retries(0))
	def := flow.MustDefine("otel-hang", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, hang) })
	e := newEnv(t, def)
	startSupervisor(t, e.client, &supervisor.Config{StuckGrace: 20 * time.Millisecond})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(func() {
		unblock()
		waitFor(t, "the abandoned step to return", func() bool { return collect(t, e.reader)["ductwork.step.stuck"] == 0 })
	})
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, 1)
	if err != nil {
		t.Fatal(err)
	}
	var he *ductwork.HaltedError
	if _, err := r.Wait(waitCtx(t)); !errors.As(err, &he) || he.Cause != ductwork.HaltTimeout {
		t.Fatalf("Wait: %v; want a halt with cause timeout", err)
	}
	waitFor(t, "the step's span", func() bool { return len(e.spans.Ended()) == 2 })
	m := collect(t, e.reader)
	if m["ductwork.step.timed_out"] != 1 || m["ductwork.step.abandoned"] != 1 || m["ductwork.step.stuck"] != 1 {
		t.Fatalf("timed_out %d, abandoned %d, stuck %d; want 1, 1, 1", m["ductwork.step.timed_out"], m["ductwork.step.abandoned"], m["ductwork.step.stuck"])
	}
	unblock()
	waitFor(t, "the stuck gauge back to 0", func() bool { return collect(t, e.reader)["ductwork.step.stuck"] == 0 })
}
