package schedule

import (
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

func mustParse(t *testing.T, spec string) *Spec {
	t.Helper()
	s, err := Parse(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDecide: what one round does with a schedule, for on-time, late,
// missed and not-yet-due ticks, under both policies.
func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	perSecond, hourly := mustParse(t, "* * * * * *"), mustParse(t, "0 * * * *")
	const grace = 10 * time.Second
	for _, tc := range []struct {
		name      string
		spec      *Spec
		missed    string
		next, now time.Time
		ticks     []time.Time
		wantNext  time.Time
	}{
		{"not due", perSecond, backend.MissedRunOnce, sec(5), sec(4), nil, time.Time{}},
		{"due now", perSecond, backend.MissedRunOnce, sec(5), sec(5), []time.Time{sec(5)}, sec(6)},
		{"late within the grace: each tick", perSecond, backend.MissedSkip, sec(5), sec(8).Add(500 * time.Millisecond),
			[]time.Time{sec(5), sec(6), sec(7), sec(8)}, sec(9)},
		{"missed and on time: the on-time ones", perSecond, backend.MissedRunOnce, sec(0), sec(20),
			[]time.Time{sec(10), sec(11), sec(12), sec(13), sec(14), sec(15), sec(16), sec(17), sec(18), sec(19), sec(20)}, sec(21)},
		{"missed, run once", hourly, backend.MissedRunOnce, t0, t0.Add(5*time.Hour + 30*time.Minute), []time.Time{t0.Add(5 * time.Hour)}, t0.Add(6 * time.Hour)},
		{"missed, skip", hourly, backend.MissedSkip, t0, t0.Add(5*time.Hour + 30*time.Minute), nil, t0.Add(6 * time.Hour)},
		{"missed long ago, run once", hourly, backend.MissedRunOnce, t0.Add(-3 * 365 * 24 * time.Hour), t0.Add(30 * time.Minute), []time.Time{t0}, t0.Add(time.Hour)},
		{"the latest missed tick is the stored one", hourly, backend.MissedRunOnce, t0, t0.Add(50 * time.Minute), []time.Time{t0}, t0.Add(time.Hour)},
		{"stored next is not a tick", hourly, backend.MissedRunOnce, t0.Add(-30 * time.Minute), t0.Add(time.Second), []time.Time{t0}, t0.Add(time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Decide(tc.spec, tc.missed, grace, tc.next, tc.now)
			if len(p.Ticks) != len(tc.ticks) || !p.Next.Equal(tc.wantNext) {
				t.Fatalf("Decide = %v then %v; want %v then %v", p.Ticks, p.Next, tc.ticks, tc.wantNext)
			}
			for i := range p.Ticks {
				if !p.Ticks[i].Equal(tc.ticks[i]) {
					t.Fatalf("Decide = %v; want %v", p.Ticks, tc.ticks)
				}
			}
		})
	}
	// A long grace catches up at most maxOnTime ticks a round; the next
	// round goes on from the first tick left.
	p := Decide(perSecond, backend.MissedRunOnce, time.Hour, t0, sec(1000))
	if len(p.Ticks) != maxOnTime || !p.Ticks[0].Equal(t0) || !p.Next.Equal(sec(maxOnTime)) {
		t.Fatalf("catch-up: %d ticks from %v, then %v; want %d from %v, then %v", len(p.Ticks), p.Ticks[0], p.Next, maxOnTime, t0, sec(maxOnTime))
	}
}

// TestParseZones: a spec without a zone is UTC whatever the host's zone.
func TestParseZones(t *testing.T) {
	local := time.Local
	t.Cleanup(func() { time.Local = local })
	time.Local = time.FixedZone("host", 5*3600)
	s := mustParse(t, "0 9 * * *")
	if s.Location != time.UTC {
		t.Fatalf("Location = %v; want UTC", s.Location)
	}
	at := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	if n := s.Next(at); !n.Equal(time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)) {
		t.Fatalf("Next = %v; want 09:00 UTC", n)
	}
}
