package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/supervisor"
)

// workerEnv holds the worker's JSON config; when it is set the binary runs as
// a worker process (a supervisor) instead of the controller.
const workerEnv = "DUCTWORK_CHAOS_WORKER"

type workerConfig struct {
	Store         storeConfig   `json:"store"`
	Workers       int           `json:"workers"`
	Heartbeat     time.Duration `json:"heartbeat"`
	ReapThreshold time.Duration `json:"reap_threshold"`
	ReapInterval  time.Duration `json:"reap_interval"`
	Poll          time.Duration `json:"poll"`
	Verbose       bool          `json:"verbose"`
	// Exec, if set, is where the executions table is reached (with
	// -hosts, through the host's observer link); else Store.
	Exec *storeConfig `json:"exec,omitempty"`
	// TxSteps: register the transactional variant of the pipeline.
	TxSteps bool `json:"tx_steps,omitempty"`
}

// signalledAt is when the worker's shutdown signal arrived.
var signalledAt atomic.Value

// exitLeak is a worker's exit status when goroutines outlived its shutdown.
const exitLeak = 3

// runWorker is the body of a worker process: a supervisor with short
// heartbeat and reap settings, running the chaos pipeline until SIGTERM.
func runWorker(raw string) int {
	var wc workerConfig
	if err := json.Unmarshal([]byte(raw), &wc); err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker: bad config:", err)
		return 2
	}
	level := slog.LevelError
	if wc.Verbose {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := supervisor.SignalContext(context.Background())
	defer stop()
	go func() { <-ctx.Done(); signalledAt.Store(time.Now()) }()
	baseline := runtime.NumGoroutine()

	b, closeB, err := openBackend(ctx, wc.Store, wc.Workers+4, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		return 1
	}
	es := wc.Store
	if wc.Exec != nil {
		es = *wc.Exec
	}
	x, err := openExec(es, wc.Workers+2)
	if err != nil {
		closeB()
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		return 1
	}
	code := superviseLoop(ctx, wc, b, x, logger)
	// The supervisor has returned within its bound. Closing the database
	// handles over a partitioned link can take the driver's own timeouts
	// (pgxpool waits on connections it cannot say goodbye on); a process
	// that is exiting does not wait for that, as an application would not.
	closed := make(chan struct{})
	go func() {
		closeB()
		_ = x.db.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(teardownLimit):
		fmt.Fprintf(os.Stderr, "chaos worker %d: database handles still closing %s after the supervisor returned; exiting without waiting (no leak check)\n", os.Getpid(), teardownLimit)
		return code
	}
	if code == 0 && !noLeak(baseline) {
		return exitLeak
	}
	return code
}

// noLeak waits up to 3s for the goroutines started since baseline to end;
// if some remain it prints every goroutine's stack and returns false.
func noLeak(baseline int) bool {
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "chaos worker: %d goroutines after shutdown, %d before start:\n", runtime.NumGoroutine(), baseline)
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// superviseLoop runs the supervisor until the signal context ends and
// returns the worker's exit status.
func superviseLoop(ctx context.Context, wc workerConfig, b backend.Backend, x *execDB, logger *slog.Logger) int {
	recorder = &execRecorder{x: x, pid: os.Getpid()}

	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: logger, Hooks: []ductwork.Hook{tagHook{recorder}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		return 1
	}
	if wc.TxSteps {
		// The counter table is in the storage the backend writes (its
		// address may be a proxy's: the statements only name the table).
		useTxSteps(wc.Store)
	}
	if err := client.Register(pipeline); err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		return 1
	}
	// An application restarts a supervisor that could not start (the
	// database may be restarting); Run returns nil after a clean shutdown.
	deadline := time.Now().Add(2 * time.Minute)
	for try := 1; ; try++ {
		sup, err := supervisor.New(client, &supervisor.Config{
			Workers: wc.Workers, PollInterval: wc.Poll, HeartbeatInterval: wc.Heartbeat,
			ReapThreshold: wc.ReapThreshold, ReapInterval: wc.ReapInterval, ShutdownGrace: workerGrace, ReleaseTimeout: workerRelease,
			// The pid in the process ID tells which worker a reap hit.
			ProcessID: fmt.Sprintf("chaos-pid%d-%d", os.Getpid(), try),
			Hooks: supervisor.Hooks{OnReapFunc: func(res *backend.ReapResult) {
				if len(res.Processes) > 0 {
					logger.Warn("chaos worker: reaped", slog.Any("processes", res.Processes), slog.Int("steps", res.Jobs))
				}
			}},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaos worker:", err)
			return 2
		}
		err = sup.Run(ctx)
		if err == nil || ctx.Err() != nil {
			if at, ok := signalledAt.Load().(time.Time); ok {
				fmt.Fprintf(os.Stderr, "chaos worker %d: supervisor returned %s after the signal\n", os.Getpid(), time.Since(at).Round(time.Millisecond))
			}
			return 0
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "chaos worker: supervisor could not start:", err)
			return 1
		}
		logger.Warn("chaos worker: supervisor could not start; retrying", slog.String("error", err.Error()))
		time.Sleep(500 * time.Millisecond)
	}
}
