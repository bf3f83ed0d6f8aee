package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/step"
)

type stepContext struct {
	context.Context
	e      *Engine
	job    *backend.Job
	logger *jobLogger
	codec  step.Codec
	// processID is the claim's owner (ReceiveSignal presents the claim).
	processID string
}

var _ step.Context = (*stepContext)(nil)

// IdempotencyKey derives the key from the step instance's identity, so it is
// the same for every execution of it: the run's random identity (drawn at
// trigger and stored with the run, so that two databases whose run IDs
// collide give different keys), then pipeline, run ID, node and scope. A run
// stored before runs had an identity keeps the key it had then.
func IdempotencyKey(identity, pipeline string, runID int64, node, scope string) string {
	if identity == "" {
		return fmt.Sprintf("%s/%d/%s/%s", pipeline, runID, node, scope)
	}
	return fmt.Sprintf("%s/%s/%d/%s/%s", identity, pipeline, runID, node, scope)
}

func (c *stepContext) IdempotencyKey() string {
	return IdempotencyKey(c.job.RunIdentity, c.job.Pipeline, c.job.RunID, c.job.NodeID, c.job.Scope)
}
func (c *stepContext) Attempt() int         { return c.job.Attempt }
func (c *stepContext) Crashes() int         { return c.job.Crashes }
func (c *stepContext) RunID() int64         { return c.job.RunID }
func (c *stepContext) StepID() int64        { return c.job.ID }
func (c *stepContext) Pipeline() string     { return c.job.Pipeline }
func (c *stepContext) Node() string         { return c.job.NodeID }
func (c *stepContext) Logger() *slog.Logger { return c.logger.get() }

func (c *stepContext) Get(key string, dst any) (bool, error) {
	if err := step.CheckKey(key); err != nil {
		return false, err
	}
	r, err := c.e.Backend.GetValue(c, &backend.GetValueParams{RunID: c.job.RunID, Key: key})
	if errors.Is(err, backend.ErrValueNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := c.codec.Unmarshal(r.Value, dst); err != nil {
		return true, fmt.Errorf("decode run context value %q: %w", key, err)
	}
	return true, nil
}

func (c *stepContext) Set(key string, v any, opts ...step.SetOption) error {
	if err := step.CheckKey(key); err != nil {
		return err
	}
	b, err := c.codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode run context value %q: %w", key, err)
	}
	overwrite := false
	for _, o := range opts {
		if o == step.Overwrite {
			overwrite = true
		}
	}
	return c.e.Backend.SetValue(c, &backend.SetValueParams{RunID: c.job.RunID, Key: key, Value: b, Overwrite: overwrite})
}

// ReceiveSignal implements graph.SignalReceiver for an await node: it reads
// the signal delivered to the claimed job (fenced by the claim) and decodes
// its payload into v. A payload the codec cannot decode is a permanent
// failure: retrying cannot change the stored signal.
func (c *stepContext) ReceiveSignal(v any) (bool, error) {
	res, err := c.e.Backend.ReceiveSignal(c, &backend.ReceiveSignalParams{
		JobID: c.job.ID, ProcessID: c.processID, Fence: c.job.Fence,
	})
	if err != nil {
		return false, err
	}
	if !res.Delivered {
		return false, nil
	}
	if err := c.codec.Unmarshal(res.Payload, v); err != nil {
		return false, step.Permanent(fmt.Errorf("decode the payload of signal %d: %w", res.SignalID, err))
	}
	return true, nil
}
