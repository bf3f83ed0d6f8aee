package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

// Environment variables naming the servers of the PostgreSQL and MySQL
// benchmarks (the same as the library's tests); unset, those are skipped.
const (
	postgresEnv = "DUCTWORK_TEST_POSTGRES_DSN"
	mysqlEnv    = "DUCTWORK_TEST_MYSQL_DSN"
)

// benchChain is a chain of chainLen steps that only count themselves.
var benchChain = flow.MustDefine("bench-hot-chain", func(p *flow.Pipeline[int]) flow.End[int] {
	count := func(_ step.Context, i int) (int, error) { cur.Load().hit(); return i, nil }
	n := flow.Start(p, step.New("hot-01", count))
	for i := 2; i <= chainLen; i++ {
		n = flow.Chain(n, step.New(fmt.Sprintf("hot-%02d", i), count))
	}
	return n
})

// BenchmarkChainStep measures the hot path of one step through a supervisor:
// claim, decode, execute, encode, plan and the completion commit that inserts
// the next step. b.N steps (rounded up to whole runs of the 10-step chain) are
// triggered before the timer starts; the timer covers starting a supervisor
// with 16 workers and draining them.
//
//	go test -run '^$' -bench ChainStep ./cmd/ductwork-bench
//	DUCTWORK_TEST_POSTGRES_DSN=postgres://... DUCTWORK_TEST_MYSQL_DSN='root@tcp(...)/' go test -run '^$' -bench ChainStep ./cmd/ductwork-bench
func BenchmarkChainStep(b *testing.B) {
	for _, kind := range backendNames {
		b.Run(kind, func(b *testing.B) {
			dsn := ""
			switch kind {
			case "postgres":
				if dsn = os.Getenv(postgresEnv); dsn == "" {
					b.Skipf("%s is not set", postgresEnv)
				}
			case "mysql":
				if dsn = os.Getenv(mysqlEnv); dsn == "" {
					b.Skipf("%s is not set", mysqlEnv)
				}
			}
			benchChainStep(b, kind, dsn, 16)
		})
	}
}

func benchChainStep(b *testing.B, kind, dsn string, workers int) {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := openStore(ctx, kind, dsn, "", workers+8, logger)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := s.drop(context.Background()); err != nil {
			b.Error(err)
		}
	})
	c, err := ductwork.NewClient(s, &ductwork.Config{Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Register(benchChain); err != nil {
		b.Fatal(err)
	}
	runs := (b.N + chainLen - 1) / chainLen
	p := newProbe(runs * chainLen)
	defer cur.Store(nil)
	if err := triggerMany(ctx, c, benchChain, runs, func(i int) int { return i }); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	stop, err := startSupervisor(ctx, c, workers)
	if err != nil {
		b.Fatal(err)
	}
	werr := waitDone(ctx, s, benchChain.Name(), p)
	b.StopTimer()
	if err := stop(); err != nil {
		b.Fatal(err)
	}
	if werr != nil {
		b.Fatal(werr)
	}
	b.ReportMetric(float64(runs*chainLen)/b.Elapsed().Seconds(), "steps/s")
}
