package otel_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/otel"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

var greetDef = flow.MustDefine("greet", func(p *flow.Pipeline[string]) flow.End[string] {
	hello := flow.Start(p, step.New("hello", func(_ step.Context, name string) (string, error) { return "hello " + name, nil }))
	return flow.Chain(hello, step.New("shout", func(_ step.Context, s string) (string, error) { return s + "!", nil }))
})

// The trigger span is the parent of every step span of the run.
func ExampleNew() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ductwork-otel-example-")
	defer os.RemoveAll(dir)
	b, _ := sqlite.Open(filepath.Join(dir, "app.db"), nil)
	defer b.Close(ctx)
	_ = b.Migrate(ctx)

	spans := tracetest.NewSpanRecorder() // in production: an exporter, see the README
	hooks, err := otel.New(otel.Config{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))})
	if err != nil {
		panic(err)
	}
	client, _ := ductwork.NewClient(b, &ductwork.Config{Hooks: []ductwork.Hook{hooks}, Logger: quietLogger()})
	_ = client.Register(greetDef)
	sup, _ := supervisor.New(client, nil)
	supCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sup.Run(supCtx) }()

	r, _ := ductwork.Trigger(ctx, client, greetDef, "otel")
	out, _ := r.Wait(ctx)
	stop()
	<-done // a stopped supervisor has ended its spans
	fmt.Println(out)

	ended := spans.Ended() // the trigger span ended first, before the run started
	trigger := ended[0].SpanContext()
	for _, s := range ended {
		fmt.Printf("%-24s same trace: %v, child of the trigger: %v\n", s.Name(),
			s.SpanContext().TraceID() == trigger.TraceID(), s.Parent().SpanID() == trigger.SpanID())
	}
	// Output:
	// hello otel!
	// ductwork.trigger greet   same trace: true, child of the trigger: false
	// ductwork.step hello      same trace: true, child of the trigger: true
	// ductwork.step shout      same trace: true, child of the trigger: true
}
