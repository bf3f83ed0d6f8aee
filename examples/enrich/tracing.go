package main

import (
	"context"
	"fmt"
	"io"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/otel"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// setupTracing returns the client hooks for the -trace flag and a function
// that flushes and stops the tracer provider. "" disables tracing; "stdout"
// writes every span to w as one JSON object per line.
func setupTracing(to string, w io.Writer) ([]ductwork.Hook, func(context.Context) error, error) {
	switch to {
	case "":
		return nil, func(context.Context) error { return nil }, nil
	case "stdout":
	default:
		return nil, nil, fmt.Errorf("-trace %q: want stdout", to)
	}
	exp, err := stdouttrace.New(stdouttrace.WithWriter(w))
	if err != nil {
		return nil, nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	obs, err := otel.New(otel.Config{TracerProvider: tp})
	if err != nil {
		_ = tp.Shutdown(context.Background())
		return nil, nil, err
	}
	return []ductwork.Hook{obs}, tp.Shutdown, nil
}
