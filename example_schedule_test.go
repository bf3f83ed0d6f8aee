package ductwork_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// A report every second (six fields: seconds first). Each tick starts one
// run, however many processes run the schedule; the input function receives
// the tick.
func ExampleSchedule() {
	send := step.New("send-report", func(_ step.Context, day string) (string, error) { return "report of " + day + " sent", nil })
	reports := flow.MustDefine("reports", func(p *flow.Pipeline[string]) flow.End[string] { return flow.Start(p, send) })
	everySecond, err := ductwork.Schedule(reports, "* * * * * *", func(tick time.Time) string { return tick.Weekday().String() },
		ductwork.ScheduleIn(time.UTC), ductwork.OnMissed(ductwork.MissedSkip))
	if err != nil {
		panic(err)
	}

	dir, _ := os.MkdirTemp("", "ductwork-schedule-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	b, err := sqlite.Open(filepath.Join(dir, "example.db"), nil)
	if err != nil {
		panic(err)
	}
	defer b.Close(ctx)
	if err := b.Migrate(ctx); err != nil {
		panic(err)
	}
	client, _ := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
	if err := client.RegisterSchedules(everySecond); err != nil {
		panic(err)
	}
	sup, _ := supervisor.New(client, nil) // RoleAll: it fires schedules too
	supCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- sup.Run(supCtx) }()
	defer func() { stop(); <-done }()

	for {
		list, err := client.ListSchedules(ctx)
		if err != nil {
			panic(err)
		}
		if len(list) == 1 && list[0].LastRunID != 0 {
			s := list[0]
			run, _ := ductwork.Open(ctx, client, reports, s.LastRunID)
			out, err := run.Wait(ctx)
			fmt.Println(s.Name, s.Spec, s.Timezone, s.Missed)
			fmt.Println(out == "report of "+s.LastTick.Weekday().String()+" sent", err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Output:
	// reports * * * * * * UTC skip
	// true <nil>
}
