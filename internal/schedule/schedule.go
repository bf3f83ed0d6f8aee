// Package schedule holds what the client and the supervisor share about
// schedules: the parsed cron spec, the registry of a client's schedules, and
// the round a scheduler runs: read the stored schedules and the database's
// clock, decide each one's due tick, and fire it through
// backend.FireSchedule.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/ductwork-go/ductwork/backend"
)

// parser reads 5 fields (minute first) or 6 (second first), descriptors
// such as @hourly and @every 1h30m, and a CRON_TZ= or TZ= prefix.
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Spec is a parsed cron spec in its time zone.
type Spec struct {
	sched cron.Schedule
	// Location is the time zone ticks are computed in.
	Location *time.Location
}

// Parse parses spec. loc, when non-nil, is the time zone of a spec without
// a CRON_TZ= prefix (default UTC); a spec with a prefix naming another zone
// than loc is refused.
func Parse(spec string, loc *time.Location) (*Spec, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, errors.New("the spec is empty")
	}
	tz := ""
	if rest, ok := strings.CutPrefix(spec, "CRON_TZ="); ok {
		tz, _, _ = strings.Cut(rest, " ")
	} else if rest, ok := strings.CutPrefix(spec, "TZ="); ok {
		tz, _, _ = strings.Cut(rest, " ")
	}
	s, err := parser.Parse(spec)
	if err != nil {
		return nil, err
	}
	out := &Spec{sched: s, Location: time.UTC}
	if ss, ok := s.(*cron.SpecSchedule); ok {
		switch {
		case tz != "":
			if loc != nil && loc.String() != ss.Location.String() {
				return nil, fmt.Errorf("the spec's time zone %s differs from the location option %s", tz, loc)
			}
		case loc != nil:
			ss.Location = loc
		default:
			// The parser's default is the host's zone; hosts differ.
			ss.Location = time.UTC
		}
		out.Location = ss.Location
	} else if tz != "" || loc != nil {
		return nil, errors.New("an @every spec takes no time zone")
	}
	return out, nil
}

// Next returns the first tick strictly after t, in the spec's time zone, or
// the zero time if there is none within five years.
func (s *Spec) Next(t time.Time) time.Time {
	return s.sched.Next(t.In(s.Location))
}

// latestBefore returns the latest tick t with from <= t < before, if any.
// It looks back through growing windows, so that a frequent spec after a
// long gap costs a few hundred steps, not one per missed tick.
func (s *Spec) latestBefore(from, before time.Time) (time.Time, bool) {
	if !from.Before(before) {
		return time.Time{}, false
	}
	for _, w := range []time.Duration{time.Second, time.Minute, time.Hour, 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour, 5 * 367 * 24 * time.Hour} {
		start := before.Add(-w)
		if start.Before(from) {
			start = from
		}
		t := s.Next(start.Add(-time.Nanosecond))
		if t.IsZero() || !t.Before(before) {
			if start.Equal(from) {
				return time.Time{}, false
			}
			continue
		}
		for {
			n := s.Next(t)
			if n.IsZero() || !n.Before(before) {
				return t, true
			}
			t = n
		}
	}
	return time.Time{}, false
}

// Entry is one schedule registered with a client.
type Entry struct {
	backend.ScheduleDef
	Spec *Spec
	// Grace is how late a tick may fire and still be on time.
	Grace time.Duration
	// Build returns the trigger of tick (its key included); it calls the
	// user's input function, so it may fail.
	Build func(ctx context.Context, tick time.Time) (*backend.TriggerParams, error)
	// Fired, when set, is told of every run a tick started (for the
	// trigger hooks and wake-ups); existing is true when the tick's key
	// named a run already.
	Fired func(ctx context.Context, runID int64, existing bool)
}

// Registry is a client's schedules, by name.
type Registry struct {
	mu      sync.RWMutex
	entries map[string]*Entry
	order   []string
}

// ConflictError reports a schedule name registered twice with different
// settings.
type ConflictError struct {
	Name, Spec string
	Old        backend.ScheduleDef
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("the name is registered already for pipeline %s with spec %q, time zone %s, policy %s",
		e.Old.Pipeline, e.Old.Spec, e.Old.Timezone, e.Old.Missed)
}

// Check returns a *ConflictError if es name a schedule twice, or one
// registered already, with different settings.
func (r *Registry) Check(es ...*Entry) *ConflictError {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.check(es)
}

func (r *Registry) check(es []*Entry) *ConflictError {
	seen := map[string]*Entry{}
	for _, e := range es {
		old := seen[e.Name]
		if old == nil {
			old = r.entries[e.Name]
		}
		if old != nil && old.ScheduleDef != e.ScheduleDef {
			return &ConflictError{Name: e.Name, Spec: e.ScheduleDef.Spec, Old: old.ScheduleDef}
		}
		seen[e.Name] = e
	}
	return nil
}

// Add registers es, after the checks of Check (then none is added).
func (r *Registry) Add(es ...*Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.check(es); err != nil {
		return err
	}
	if r.entries == nil {
		r.entries = map[string]*Entry{}
	}
	for _, e := range es {
		if _, ok := r.entries[e.Name]; !ok {
			r.order = append(r.order, e.Name)
		}
		r.entries[e.Name] = e
	}
	return nil
}

// Entries returns the registered schedules in registration order.
func (r *Registry) Entries() []*Entry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Entry, 0, len(r.order))
	for _, n := range r.order {
		out = append(out, r.entries[n])
	}
	return out
}

// Save stores the rows of es, each with its first tick after the
// database's now.
func Save(ctx context.Context, b backend.Backend, es []*Entry) error {
	if len(es) == 0 {
		return nil
	}
	now, err := b.Now(ctx)
	if err != nil {
		return err
	}
	defs := make([]backend.ScheduleDef, 0, len(es))
	for _, e := range es {
		d := e.ScheduleDef
		d.NextTick = e.Spec.Next(now).UTC()
		defs = append(defs, d)
	}
	_, err = b.SaveSchedules(ctx, &backend.SaveSchedulesParams{Schedules: defs})
	return err
}

// maxOnTime bounds the on-time ticks one round fires for one schedule.
const maxOnTime = 100

// Plan is what a round does with one schedule: fire Ticks in order (each
// storing the following tick, the last one storing Next), or, with no
// ticks, store Next (skipping the due ticks). Nothing is due when Next is
// zero.
type Plan struct {
	Ticks []time.Time
	Next  time.Time
}

// Decide plans one schedule whose earliest unhandled tick is next, at now
// by the database's clock. A tick at most grace late is on time and fires;
// older due ticks were missed (no process ran, or the schedule was paused):
// with backend.MissedRunOnce the latest of them fires when no on-time tick
// does, with backend.MissedSkip none does.
func Decide(spec *Spec, missed string, grace time.Duration, next, now time.Time) Plan {
	if next.After(now) {
		return Plan{}
	}
	threshold := now.Add(-grace)
	var p Plan
	start := next
	if start.Before(threshold) {
		start = threshold
	}
	for t := spec.Next(start.Add(-time.Nanosecond)); !t.IsZero() && !t.After(now); t = spec.Next(t) {
		p.Ticks = append(p.Ticks, t.UTC())
		if len(p.Ticks) == maxOnTime {
			p.Next = spec.Next(t).UTC()
			return p
		}
	}
	if len(p.Ticks) == 0 && missed != backend.MissedSkip {
		if l, ok := spec.latestBefore(next, threshold); ok {
			p.Ticks = []time.Time{l.UTC()}
		}
	}
	p.Next = spec.Next(now).UTC()
	return p
}

// Key returns the trigger key of a schedule's tick: unique per schedule
// and tick, so that a tick starts one run however many processes fire it.
func Key(name string, tick time.Time) string {
	return "schedule:" + name + ":" + tick.UTC().Format(time.RFC3339)
}

// Round fires the due ticks of the schedules of es that are stored with the
// same spec and time zone (a process with another version of a schedule
// leaves it to the processes that have that version) and not paused. It
// saves the rows of es that are missing. It returns how long until the
// earliest next tick by the database's clock (at most max), and the runs it
// started.
func Round(ctx context.Context, b backend.Backend, es []*Entry, maxWait time.Duration) (time.Duration, int, error) {
	if len(es) == 0 {
		return maxWait, 0, nil
	}
	list, err := b.ListSchedules(ctx, &backend.ListSchedulesParams{})
	if err != nil {
		return 0, 0, err
	}
	stored := make(map[string]backend.Schedule, len(list.Schedules))
	for _, s := range list.Schedules {
		stored[s.Name] = s
	}
	var missing []*Entry
	wait, started := maxWait, 0
	var errs []error
	for _, e := range es {
		s, ok := stored[e.Name]
		switch {
		case !ok:
			missing = append(missing, e)
			continue
		case s.Paused || s.Spec != e.ScheduleDef.Spec || s.Timezone != e.Timezone || s.Pipeline != e.Pipeline:
			continue
		}
		p := Decide(e.Spec, s.Missed, e.Grace, s.NextTick, list.Now)
		next := s.NextTick
		if !p.Next.IsZero() {
			n, err := fire(ctx, b, e, s.NextTick, p)
			started += n
			if err != nil {
				errs = append(errs, fmt.Errorf("schedule %s: %w", e.Name, err))
			}
			next = p.Next
		}
		if d := next.Sub(list.Now); d < wait {
			wait = d
		}
	}
	if len(missing) > 0 {
		if err := Save(ctx, b, missing); err != nil {
			errs = append(errs, err)
		}
		wait = 0
	}
	return max(wait, 0), started, errors.Join(errs...)
}

// fire applies p to one schedule: each tick in its own FireSchedule.
func fire(ctx context.Context, b backend.Backend, e *Entry, expected time.Time, p Plan) (int, error) {
	started := 0
	if len(p.Ticks) == 0 {
		_, err := b.FireSchedule(ctx, &backend.FireScheduleParams{Name: e.Name, Expected: expected, Next: p.Next})
		return 0, err
	}
	for i, tick := range p.Ticks {
		next := p.Next
		if i+1 < len(p.Ticks) {
			next = p.Ticks[i+1]
		}
		tp, err := e.Build(ctx, tick)
		if err != nil {
			return started, err
		}
		res, err := b.FireSchedule(ctx, &backend.FireScheduleParams{Name: e.Name, Expected: expected, Next: next, Tick: tick, Trigger: tp})
		if err != nil {
			return started, err
		}
		if !res.Fired {
			// Another process handled this tick (and goes on with the
			// next ones); the next round reads where it got to.
			return started, nil
		}
		if e.Fired != nil && res.RunID != 0 {
			e.Fired(ctx, res.RunID, res.Existing)
		}
		if !res.Existing {
			started++
		}
		expected = next
	}
	return started, nil
}
