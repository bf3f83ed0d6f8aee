package ductwork_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

// TestListRunsFiltersAndPages: Client.ListRuns filters by pipeline, status
// and creation time, pages by keyset, and reports each run's typed status
// and whether this client knows its definition.
func TestListRunsFiltersAndPages(t *testing.T) {
	a, b := echoDef("list-a"), echoDef("list-b")
	e := newEnv(t, a) // b is not registered: its runs are listed with Known false
	ctx := waitCtx(t)
	var aIDs []int64
	for i := range 5 {
		r, err := ductwork.Trigger(ctx, e.client, a, i)
		if err != nil {
			t.Fatal(err)
		}
		aIDs = append(aIDs, r.ID)
	}
	rb, err := ductwork.Trigger(ctx, e.client, b, 1, ductwork.WithMetadata(map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.client.Cancel(ctx, aIDs[0], "listing"); err != nil {
		t.Fatal(err)
	}

	var all []ductwork.RunInfo
	f := ductwork.RunFilter{Limit: 2}
	for range 10 {
		p, err := e.client.ListRuns(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Runs...)
		if p.Next == 0 {
			break
		}
		f.Before = p.Next
	}
	if len(all) != 6 {
		t.Fatalf("paged listing: %d runs; want 6", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID >= all[i-1].ID {
			t.Fatalf("listing not newest first: %d after %d", all[i].ID, all[i-1].ID)
		}
	}
	if all[0].ID != rb.ID || all[0].Known || all[0].Metadata["k"] != "v" || all[0].Status != ductwork.RunRunning {
		t.Errorf("newest run = %+v; want run %d of list-b, running, unknown, with its metadata", all[0], rb.ID)
	}

	p, err := e.client.ListRuns(ctx, ductwork.RunFilter{Pipeline: "list-a", Status: ductwork.RunCancelled})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Runs) != 1 || p.Runs[0].ID != aIDs[0] || !p.Runs[0].Known || p.Runs[0].Error != "listing" {
		t.Errorf("cancelled runs of list-a = %+v; want run %d with its reason", p.Runs, aIDs[0])
	}
	p, err = e.client.ListRuns(ctx, ductwork.RunFilter{CreatedFrom: all[0].CreatedAt})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Runs {
		if r.CreatedAt.Before(all[0].CreatedAt) {
			t.Errorf("CreatedFrom %v listed run %d created %v", all[0].CreatedAt, r.ID, r.CreatedAt)
		}
	}
	if len(p.Runs) == 0 {
		t.Errorf("CreatedFrom the newest run's creation time listed nothing")
	}

	for name, bad := range map[string]ductwork.RunFilter{
		"status":   {Status: "paused"},
		"limit":    {Limit: ductwork.MaxListLimit + 1},
		"negative": {Limit: -1},
		"before":   {Before: -1},
		"range":    {CreatedFrom: all[0].CreatedAt, CreatedTo: all[0].CreatedAt.Add(-1)},
	} {
		var ae *ductwork.ArgumentError
		if _, err := e.client.ListRuns(ctx, bad); !errors.As(err, &ae) {
			t.Errorf("ListRuns with a bad %s: %v; want *ArgumentError", name, err)
		}
	}
}

// TestInspectAndSteps: Inspect returns the run as plain fields (the halt
// described apart), Steps the typed step statuses.
func TestInspectAndSteps(t *testing.T) {
	d := echoDef("inspect")
	e := newEnv(t, d)
	startSupervisor(t, e.client, nil)
	ctx := waitCtx(t)
	r, err := ductwork.Trigger(ctx, e.client, d, 7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := e.client.Inspect(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != r.ID || info.Pipeline != "inspect" || info.Status != ductwork.RunCompleted || !info.Known || info.Halt != nil || string(info.Output) != "7" {
		t.Errorf("Inspect = %+v; want the completed run with output 7 and no halt", info)
	}
	steps, err := e.client.Steps(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 1 || steps[0].Status != ductwork.StepCompleted || !steps[0].Status.Terminal() {
		t.Errorf("Steps = %+v; want one completed step", steps)
	}
	if _, err := e.client.Inspect(ctx, r.ID+1000); !errors.Is(err, ductwork.ErrRunNotFound) {
		t.Errorf("Inspect of an unknown run: %v; want ErrRunNotFound", err)
	}
}

// TestRegisterRefusesForeignDefinitions: a Definition that is not a
// *flow.Definition (or a nil one) is refused with *ArgumentError.
func TestRegisterRefusesForeignDefinitions(t *testing.T) {
	e := newEnv(t)
	var nilDef *struct{ foreign }
	for name, d := range map[string]ductwork.Definition{"foreign": foreign{}, "typed nil": nilDef} {
		var ae *ductwork.ArgumentError
		if err := e.client.Register(d); !errors.As(err, &ae) {
			t.Errorf("Register(%s): %v; want *ArgumentError", name, err)
		}
	}
}

type foreign struct{}

func (foreign) Name() string        { return "foreign" }
func (foreign) Fingerprint() string { return "f" }

// recordingHook records the events it observes, tagged with its name, and
// chains a context value so the next hook (and the step) sees it.
type recordingHook struct {
	name string
	mu   *sync.Mutex
	log  *[]string
}

type hookCtxKey struct{}

func (h recordingHook) add(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.log = append(*h.log, h.name+":"+s)
}

func (h recordingHook) TriggerStart(ctx context.Context, info *ductworktype.TriggerInfo) (context.Context, func(int64, error)) {
	seen, _ := ctx.Value(hookCtxKey{}).(string)
	h.add("trigger " + info.Pipeline + " after [" + seen + "]")
	info.Metadata[h.name] = "1"
	return context.WithValue(ctx, hookCtxKey{}, seen+h.name), func(int64, error) { h.add("trigger end") }
}

func (h recordingHook) StepStart(ctx context.Context, exec *ductworktype.Execution) (context.Context, func(ductworktype.StepEnd)) {
	seen, _ := ctx.Value(hookCtxKey{}).(string)
	h.add(fmt.Sprintf("step %s attempt %d metadata %d after [%s]", exec.Node, exec.Attempt, len(exec.Metadata), seen))
	return context.WithValue(ctx, hookCtxKey{}, seen+h.name), func(end ductworktype.StepEnd) {
		h.add(fmt.Sprintf("step end completed=%t", end.RunCompleted))
	}
}

// TestHooksCompose: several hooks in Config.Hooks each observe every event,
// in list order at the start and in reverse order at the end, each seeing
// the context the previous one returned; a value that implements no hook
// interface is refused by NewClient.
func TestHooksCompose(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var log []string
	a, b := recordingHook{"a", &mu, &log}, recordingHook{"b", &mu, &log}
	seen := make(chan string, 1)
	probe := step.New("probe", func(ctx step.Context, n int) (int, error) {
		s, _ := ctx.Value(hookCtxKey{}).(string)
		seen <- s
		return n, nil
	})
	d := flow.MustDefine("hooks-compose", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, probe) })
	c, err := ductwork.NewClient(e.b, &ductwork.Config{Logger: quietLogger(), Hooks: []ductwork.Hook{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(d); err != nil {
		t.Fatal(err)
	}
	startSupervisor(t, c, nil)
	r, err := ductwork.Trigger(waitCtx(t), c, d, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if s := <-seen; s != "ab" {
		t.Errorf("the step's context carries %q from the hooks; want \"ab\"", s)
	}
	want := []string{
		"a:trigger hooks-compose after []", "b:trigger hooks-compose after [a]", "b:trigger end", "a:trigger end",
		"a:step probe attempt 1 metadata 2 after []", "b:step probe attempt 1 metadata 2 after [a]",
		"b:step end completed=true", "a:step end completed=true",
	}
	waitFor(t, func() bool { // the end hooks run just after the commit Wait saw

		mu.Lock()
		defer mu.Unlock()
		return len(log) >= len(want)
	})
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(log) != fmt.Sprint(want) {
		t.Errorf("hook events:\n%q\nwant\n%q", log, want)
	}

	for name, h := range map[string]ductwork.Hook{"nil": nil, "not a hook": 42} {
		var ae *ductwork.ArgumentError
		if _, err := ductwork.NewClient(e.b, &ductwork.Config{Hooks: []ductwork.Hook{a, h}}); !errors.As(err, &ae) {
			t.Errorf("NewClient with a %s hook: %v; want *ArgumentError", name, err)
		}
	}
}
