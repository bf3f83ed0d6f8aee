package conformance

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// testSchedules: the schedule rows (SaveSchedules, ListSchedules,
// PauseSchedule) and FireSchedule, which starts exactly one run per tick
// however many processes fire it at once.
func testSchedules(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"SaveAndList": scheduleSaveAndList,
		"Fire":        scheduleFire,
		"FireRace":    scheduleFireRace,
		"Skip":        scheduleSkip,
		"Paused":      schedulePaused,
		"KeyBound":    scheduleKeyBound,
		"NotFound":    scheduleNotFound,
	})
}

// saveSchedule stores one schedule of defA with its next tick at next.
func saveSchedule(t *testing.T, b backend.Backend, name, spec string, next time.Time) {
	t.Helper()
	_, err := b.SaveSchedules(testCtx(t), &backend.SaveSchedulesParams{Schedules: []backend.ScheduleDef{{
		Name: name, Pipeline: defA.Pipeline, Spec: spec, Timezone: "UTC", Missed: backend.MissedRunOnce, NextTick: next,
	}}})
	if err != nil {
		t.Fatalf("SaveSchedules: %v", err)
	}
}

// getSchedule returns the stored schedule name, failing if it is missing.
func getSchedule(t *testing.T, b backend.Backend, name string) backend.Schedule {
	t.Helper()
	res, err := b.ListSchedules(testCtx(t), &backend.ListSchedulesParams{})
	if err != nil {
		t.Fatalf("ListSchedules: %v", err)
	}
	for _, s := range res.Schedules {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("schedule %q is not listed", name)
	return backend.Schedule{}
}

// tickTrigger is the trigger of a schedule's tick, keyed by name and tick.
func tickTrigger(t *testing.T, name string, tick time.Time) *backend.TriggerParams {
	return &backend.TriggerParams{Pipeline: defA.Pipeline, Fingerprint: defA.Fingerprint, Input: enc(t, tick),
		Key: "schedule:" + name + ":" + tick.UTC().Format(time.RFC3339), First: backend.NewJob{NodeID: "root", Input: enc(t, tick)}}
}

// pipelineRuns counts the runs of defA's pipeline.
func pipelineRuns(t *testing.T, b backend.Backend) []*backend.Run {
	t.Helper()
	res, err := b.ListRuns(testCtx(t), &backend.ListRunsParams{Pipeline: defA.Pipeline, Limit: 1000})
	if err != nil {
		t.Fatalf("ListRuns: %v", err)
	}
	return res.Runs
}

// scheduleSaveAndList: a saved schedule is listed by name with its fields;
// saving it unchanged writes nothing; a new pipeline or policy keeps the next
// tick; a new spec or time zone replaces it.
func scheduleSaveAndList(t *testing.T, h Harness) {
	b := newBackend(t, h)
	ctx := testCtx(t)
	now, err := b.Now(ctx)
	if err != nil {
		t.Fatalf("Now: %v", err)
	}
	next := now.Truncate(time.Second).Add(time.Hour)
	defs := []backend.ScheduleDef{
		{Name: "nightly", Pipeline: defA.Pipeline, Spec: "0 3 * * *", Timezone: "Europe/Paris", Missed: backend.MissedSkip, NextTick: next},
		{Name: "every-minute", Pipeline: defB.Pipeline, Spec: "* * * * *", Timezone: "UTC", Missed: backend.MissedRunOnce, NextTick: next.Add(time.Minute)},
	}
	res, err := b.SaveSchedules(ctx, &backend.SaveSchedulesParams{Schedules: defs})
	if err != nil || res.Inserted != 2 || res.Rescheduled != 0 {
		t.Fatalf("SaveSchedules = %+v, %v; want 2 inserted", res, err)
	}
	list, err := b.ListSchedules(ctx, &backend.ListSchedulesParams{})
	if err != nil {
		t.Fatalf("ListSchedules: %v", err)
	}
	if len(list.Schedules) != 2 || list.Schedules[0].Name != "every-minute" || list.Schedules[1].Name != "nightly" {
		t.Fatalf("ListSchedules = %+v; want every-minute, nightly", list.Schedules)
	}
	if d := list.Now.Sub(now); d < 0 || d > time.Minute {
		t.Fatalf("ListSchedules.Now = %v; want the database's clock (about %v)", list.Now, now)
	}
	s := list.Schedules[1]
	if s.Pipeline != defA.Pipeline || s.Spec != "0 3 * * *" || s.Timezone != "Europe/Paris" || s.Missed != backend.MissedSkip ||
		s.Paused || !s.NextTick.Equal(next) || !s.LastTick.IsZero() || s.LastRunID != 0 || s.CreatedAt.IsZero() {
		t.Fatalf("stored schedule = %+v; want the saved fields, next tick %v, never fired", s, next)
	}
	res, err = b.SaveSchedules(ctx, &backend.SaveSchedulesParams{Schedules: defs})
	if err != nil || res.Inserted != 0 || res.Rescheduled != 0 {
		t.Fatalf("SaveSchedules unchanged = %+v, %v; want nothing", res, err)
	}
	// Another pipeline and policy, the same spec: the next tick stays.
	changed := defs[0]
	changed.Pipeline, changed.Missed, changed.NextTick = defB.Pipeline, backend.MissedRunOnce, next.Add(24*time.Hour)
	if _, err := b.SaveSchedules(ctx, &backend.SaveSchedulesParams{Schedules: []backend.ScheduleDef{changed}}); err != nil {
		t.Fatalf("SaveSchedules: %v", err)
	}
	if s := getSchedule(t, b, "nightly"); s.Pipeline != defB.Pipeline || s.Missed != backend.MissedRunOnce || !s.NextTick.Equal(next) {
		t.Fatalf("after a new pipeline and policy: %+v; want them stored and next tick %v kept", s, next)
	}
	// Another spec: the next tick is replaced.
	changed.Spec = "0 4 * * *"
	res, err = b.SaveSchedules(ctx, &backend.SaveSchedulesParams{Schedules: []backend.ScheduleDef{changed}})
	if err != nil || res.Rescheduled != 1 {
		t.Fatalf("SaveSchedules with a new spec = %+v, %v; want 1 rescheduled", res, err)
	}
	if s := getSchedule(t, b, "nightly"); s.Spec != "0 4 * * *" || !s.NextTick.Equal(changed.NextTick) {
		t.Fatalf("after a new spec: %+v; want spec 0 4 * * * and next tick %v", s, changed.NextTick)
	}
	// Another time zone: replaced too.
	changed.Timezone, changed.NextTick = "UTC", next.Add(48*time.Hour)
	if _, err := b.SaveSchedules(ctx, &backend.SaveSchedulesParams{Schedules: []backend.ScheduleDef{changed}}); err != nil {
		t.Fatalf("SaveSchedules: %v", err)
	}
	if s := getSchedule(t, b, "nightly"); s.Timezone != "UTC" || !s.NextTick.Equal(changed.NextTick) {
		t.Fatalf("after a new time zone: %+v; want next tick %v", s, changed.NextTick)
	}
}

// scheduleFire: firing the stored next tick starts the tick's run and
// advances the row; firing it again (a stale Expected) does nothing.
func scheduleFire(t *testing.T, h Harness) {
	b := newBackend(t, h)
	ctx := testCtx(t)
	tick := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	saveSchedule(t, b, "s", "0 * * * *", tick)
	res, err := b.FireSchedule(ctx, &backend.FireScheduleParams{Name: "s", Expected: tick, Next: tick.Add(time.Hour), Tick: tick, Trigger: tickTrigger(t, "s", tick)})
	if err != nil || !res.Fired || res.RunID == 0 || res.Existing {
		t.Fatalf("FireSchedule = %+v, %v; want a new run", res, err)
	}
	s := getSchedule(t, b, "s")
	if !s.NextTick.Equal(tick.Add(time.Hour)) || !s.LastTick.Equal(tick) || s.LastRunID != res.RunID {
		t.Fatalf("after firing: %+v; want next %v, last %v, run %d", s, tick.Add(time.Hour), tick, res.RunID)
	}
	r := getRun(t, b, res.RunID)
	if r.Pipeline != defA.Pipeline || string(r.Input) != string(enc(t, tick)) {
		t.Fatalf("the tick's run = %+v; want pipeline %s with the tick as input", r, defA.Pipeline)
	}
	again, err := b.FireSchedule(ctx, &backend.FireScheduleParams{Name: "s", Expected: tick, Next: tick.Add(time.Hour), Tick: tick, Trigger: tickTrigger(t, "s", tick)})
	if err != nil || again.Fired || again.RunID != 0 {
		t.Fatalf("FireSchedule of a handled tick = %+v, %v; want nothing done", again, err)
	}
	if n := len(pipelineRuns(t, b)); n != 1 {
		t.Fatalf("%d runs; want 1", n)
	}
}

// scheduleFireRace: many callers fire the same tick at once (as every
// process does when it comes due): one fires it, one run exists, and the
// next tick then fires once too.
func scheduleFireRace(t *testing.T, h Harness) {
	b := newBackend(t, h)
	ctx := testCtx(t)
	tick := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	saveSchedule(t, b, "race", "* * * * * *", tick)
	const callers, ticks = 8, 3
	for i := range ticks {
		tick := tick.Add(time.Duration(i) * time.Second)
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			fired int
			runs  = map[int64]bool{}
			errs  []error
		)
		start := make(chan struct{})
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := b.FireSchedule(ctx, &backend.FireScheduleParams{Name: "race", Expected: tick, Next: tick.Add(time.Second),
					Tick: tick, Trigger: tickTrigger(t, "race", tick)})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				if res.Fired {
					fired++
					runs[res.RunID] = true
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("tick %d: FireSchedule errors: %v", i, errs)
		}
		if fired != 1 || len(runs) != 1 {
			t.Fatalf("tick %d: %d callers fired it, runs %v; want exactly one", i, fired, runs)
		}
	}
	if n := len(pipelineRuns(t, b)); n != ticks {
		t.Fatalf("%d runs; want %d, one per tick", n, ticks)
	}
}

// scheduleSkip: a fire without a trigger advances the next tick and starts
// nothing; the last tick and run stay.
func scheduleSkip(t *testing.T, h Harness) {
	b := newBackend(t, h)
	tick := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	saveSchedule(t, b, "skip", "0 * * * *", tick)
	later := tick.Add(5 * time.Hour)
	res, err := b.FireSchedule(testCtx(t), &backend.FireScheduleParams{Name: "skip", Expected: tick, Next: later})
	if err != nil || !res.Fired || res.RunID != 0 {
		t.Fatalf("FireSchedule without a trigger = %+v, %v; want the schedule advanced and no run", res, err)
	}
	if s := getSchedule(t, b, "skip"); !s.NextTick.Equal(later) || !s.LastTick.IsZero() || s.LastRunID != 0 {
		t.Fatalf("after skipping: %+v; want next %v and no last tick", s, later)
	}
	if n := len(pipelineRuns(t, b)); n != 0 {
		t.Fatalf("%d runs; want none", n)
	}
}

// schedulePaused: a paused schedule does not fire; resumed, its next tick is
// the one it had.
func schedulePaused(t *testing.T, h Harness) {
	b := newBackend(t, h)
	ctx := testCtx(t)
	tick := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	saveSchedule(t, b, "p", "0 * * * *", tick)
	if _, err := b.PauseSchedule(ctx, &backend.PauseScheduleParams{Name: "p", Paused: true}); err != nil {
		t.Fatalf("PauseSchedule: %v", err)
	}
	if _, err := b.PauseSchedule(ctx, &backend.PauseScheduleParams{Name: "p", Paused: true}); err != nil {
		t.Fatalf("PauseSchedule of a paused schedule: %v", err)
	}
	if s := getSchedule(t, b, "p"); !s.Paused {
		t.Fatalf("%+v; want paused", s)
	}
	// Saving it again (a process starting) leaves it paused.
	saveSchedule(t, b, "p", "0 * * * *", tick.Add(time.Hour))
	res, err := b.FireSchedule(ctx, &backend.FireScheduleParams{Name: "p", Expected: tick, Next: tick.Add(time.Hour), Tick: tick, Trigger: tickTrigger(t, "p", tick)})
	if err != nil || res.Fired {
		t.Fatalf("FireSchedule of a paused schedule = %+v, %v; want nothing done", res, err)
	}
	if _, err := b.PauseSchedule(ctx, &backend.PauseScheduleParams{Name: "p", Paused: false}); err != nil {
		t.Fatalf("PauseSchedule(false): %v", err)
	}
	if s := getSchedule(t, b, "p"); s.Paused || !s.NextTick.Equal(tick) {
		t.Fatalf("resumed: %+v; want not paused, next tick %v", s, tick)
	}
	if n := len(pipelineRuns(t, b)); n != 0 {
		t.Fatalf("%d runs; want none", n)
	}
}

// scheduleKeyBound: a tick whose key is bound to a run already (the row was
// created again after the run started) starts no second run: the fire
// advances the schedule and returns the run with Existing.
func scheduleKeyBound(t *testing.T, h Harness) {
	b := newBackend(t, h)
	ctx := testCtx(t)
	tick := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	saveSchedule(t, b, "k", "0 * * * *", tick)
	first, err := b.Trigger(ctx, tickTrigger(t, "k", tick))
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	res, err := b.FireSchedule(ctx, &backend.FireScheduleParams{Name: "k", Expected: tick, Next: tick.Add(time.Hour), Tick: tick, Trigger: tickTrigger(t, "k", tick)})
	if err != nil || !res.Fired || !res.Existing || res.RunID != first.RunID {
		t.Fatalf("FireSchedule of a bound key = %+v, %v; want Existing run %d", res, err, first.RunID)
	}
	if s := getSchedule(t, b, "k"); !s.NextTick.Equal(tick.Add(time.Hour)) || s.LastRunID != first.RunID {
		t.Fatalf("after firing: %+v; want advanced, last run %d", s, first.RunID)
	}
	if n := len(pipelineRuns(t, b)); n != 1 {
		t.Fatalf("%d runs; want 1", n)
	}
}

// scheduleNotFound: FireSchedule and PauseSchedule of an unknown name return
// ErrScheduleNotFound and write nothing.
func scheduleNotFound(t *testing.T, h Harness) {
	b := newBackend(t, h)
	ctx := testCtx(t)
	tick := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	_, err := b.FireSchedule(ctx, &backend.FireScheduleParams{Name: "missing", Expected: tick, Next: tick.Add(time.Hour), Tick: tick, Trigger: tickTrigger(t, "missing", tick)})
	if !errors.Is(err, backend.ErrScheduleNotFound) {
		t.Fatalf("FireSchedule of an unknown schedule: %v; want ErrScheduleNotFound", err)
	}
	if _, err := b.PauseSchedule(ctx, &backend.PauseScheduleParams{Name: "missing", Paused: true}); !errors.Is(err, backend.ErrScheduleNotFound) {
		t.Fatalf("PauseSchedule of an unknown schedule: %v; want ErrScheduleNotFound", err)
	}
	if n := len(pipelineRuns(t, b)); n != 0 {
		t.Fatalf("%d runs; want none", n)
	}
}
