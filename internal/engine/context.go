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
}

var _ step.Context = (*stepContext)(nil)

// IdempotencyKey derives the key from the step instance's identity, so it is
// the same for every execution of it.
func IdempotencyKey(pipeline string, runID int64, node, scope string) string {
	return fmt.Sprintf("%s/%d/%s/%s", pipeline, runID, node, scope)
}

func (c *stepContext) IdempotencyKey() string {
	return IdempotencyKey(c.job.Pipeline, c.job.RunID, c.job.NodeID, c.job.Scope)
}
func (c *stepContext) Attempt() int         { return c.job.Attempt }
func (c *stepContext) Crashes() int         { return c.job.Crashes }
func (c *stepContext) RunID() int64         { return c.job.RunID }
func (c *stepContext) StepID() int64        { return c.job.ID }
func (c *stepContext) Pipeline() string     { return c.job.Pipeline }
func (c *stepContext) Node() string         { return c.job.NodeID }
func (c *stepContext) Logger() *slog.Logger { return c.logger.get() }

func (c *stepContext) Get(key string, dst any) (bool, error) {
	r, err := c.e.Backend.GetValue(c, &backend.GetValueParams{RunID: c.job.RunID, Key: key})
	if errors.Is(err, backend.ErrValueNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, c.codec.Unmarshal(r.Value, dst)
}

func (c *stepContext) Set(key string, v any, opts ...step.SetOption) error {
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
