package supervisor

import (
	"context"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
)

// SignalContext returns a context cancelled on SIGTERM or SIGINT — hand it to
// Supervisor.Run for a graceful shutdown — and writes a goroutine dump to
// stderr on SIGQUIT instead of exiting. Call stop to restore default signal
// handling; calling it more than once is harmless.
func SignalContext(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	term := make(chan os.Signal, 1)
	quit := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	signal.Notify(quit, syscall.SIGQUIT)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-term:
				cancel()
			case <-quit:
				_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(term)
			signal.Stop(quit)
			close(done)
			cancel()
		})
	}
}
