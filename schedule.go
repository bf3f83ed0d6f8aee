package ductwork

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/internal/engine"
	"github.com/ductwork-go/ductwork/internal/schedule"
)

// MissedPolicy says what a schedule does with ticks that were missed: ticks
// that came due while no supervisor fired schedules (every process was
// down, or the schedule was paused) and that are more than the schedule's
// grace (ScheduleGrace) late when a supervisor sees them.
type MissedPolicy string

// Missed-tick policies.
const (
	// MissedRunOnce (the default) starts one run for the latest missed
	// tick, with that tick passed to the input function, unless a tick that
	// is on time fires in the same round (it supersedes the missed ones).
	MissedRunOnce MissedPolicy = backend.MissedRunOnce
	// MissedSkip starts no run for missed ticks: the schedule goes on with
	// its next tick.
	MissedSkip MissedPolicy = backend.MissedSkip
)

// DefaultScheduleGrace is the grace of a schedule without ScheduleGrace: a
// tick that a supervisor sees due at most this late (by the database's
// clock) is on time and fires.
const DefaultScheduleGrace = 10 * time.Second

// ErrScheduleNotFound is returned for a schedule name that is not stored.
var ErrScheduleNotFound = backend.ErrScheduleNotFound

// ScheduleError reports a schedule that Schedule or RegisterSchedules
// refuses: a spec the parser rejects or that never fires, a bad option, a
// name registered twice with different settings. Nothing was registered.
type ScheduleError struct {
	// Schedule is the schedule's name, Spec its cron spec.
	Schedule string
	Spec     string
	// Reason says what is wrong.
	Reason string
}

func (e *ScheduleError) Error() string {
	return fmt.Sprintf("ductwork: schedule %q (spec %q): %s", e.Schedule, e.Spec, e.Reason)
}

// ScheduleOption modifies a schedule: ScheduleName, ScheduleIn, OnMissed,
// ScheduleGrace, ScheduleTrigger. Its implementations are this package's
// own.
type ScheduleOption interface {
	applySchedule(*scheduleOptions)
}

type scheduleOptions struct {
	name    string
	loc     *time.Location
	missed  MissedPolicy
	grace   time.Duration
	trigger []TriggerOption
}

type scheduleOptionFunc func(*scheduleOptions)

func (f scheduleOptionFunc) applySchedule(o *scheduleOptions) { f(o) }

// ScheduleName names the schedule; the name identifies it in the database
// and across processes, and is part of each tick's trigger key. Default: the
// pipeline's name (give another name to the second schedule of a pipeline).
// At most backend.MaxScheduleNameBytes bytes.
func ScheduleName(name string) ScheduleOption {
	return scheduleOptionFunc(func(o *scheduleOptions) { o.name = name })
}

// ScheduleIn computes the ticks in loc (for example the 09:00 of "0 9 * *
// *" in Europe/Paris, daylight saving time included). Default UTC, whatever
// the host's zone. A spec may name its zone itself with a CRON_TZ= prefix
// instead.
func ScheduleIn(loc *time.Location) ScheduleOption {
	return scheduleOptionFunc(func(o *scheduleOptions) { o.loc = loc })
}

// OnMissed sets the missed-tick policy. Default MissedRunOnce.
func OnMissed(p MissedPolicy) ScheduleOption {
	return scheduleOptionFunc(func(o *scheduleOptions) { o.missed = p })
}

// ScheduleGrace sets how late a tick may be seen due and still fire as on
// time; older due ticks are missed (see MissedPolicy). Default
// DefaultScheduleGrace.
func ScheduleGrace(d time.Duration) ScheduleOption {
	return scheduleOptionFunc(func(o *scheduleOptions) { o.grace = d })
}

// ScheduleTrigger adds trigger options to each tick's trigger (WithMetadata;
// WithKey is refused: a tick's key is its own).
func ScheduleTrigger(opts ...TriggerOption) ScheduleOption {
	return scheduleOptionFunc(func(o *scheduleOptions) { o.trigger = append(o.trigger, opts...) })
}

// ScheduleHandle is a schedule made by Schedule; register it with
// Client.RegisterSchedules.
type ScheduleHandle struct {
	entry *schedule.Entry
	def   Definition
	// bind returns the entry with its trigger built by c.
	bind func(c *Client) *schedule.Entry
}

// Name returns the schedule's name.
func (s *ScheduleHandle) Name() string { return s.entry.Name }

// Next returns the schedule's first tick strictly after t.
func (s *ScheduleHandle) Next(t time.Time) time.Time { return s.entry.Spec.Next(t) }

// Schedule makes a schedule that triggers a run of d at each tick of spec,
// with input(tick) as the run's input (tick in the schedule's time zone).
// spec is a cron expression: five fields (minute, hour, day of month, month,
// day of week), or six with seconds first; descriptors such as @hourly,
// @daily and @every 90s; an optional CRON_TZ=Area/City prefix. A spec the
// parser refuses, or that never fires, returns a *ScheduleError naming the
// schedule and the problem.
//
// Each tick starts exactly one run across all processes: every supervisor
// that runs maintenance (supervisor.RoleAll or RoleMaintenance) and whose
// client registered the schedule fires due ticks, deciding what is due by
// the database's clock, and a tick's trigger carries a key unique to the
// schedule and tick (WithKey, bound for ever), written in the transaction
// that advances the schedule's stored next tick. Ticks missed while no such
// supervisor ran follow the schedule's MissedPolicy.
func Schedule[In, Out any](d *flow.Definition[In, Out], spec string, input func(tick time.Time) In, opts ...ScheduleOption) (*ScheduleHandle, error) {
	if d == nil || d.Erased() == nil {
		return nil, &ArgumentError{Func: "Schedule", Arg: "definition", Reason: "is nil"}
	}
	if input == nil {
		return nil, &ArgumentError{Func: "Schedule", Arg: "input", Reason: "is nil"}
	}
	o := scheduleOptions{name: d.Name(), missed: MissedRunOnce, grace: DefaultScheduleGrace}
	for _, opt := range opts {
		if opt != nil {
			opt.applySchedule(&o)
		}
	}
	bad := func(reason string) error { return &ScheduleError{Schedule: o.name, Spec: spec, Reason: reason} }
	switch {
	case o.name == "":
		return nil, bad("the name is empty")
	case len(o.name) > backend.MaxScheduleNameBytes:
		return nil, bad(fmt.Sprintf("the name is %d bytes long, the limit is %d", len(o.name), backend.MaxScheduleNameBytes))
	case len(spec) > backend.MaxScheduleSpecBytes:
		return nil, bad(fmt.Sprintf("the spec is %d bytes long, the limit is %d", len(spec), backend.MaxScheduleSpecBytes))
	case o.missed != MissedRunOnce && o.missed != MissedSkip:
		return nil, bad(fmt.Sprintf("unknown missed-tick policy %q", o.missed))
	case o.grace < 0:
		return nil, bad("the grace is negative")
	}
	var to triggerOptions
	for _, opt := range o.trigger {
		if opt != nil {
			opt.applyTrigger(&to)
		}
	}
	if to.key != "" {
		return nil, bad("WithKey is not a schedule's trigger option (each tick has its own key)")
	}
	parsed, err := schedule.Parse(spec, o.loc)
	if err != nil {
		return nil, bad(err.Error())
	}
	if parsed.Next(time.Now()).IsZero() {
		return nil, bad("the spec never fires")
	}
	g := d.Erased()
	e := &schedule.Entry{
		ScheduleDef: backend.ScheduleDef{Name: o.name, Pipeline: g.Pipeline, Spec: spec, Timezone: parsed.Location.String(), Missed: string(o.missed)},
		Spec:        parsed,
		Grace:       o.grace,
	}
	h := &ScheduleHandle{entry: e, def: d}
	h.bind = func(c *Client) *schedule.Entry {
		e := *h.entry
		e.Build = func(ctx context.Context, tick time.Time) (*backend.TriggerParams, error) {
			in, err := engine.Contain(func() (In, error) { return input(tick.In(parsed.Location)), nil })
			if err != nil {
				return nil, fmt.Errorf("input function of schedule %s: %w", o.name, err)
			}
			md := map[string]string{MetadataSchedule: o.name, MetadataTick: tick.UTC().Format(time.RFC3339)}
			for k, v := range to.metadata {
				md[k] = v
			}
			p, err := c.triggerParams(g, in)
			if err != nil {
				return nil, err
			}
			p.Metadata, p.Key = md, schedule.Key(o.name, tick)
			return p, nil
		}
		e.Fired = func(ctx context.Context, runID int64, existing bool) {
			if !existing {
				c.eng.WakeAll()
			}
		}
		return &e
	}
	return h, nil
}

// Metadata keys of a scheduled run: the schedule's name and the tick
// (RFC 3339, UTC).
const (
	MetadataSchedule = "ductwork.schedule"
	MetadataTick     = "ductwork.tick"
)

// RegisterSchedules registers schedules with c (and their definitions, as
// Register does), so that c's supervisors that run maintenance fire them.
// Register them before starting the supervisors. A schedule whose name is
// registered already with another spec, pipeline or policy is refused with
// *ScheduleError; then none of ss is registered. It does no I/O: the
// supervisors store the schedules when they start (or call SaveSchedules).
func (c *Client) RegisterSchedules(ss ...*ScheduleHandle) error {
	if c == nil {
		return &ArgumentError{Func: "RegisterSchedules", Arg: "client", Reason: "is nil"}
	}
	for i, s := range ss {
		if s == nil || s.entry == nil {
			return &ArgumentError{Func: "RegisterSchedules", Arg: fmt.Sprintf("schedule %d", i), Reason: "is nil or was not made by Schedule"}
		}
	}
	defs := make([]Definition, 0, len(ss))
	entries := make([]*schedule.Entry, 0, len(ss))
	for _, s := range ss {
		defs = append(defs, s.def)
		entries = append(entries, s.bind(c))
	}
	if err := c.eng.Schedules.Check(entries...); err != nil {
		return &ScheduleError{Schedule: err.Name, Spec: err.Spec, Reason: err.Error()}
	}
	if err := c.Register(defs...); err != nil {
		return err
	}
	if err := c.eng.Schedules.Add(entries...); err != nil {
		// A concurrent RegisterSchedules registered the name first.
		var ce *schedule.ConflictError
		errors.As(err, &ce)
		return &ScheduleError{Schedule: ce.Name, Spec: ce.Spec, Reason: ce.Error()}
	}
	return nil
}

// SaveSchedules stores the schedules registered with c that are not
// stored yet (each with its first tick after the database's now) and
// updates those stored with other settings; a schedule whose spec or time
// zone changed gets its next tick anew. Supervisors that run maintenance do
// this when they start; call it to list the schedules before any runs.
func (c *Client) SaveSchedules(ctx context.Context) error {
	if c == nil {
		return &ArgumentError{Func: "SaveSchedules", Arg: "client", Reason: "is nil"}
	}
	if err := schedule.Save(ctx, c.b, c.eng.Schedules.Entries()); err != nil {
		return fmt.Errorf("ductwork: save schedules: %w", err)
	}
	return nil
}

// ScheduleInfo is a stored schedule, as ListSchedules returns it.
type ScheduleInfo struct {
	Name     string
	Pipeline string
	Spec     string
	// Timezone is the IANA name of the zone the ticks are computed in.
	Timezone string
	Missed   MissedPolicy
	Paused   bool
	// NextTick is the earliest tick not fired yet; LastTick the tick that
	// last started a run, LastRunID that run (zero if none yet).
	NextTick  time.Time
	LastTick  time.Time
	LastRunID int64
	// Registered is true when c registered the schedule (so its
	// supervisors fire it).
	Registered bool
}

// ListSchedules lists the stored schedules, by name.
func (c *Client) ListSchedules(ctx context.Context) ([]ScheduleInfo, error) {
	if c == nil {
		return nil, &ArgumentError{Func: "ListSchedules", Arg: "client", Reason: "is nil"}
	}
	res, err := c.b.ListSchedules(ctx, &backend.ListSchedulesParams{})
	if err != nil {
		return nil, err
	}
	mine := map[string]bool{}
	for _, e := range c.eng.Schedules.Entries() {
		mine[e.Name] = true
	}
	out := make([]ScheduleInfo, 0, len(res.Schedules))
	for _, s := range res.Schedules {
		out = append(out, ScheduleInfo{
			Name: s.Name, Pipeline: s.Pipeline, Spec: s.Spec, Timezone: s.Timezone, Missed: MissedPolicy(s.Missed), Paused: s.Paused,
			NextTick: s.NextTick, LastTick: s.LastTick, LastRunID: s.LastRunID, Registered: mine[s.Name],
		})
	}
	return out, nil
}

// PauseSchedule pauses (paused true) or resumes a stored schedule, for
// every process. A paused schedule starts no runs; when it is resumed, the
// ticks that passed meanwhile are missed ticks (see MissedPolicy). It
// returns ErrScheduleNotFound for a name that is not stored.
func (c *Client) PauseSchedule(ctx context.Context, name string, paused bool) error {
	if c == nil {
		return &ArgumentError{Func: "PauseSchedule", Arg: "client", Reason: "is nil"}
	}
	_, err := c.b.PauseSchedule(ctx, &backend.PauseScheduleParams{Name: name, Paused: paused})
	return err
}
