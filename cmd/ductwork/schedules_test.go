package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/windowtest"
	"github.com/ductwork-go/ductwork/readmodel"
)

// TestSchedulesCommand: schedules lists the stored schedules as a table and
// as JSON, with a fired tick's last tick and run, on each backend.
func TestSchedulesCommand(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *windowtest.Env) {
		c := e.Client(t)
		paris, err := time.LoadLocation("Europe/Paris")
		if err != nil {
			t.Fatal(err)
		}
		nightly, err := ductwork.Schedule(windowtest.Orders, "0 3 * * *", func(time.Time) []string { return []string{"nightly"} },
			ductwork.ScheduleName("orders-nightly"), ductwork.ScheduleIn(paris), ductwork.OnMissed(ductwork.MissedSkip))
		if err != nil {
			t.Fatal(err)
		}
		hourly, err := ductwork.Schedule(windowtest.Orders, "@hourly", func(time.Time) []string { return []string{"hourly"} },
			ductwork.ScheduleName("orders-hourly"))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RegisterSchedules(nightly, hourly); err != nil {
			t.Fatal(err)
		}
		if err := c.SaveSchedules(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Fire the hourly schedule's stored tick as a supervisor would.
		list, err := c.ListSchedules(t.Context())
		if err != nil || len(list) != 2 || list[0].Name != "orders-hourly" {
			t.Fatalf("ListSchedules = %+v, %v", list, err)
		}
		tick := list[0].NextTick
		fired, err := e.Backend.FireSchedule(t.Context(), &backend.FireScheduleParams{Name: "orders-hourly", Expected: tick, Tick: tick,
			Next: tick.Add(time.Hour), Trigger: &backend.TriggerParams{Pipeline: "orders", Fingerprint: windowtest.Orders.Fingerprint(),
				Input: []byte(`["hourly"]`), Key: "schedule:orders-hourly:" + tick.Format(time.RFC3339), First: backend.NewJob{NodeID: "receive", Input: []byte(`["hourly"]`)}}})
		if err != nil || !fired.Fired {
			t.Fatalf("FireSchedule = %+v, %v", fired, err)
		}

		code, out, errOut := cli(t, e.URL, "schedules")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") {
			t.Fatalf("schedules: %d\n%s%s", code, out, errOut)
		}
		for _, want := range []string{"orders-hourly", "@hourly", "UTC", "run-once", tick.Format(time.DateTime), strconv.FormatInt(fired.RunID, 10)} {
			if !strings.Contains(lines[1], want) {
				t.Fatalf("schedules: line %q lacks %q", lines[1], want)
			}
		}
		for _, want := range []string{"orders-nightly", "0 3 * * *", "Europe/Paris", "skip", "false"} {
			if !strings.Contains(lines[2], want) {
				t.Fatalf("schedules: line %q lacks %q", lines[2], want)
			}
		}
		if err := c.PauseSchedule(t.Context(), "orders-nightly", true); err != nil {
			t.Fatal(err)
		}
		code, out, _ = cli(t, e.URL, "schedules", "-json")
		var ss []readmodel.Schedule
		if code != 0 || json.Unmarshal([]byte(out), &ss) != nil || len(ss) != 2 {
			t.Fatalf("schedules -json: %d %s", code, out)
		}
		if h := ss[0]; h.Name != "orders-hourly" || !h.LastTick.Equal(tick) || h.LastRunID != fired.RunID || !h.NextTick.Equal(tick.Add(time.Hour)) {
			t.Fatalf("schedules -json: %+v; want last tick %v, run %d", h, tick, fired.RunID)
		}
		if n := ss[1]; n.Name != "orders-nightly" || !n.Paused || n.Timezone != "Europe/Paris" || n.NextTick.In(paris).Hour() != 3 || !n.LastTick.IsZero() {
			t.Fatalf("schedules -json: %+v; want paused, at 03:00 Paris, never fired", n)
		}
	})
}
