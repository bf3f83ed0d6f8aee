package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
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
}

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

	b, closeB, err := openBackend(ctx, wc.Store, wc.Workers+4, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		return 1
	}
	defer closeB()
	x, err := openExec(wc.Store, wc.Workers+2)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		return 1
	}
	defer x.db.Close()
	recorder = &execRecorder{x: x, pid: os.Getpid()}

	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: logger, Hooks: &ductwork.Hooks{Step: tagHook{recorder}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		return 1
	}
	if err := client.Register(Chaos); err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		return 1
	}
	// An application restarts a supervisor that could not start (the
	// database may be restarting); Run returns nil after a clean shutdown.
	deadline := time.Now().Add(2 * time.Minute)
	for try := 1; ; try++ {
		sup, err := supervisor.New(client, &supervisor.Config{
			Workers: wc.Workers, PollInterval: wc.Poll, HeartbeatInterval: wc.Heartbeat,
			ReapThreshold: wc.ReapThreshold, ReapInterval: wc.ReapInterval, ShutdownGrace: 5 * time.Second,
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
