package backend

import (
	"errors"
	"time"
)

// ErrScheduleNotFound is returned for a schedule name that has no row.
var ErrScheduleNotFound = errors.New("ductwork: schedule not found")

// Missed-tick policies, as stored in Schedule.Missed.
const (
	// MissedRunOnce: after ticks were missed (every process was down), one
	// run is started for the latest missed tick.
	MissedRunOnce = "run-once"
	// MissedSkip: missed ticks start no run.
	MissedSkip = "skip"
)

// MaxScheduleNameBytes is the longest schedule name: with the tick it makes
// a trigger key ("schedule:NAME:" and an RFC 3339 time) that every bundled
// backend stores. MaxScheduleSpecBytes is the longest spec (a time zone
// prefix included).
const (
	MaxScheduleNameBytes = 200
	MaxScheduleSpecBytes = 255
)

// ScheduleDef is a schedule as its process declares it, for SaveSchedules.
type ScheduleDef struct {
	// Name identifies the schedule across processes (unique).
	Name     string
	Pipeline string
	// Spec is the cron expression as written; Timezone the IANA name of its
	// time zone ("UTC" when none was given).
	Spec     string
	Timezone string
	// Missed is MissedRunOnce or MissedSkip.
	Missed string
	// NextTick is the first tick after the database's now, computed by the
	// caller from Spec. It is stored when the row is created, and when Spec
	// or Timezone differ from the stored ones; otherwise the stored next
	// tick is kept (ticks that came due while no process ran stay due).
	NextTick time.Time
}

// Schedule is a stored schedule.
type Schedule struct {
	Name     string
	Pipeline string
	Spec     string
	Timezone string
	Missed   string
	// Paused schedules start no runs; their ticks pass by.
	Paused bool
	// NextTick is the earliest tick not yet handled: due when the database's
	// clock reaches it.
	NextTick time.Time
	// LastTick is the tick that last started (or found) a run, and LastRunID
	// that run; zero if none yet.
	LastTick  time.Time
	LastRunID int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// SaveSchedulesParams are the arguments of Backend.SaveSchedules.
type SaveSchedulesParams struct {
	Schedules []ScheduleDef
}

// SaveSchedulesResult is the result of Backend.SaveSchedules.
type SaveSchedulesResult struct {
	// Inserted counts the schedules created; Rescheduled those whose spec or
	// time zone changed (their next tick was replaced).
	Inserted    int
	Rescheduled int
}

// ListSchedulesParams are the arguments of Backend.ListSchedules.
type ListSchedulesParams struct{}

// ListSchedulesResult is the result of Backend.ListSchedules.
type ListSchedulesResult struct {
	// Schedules are ordered by name.
	Schedules []Schedule
	// Now is the database's clock, read with the schedules.
	Now time.Time
}

// FireScheduleParams are the arguments of Backend.FireSchedule.
type FireScheduleParams struct {
	Name string
	// Expected is the schedule's NextTick as the caller read it: the call
	// does nothing unless the stored next tick still equals it (another
	// process handled the tick first) and the schedule is not paused.
	Expected time.Time
	// Next is the next tick to store.
	Next time.Time
	// Tick is the tick a run is started for, with Trigger (whose Key the
	// caller derives from the schedule's name and Tick). A nil Trigger
	// starts nothing: the due ticks up to Next are skipped.
	Tick    time.Time
	Trigger *TriggerParams
}

// FireScheduleResult is the result of Backend.FireSchedule.
type FireScheduleResult struct {
	// Fired is true when this call advanced the schedule (the stored next
	// tick matched Expected).
	Fired bool
	// RunID is the tick's run; Existing is true when its trigger key was
	// bound to a run already (started earlier for the same tick).
	RunID    int64
	Existing bool
}

// PauseScheduleParams are the arguments of Backend.PauseSchedule.
type PauseScheduleParams struct {
	Name   string
	Paused bool
}

// PauseScheduleResult is the result of Backend.PauseSchedule.
type PauseScheduleResult struct{}
