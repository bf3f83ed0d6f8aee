package ductwork_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// tickDef is a one-step pipeline whose input is the tick it was triggered
// for.
func tickDef(name string) *flow.Definition[time.Time, time.Time] {
	s := step.New("tick", func(_ step.Context, t time.Time) (time.Time, error) { return t, nil })
	return flow.MustDefine(name, func(p *flow.Pipeline[time.Time]) flow.End[time.Time] { return flow.Start(p, s) })
}

func identity(t time.Time) time.Time { return t }

// TestScheduleBadInput: every refused schedule is a typed error naming the
// schedule and the spec, and registers nothing.
func TestScheduleBadInput(t *testing.T) {
	def := tickDef("bad-schedules")
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, spec string
		opts       []ductwork.ScheduleOption
		reason     string
	}{
		{"empty", "", nil, "empty"},
		{"four fields", "* * * *", nil, "expected"},
		{"seven fields", "* * * * * * *", nil, "expected"},
		{"minute 61", "61 * * * *", nil, "61"},
		{"unknown descriptor", "@fortnightly", nil, "descriptor"},
		{"never fires", "0 0 30 2 *", nil, "never fires"},
		{"unknown zone", "CRON_TZ=Mars/Olympus 0 9 * * *", nil, "Mars/Olympus"},
		{"two zones", "CRON_TZ=America/New_York 0 9 * * *", []ductwork.ScheduleOption{ductwork.ScheduleIn(paris)}, "differs"},
		{"every with zone", "@every 1h", []ductwork.ScheduleOption{ductwork.ScheduleIn(paris)}, "time zone"},
		{"policy", "* * * * *", []ductwork.ScheduleOption{ductwork.OnMissed("twice")}, "twice"},
		{"grace", "* * * * *", []ductwork.ScheduleOption{ductwork.ScheduleGrace(-time.Second)}, "negative"},
		{"empty name", "* * * * *", []ductwork.ScheduleOption{ductwork.ScheduleName("")}, "empty"},
		{"long name", "* * * * *", []ductwork.ScheduleOption{ductwork.ScheduleName(strings.Repeat("n", backend.MaxScheduleNameBytes+1))}, "limit"},
		{"key", "* * * * *", []ductwork.ScheduleOption{ductwork.ScheduleTrigger(ductwork.WithKey("k"))}, "WithKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ductwork.Schedule(def, tc.spec, identity, tc.opts...)
			var se *ductwork.ScheduleError
			if h != nil || !errors.As(err, &se) || se.Spec != tc.spec || !strings.Contains(se.Reason, tc.reason) {
				t.Fatalf("Schedule(%q) = %v, %v; want *ScheduleError with spec %q and a reason containing %q", tc.spec, h, err, tc.spec, tc.reason)
			}
			if !strings.Contains(err.Error(), se.Schedule) {
				t.Fatalf("message %q does not name the schedule %q", err, se.Schedule)
			}
		})
	}
	var ae *ductwork.ArgumentError
	if _, err := ductwork.Schedule[time.Time, time.Time](nil, "* * * * *", identity); !errors.As(err, &ae) {
		t.Fatalf("Schedule(nil definition) = %v; want *ArgumentError", err)
	}
	if _, err := ductwork.Schedule(def, "* * * * *", nil); !errors.As(err, &ae) {
		t.Fatalf("Schedule(nil input) = %v; want *ArgumentError", err)
	}

	// A name registered twice with different settings.
	e := newEnv(t)
	a, err := ductwork.Schedule(def, "*/5 * * * *", identity)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ductwork.Schedule(def, "*/10 * * * *", identity)
	if err != nil {
		t.Fatal(err)
	}
	var se *ductwork.ScheduleError
	if err := e.client.RegisterSchedules(a, b); !errors.As(err, &se) || se.Schedule != def.Name() {
		t.Fatalf("RegisterSchedules of one name with two specs = %v; want *ScheduleError", err)
	}
	if err := e.client.SaveSchedules(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if list, err := e.client.ListSchedules(waitCtx(t)); err != nil || len(list) != 0 {
		t.Fatalf("after a refused RegisterSchedules: %v, %v; want nothing registered", list, err)
	}
	if err := e.client.RegisterSchedules(a, a); err != nil {
		t.Fatalf("RegisterSchedules of the same schedule twice: %v", err)
	}
	if err := e.client.RegisterSchedules(nil); !errors.As(err, &ae) {
		t.Fatalf("RegisterSchedules(nil) = %v; want *ArgumentError", err)
	}
	if err := e.client.PauseSchedule(waitCtx(t), "no-such", true); !errors.Is(err, ductwork.ErrScheduleNotFound) {
		t.Fatalf("PauseSchedule of an unknown name = %v; want ErrScheduleNotFound", err)
	}
}

// TestScheduleTimeZones: ticks are computed in the schedule's zone (UTC by
// default, whatever the host's), across a daylight saving change, with
// seconds optional and descriptors.
func TestScheduleTimeZones(t *testing.T) {
	def := tickDef("zones")
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	// 2026-03-29 is the spring change in Paris: 09:00 is 08:00 UTC before
	// and 07:00 UTC after.
	before := time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		spec string
		opts []ductwork.ScheduleOption
		from time.Time
		want []time.Time
	}{
		{"0 9 * * *", nil, before, []time.Time{time.Date(2026, 3, 29, 9, 0, 0, 0, time.UTC)}},
		{"0 9 * * *", []ductwork.ScheduleOption{ductwork.ScheduleIn(paris)}, before.Add(-12 * time.Hour),
			[]time.Time{time.Date(2026, 3, 28, 8, 0, 0, 0, time.UTC), time.Date(2026, 3, 29, 7, 0, 0, 0, time.UTC)}},
		{"CRON_TZ=Europe/Paris 0 9 * * *", nil, before.Add(-12 * time.Hour),
			[]time.Time{time.Date(2026, 3, 28, 8, 0, 0, 0, time.UTC), time.Date(2026, 3, 29, 7, 0, 0, 0, time.UTC)}},
		{"30 * * * * *", nil, before, []time.Time{before.Add(30 * time.Second), before.Add(90 * time.Second)}},
		{"@hourly", nil, before, []time.Time{before.Add(time.Hour), before.Add(2 * time.Hour)}},
		{"@every 90s", nil, before, []time.Time{before.Add(90 * time.Second), before.Add(180 * time.Second)}},
	} {
		h, err := ductwork.Schedule(def, tc.spec, identity, tc.opts...)
		if err != nil {
			t.Fatalf("Schedule(%q): %v", tc.spec, err)
		}
		at := tc.from
		for i, want := range tc.want {
			at = h.Next(at)
			if !at.Equal(want) {
				t.Fatalf("%q: tick %d = %v; want %v", tc.spec, i, at.UTC(), want)
			}
		}
	}
	e := newEnv(t)
	h, err := ductwork.Schedule(def, "0 9 * * *", identity, ductwork.ScheduleIn(paris), ductwork.OnMissed(ductwork.MissedSkip))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.client.RegisterSchedules(h); err != nil {
		t.Fatal(err)
	}
	if err := e.client.SaveSchedules(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	list, err := e.client.ListSchedules(waitCtx(t))
	if err != nil || len(list) != 1 {
		t.Fatalf("ListSchedules = %v, %v", list, err)
	}
	s := list[0]
	if s.Name != "zones" || s.Pipeline != "zones" || s.Timezone != "Europe/Paris" || s.Missed != ductwork.MissedSkip || !s.Registered ||
		s.NextTick.In(paris).Hour() != 9 || time.Until(s.NextTick) > 25*time.Hour || s.LastRunID != 0 {
		t.Fatalf("listed schedule = %+v; want zones at 09:00 Paris, skip, registered", s)
	}
}

// scheduledRuns returns the runs of pipeline by tick, failing on a tick
// with two runs.
func scheduledRuns(t *testing.T, c *ductwork.Client, pipeline string) map[time.Time]int64 {
	t.Helper()
	page, err := c.ListRuns(waitCtx(t), ductwork.RunFilter{Pipeline: pipeline, Limit: ductwork.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	out := map[time.Time]int64{}
	for _, r := range page.Runs {
		tick, err := time.Parse(time.RFC3339, r.Metadata[ductwork.MetadataTick])
		if err != nil {
			t.Fatalf("run %d: metadata %v: %v", r.ID, r.Metadata, err)
		}
		if other, ok := out[tick]; ok {
			t.Fatalf("tick %v started runs %d and %d", tick, other, r.ID)
		}
		out[tick] = r.ID
	}
	return out
}

// TestScheduleRace: three clients, each with its own supervisor, fire one
// per-second schedule on one database: every tick over several seconds
// starts exactly one run (none twice, none skipped), whose input is the
// tick.
func TestScheduleRace(t *testing.T) {
	for _, kind := range allBackends {
		t.Run(kind, func(t *testing.T) {
			b, _ := openCrashBackend(t, kind)
			def := tickDef("every-second")
			var first *ductwork.Client
			for i := range 3 {
				c, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
				if err != nil {
					t.Fatal(err)
				}
				h, err := ductwork.Schedule(def, "* * * * * *", identity)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.RegisterSchedules(h); err != nil {
					t.Fatal(err)
				}
				startSupervisor(t, c, &supervisor.Config{Workers: 2})
				if i == 0 {
					first = c
				}
			}
			const ticks = 5
			var runs map[time.Time]int64
			waitFor(t, func() bool { runs = scheduledRuns(t, first, def.Name()); return len(runs) >= ticks })
			var lo, hi time.Time
			for tick, id := range runs {
				if lo.IsZero() || tick.Before(lo) {
					lo = tick
				}
				if tick.After(hi) {
					hi = tick
				}
				r, err := ductwork.Open(waitCtx(t), first, def, id)
				if err != nil {
					t.Fatal(err)
				}
				out, err := r.Wait(waitCtx(t))
				if err != nil || !out.Equal(tick) {
					t.Fatalf("run %d of tick %v = %v, %v; want the tick as input and output", id, tick, out, err)
				}
			}
			runs = scheduledRuns(t, first, def.Name())
			for tick := lo; !tick.After(hi); tick = tick.Add(time.Second) {
				if _, ok := runs[tick]; !ok {
					t.Fatalf("tick %v between %v and %v started no run; runs %v", tick, lo, hi, runs)
				}
			}
			list, err := first.ListSchedules(waitCtx(t))
			if err != nil || len(list) != 1 || list[0].LastRunID == 0 || list[0].LastTick.Before(hi) {
				t.Fatalf("ListSchedules = %+v, %v; want the last tick at or after %v", list, err, hi)
			}
		})
	}
}

// TestScheduleMissedTicks: a schedule whose stored next tick is hours in
// the past (every process was down) starts one run for the latest missed
// tick with MissedRunOnce, none with MissedSkip, and then waits for its
// next tick.
func TestScheduleMissedTicks(t *testing.T) {
	for _, kind := range allBackends {
		for _, policy := range []ductwork.MissedPolicy{ductwork.MissedRunOnce, ductwork.MissedSkip} {
			t.Run(kind+"/"+string(policy), func(t *testing.T) {
				b, _ := openCrashBackend(t, kind)
				c, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
				if err != nil {
					t.Fatal(err)
				}
				def := tickDef("hourly")
				h, err := ductwork.Schedule(def, "0 * * * *", identity, ductwork.OnMissed(policy))
				if err != nil {
					t.Fatal(err)
				}
				if err := c.RegisterSchedules(h); err != nil {
					t.Fatal(err)
				}
				now, err := b.Now(waitCtx(t))
				if err != nil {
					t.Fatal(err)
				}
				// The row as a process that stopped five hours ago left it.
				stale := now.Truncate(time.Hour).Add(-5 * time.Hour)
				if _, err := b.SaveSchedules(waitCtx(t), &backend.SaveSchedulesParams{Schedules: []backend.ScheduleDef{{
					Name: "hourly", Pipeline: "hourly", Spec: "0 * * * *", Timezone: "UTC", Missed: string(policy), NextTick: stale,
				}}}); err != nil {
					t.Fatal(err)
				}
				startSupervisor(t, c, &supervisor.Config{Role: supervisor.RoleMaintenance})
				var s ductwork.ScheduleInfo
				waitFor(t, func() bool {
					list, err := c.ListSchedules(waitCtx(t))
					if err != nil {
						t.Fatal(err)
					}
					s = list[0]
					return s.NextTick.After(now)
				})
				latest := now.UTC().Truncate(time.Hour)
				if next := latest.Add(time.Hour); !s.NextTick.Equal(next) {
					t.Fatalf("next tick = %v; want %v", s.NextTick, next)
				}
				runs := scheduledRuns(t, c, "hourly")
				switch policy {
				case ductwork.MissedRunOnce:
					if len(runs) != 1 || runs[latest] == 0 || !s.LastTick.Equal(latest) || s.LastRunID != runs[latest] {
						t.Fatalf("runs %v, schedule %+v; want one run, for the latest missed tick %v", runs, s, latest)
					}
				case ductwork.MissedSkip:
					if len(runs) != 0 || !s.LastTick.IsZero() {
						t.Fatalf("runs %v, schedule %+v; want none", runs, s)
					}
				}
			})
		}
	}
}
