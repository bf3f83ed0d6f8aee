package readmodel

import (
	"context"
	"fmt"
)

// Schedule is one stored schedule (see ductwork.Schedule).
type Schedule struct {
	Name     string `bun:"name" json:"name"`
	Pipeline string `bun:"pipeline" json:"pipeline"`
	Spec     string `bun:"spec" json:"spec"`
	Timezone string `bun:"timezone" json:"timezone"`
	// Missed is the missed-tick policy: "run-once" or "skip".
	Missed string `bun:"missed" json:"missed"`
	Paused bool   `bun:"paused" json:"paused"`
	// NextTick is the earliest tick not fired yet; LastTick the tick that
	// last started a run (zero if none), LastRunID that run.
	NextTick  Time  `bun:"next_tick" json:"next_tick"`
	LastTick  Time  `bun:"last_tick" json:"last_tick,omitzero"`
	LastRunID int64 `bun:"last_run_id" json:"last_run_id,omitempty"`
	UpdatedAt Time  `bun:"updated_at" json:"updated_at"`
}

// Schedules lists the stored schedules, by name.
func (s *Store) Schedules(ctx context.Context) ([]Schedule, error) {
	t, args := s.table("ductwork_schedules", "s")
	var out []Schedule
	err := s.db.NewSelect().TableExpr(t, args...).
		ColumnExpr("s.name, s.pipeline, s.spec, s.timezone, s.missed, s.paused, s.next_tick, s.last_tick").
		ColumnExpr("COALESCE(s.last_run_id, 0) AS last_run_id, s.updated_at").
		OrderExpr("s.name").Scan(ctx, &out)
	if err != nil {
		return nil, fmt.Errorf("readmodel: schedules: %w", err)
	}
	return out, nil
}
