package supervisor

import (
	"context"
	"log/slog"
	"time"

	"github.com/ductwork-go/ductwork/internal/schedule"
)

// scheduleSlack is how long after a tick comes due, by the database's
// clock, the scheduler loop looks: the host's timer may fire a little early.
const scheduleSlack = 5 * time.Millisecond

// scheduleLoop fires the due ticks of the client's schedules. It stores
// their rows first (again until that succeeds), then runs a round at each
// next tick, and at least every ScheduleInterval. Every supervisor that runs
// maintenance does this; FireSchedule and each tick's trigger key make one
// of them start each tick's run.
func (s *Supervisor) scheduleLoop(ctx context.Context) {
	saved := false
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		wait := s.cfg.ScheduleInterval
		if entries := s.eng.Schedules.Entries(); len(entries) > 0 {
			cctx, cancel := s.callCtx(ctx)
			var err error
			if !saved {
				err = schedule.Save(cctx, s.b, entries)
				saved = err == nil
			}
			if err == nil {
				var started int
				wait, started, err = schedule.Round(cctx, s.b, entries, s.cfg.ScheduleInterval)
				if started > 0 {
					s.logger.DebugContext(ctx, "ductwork: schedules started runs", slog.Int("runs", started))
				}
			}
			cancel()
			if err != nil && ctx.Err() == nil {
				s.logger.WarnContext(ctx, "ductwork: firing schedules failed", slog.Any("error", err))
				wait = min(s.cfg.ScheduleInterval, time.Second)
			}
		}
		timer.Reset(wait + scheduleSlack)
	}
}
