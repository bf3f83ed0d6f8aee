package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Listener reconnection backoff.
const (
	listenBackoffMin = 100 * time.Millisecond
	listenBackoffMax = 10 * time.Second
)

// Notifications returns a channel that receives a value whenever new work may
// be available: Trigger, Complete, Release, Reap, ReviveRun and
// DeregisterProcess notify in the transaction that makes jobs due. Values are
// coalesced (the channel has a buffer of one) and one is also sent after every
// (re)connection, since notifications may have been missed meanwhile.
//
// Each call starts a goroutine that LISTENs on a dedicated connection taken
// out of the pool (it does not count against the pool's size) and reconnects
// with backoff when it drops; while it is disconnected the channel does not
// fire and callers poll. The channel is closed when ctx is done or the
// Backend is closed.
func (b *Backend) Notifications(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	if b.checkOpen() != nil {
		close(ch)
		return ch
	}
	b.listeners.Add(1)
	go func() {
		defer b.listeners.Done()
		defer close(ch)
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(b.closeCtx, cancel)
		defer stop()
		b.listen(ctx, ch)
	}()
	return ch
}

// listen runs LISTEN sessions until ctx is done.
func (b *Backend) listen(ctx context.Context, ch chan<- struct{}) {
	backoff := listenBackoffMin
	for ctx.Err() == nil {
		connected, err := b.listenOnce(ctx, ch)
		if ctx.Err() != nil {
			return
		}
		if connected {
			backoff = listenBackoffMin
		}
		b.logger.WarnContext(ctx, "ductwork/postgres: notification listener disconnected; callers poll until it reconnects",
			"schema", b.schema, "retry_in", backoff, "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, listenBackoffMax)
	}
}

// listenOnce holds one LISTEN session until it fails or ctx is done. It
// reports whether LISTEN succeeded.
func (b *Backend) listenOnce(ctx context.Context, ch chan<- struct{}) (bool, error) {
	pc, err := b.pool.Acquire(ctx)
	if err != nil {
		return false, mapErr("listen", err)
	}
	// A listening session must never go back to the pool.
	conn := pc.Hijack()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{b.channel}.Sanitize()); err != nil {
		return false, mapErr("listen", err)
	}
	signal(ch) // work may have become due while we were not listening
	for {
		_, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return true, nil
			}
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return true, err
			}
			return true, mapErr("listen", err)
		}
		signal(ch)
	}
}

// signal sends a coalesced wake-up.
func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
