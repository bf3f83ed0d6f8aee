package ductwork_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// wantArgErr fails unless err is a *ductwork.ArgumentError.
func wantArgErr(t *testing.T, call string, err error) {
	t.Helper()
	var ae *ductwork.ArgumentError
	if !errors.As(err, &ae) {
		t.Errorf("%s: %v (%T); want *ductwork.ArgumentError", call, err, err)
	}
}

func TestNilArgumentsAreTypedErrors(t *testing.T) {
	def := echoDef("nil-args")
	e := newEnv(t)
	ctx := waitCtx(t)
	var nilClient *ductwork.Client
	var nilDef *flow.Definition[int, int]
	var nilRun *ductwork.Run[int]

	_, err := ductwork.NewClient(nil, nil)
	wantArgErr(t, "NewClient(nil)", err)
	wantArgErr(t, "nil client Register", nilClient.Register(def))
	wantArgErr(t, "Register(nil)", e.client.Register(nil))
	// A nil definition among good ones registers none of them.
	wantArgErr(t, "Register(def, typed nil)", e.client.Register(def, nilDef))
	_, err = ductwork.Trigger(ctx, nilClient, def, 1)
	wantArgErr(t, "Trigger(nil client)", err)
	_, err = ductwork.Trigger(ctx, e.client, nilDef, 1)
	wantArgErr(t, "Trigger(nil definition)", err)
	_, err = ductwork.Trigger(ctx, e.client, &flow.Definition[int, int]{}, 1)
	wantArgErr(t, "Trigger(zero definition)", err)
	_, err = ductwork.TriggerTx(ctx, e.client, nil, nilDef, 1)
	wantArgErr(t, "TriggerTx(nil definition)", err)
	_, err = ductwork.Open(ctx, e.client, nilDef, 1)
	wantArgErr(t, "Open(nil definition)", err)
	_, err = ductwork.Open(ctx, nilClient, def, 1)
	wantArgErr(t, "Open(nil client)", err)
	wantArgErr(t, "nil client Cancel", nilClient.Cancel(ctx, 1, ""))
	wantArgErr(t, "nil client Revive", nilClient.Revive(ctx, 1))
	_, err = nilClient.Inspect(ctx, 1)
	wantArgErr(t, "nil client Inspect", err)
	_, err = nilClient.Steps(ctx, 1)
	wantArgErr(t, "nil client Steps", err)
	_, err = nilRun.Wait(ctx)
	wantArgErr(t, "nil Run.Wait", err)
	_, err = nilRun.Status(ctx)
	wantArgErr(t, "nil Run.Status", err)
	_, err = (&ductwork.Run[int]{ID: 1}).Steps(ctx)
	wantArgErr(t, "zero Run.Steps", err)
	_, err = supervisor.New(nil, nil)
	wantArgErr(t, "supervisor.New(nil)", err)

	// Nothing was registered or written.
	assertNoRuns(t, e)
	r, err := ductwork.Trigger(ctx, e.client, def, 1)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := e.client.Inspect(ctx, r.ID); err != nil || info.Known {
		t.Fatalf("Inspect = %+v, %v; want the definition unknown (the failed Register registered nothing)", info, err)
	}
}

func TestRunContextKeysAndDecodeErrors(t *testing.T) {
	type outcome struct{ empty, long, longest, decode error }
	got := make(chan outcome, 1)
	s := step.New("kv", func(ctx step.Context, n int) (int, error) {
		var o outcome
		o.empty = ctx.Set("", 1)
		o.long = ctx.Set(strings.Repeat("k", step.MaxKeyLen+1), 1)
		o.longest = ctx.Set(strings.Repeat("k", step.MaxKeyLen), 1)
		if err := ctx.Set("amount", "not a number"); err != nil {
			return 0, err
		}
		var amount int
		_, o.decode = ctx.Get("amount", &amount)
		got <- o
		return n, nil
	})
	def := flow.MustDefine("kv-keys", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, s) })
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	o := <-got
	var ke *ductwork.KeyError
	if !errors.As(o.empty, &ke) {
		t.Errorf("Set(\"\"): %v; want *KeyError", o.empty)
	}
	if !errors.As(o.long, &ke) {
		t.Errorf("Set(%d-byte key): %v; want *KeyError", step.MaxKeyLen+1, o.long)
	}
	if o.longest != nil {
		t.Errorf("Set(%d-byte key): %v; want it stored", step.MaxKeyLen, o.longest)
	}
	if o.decode == nil || !strings.Contains(o.decode.Error(), `"amount"`) {
		t.Errorf("Get decode error = %v; want it to name the key \"amount\"", o.decode)
	}
}

func TestForgottenMigrateIsErrNotMigrated(t *testing.T) {
	def := echoDef("not-migrated")
	b, err := sqlite.Open(filepath.Join(t.TempDir(), "dw.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	c, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(def); err != nil {
		t.Fatal(err)
	}
	if _, err := ductwork.Trigger(waitCtx(t), c, def, 1); !errors.Is(err, ductwork.ErrNotMigrated) {
		t.Errorf("Trigger before Migrate: %v; want ErrNotMigrated", err)
	}
	// The supervisor gives up at once rather than retrying for ever.
	s, err := supervisor.New(c, &supervisor.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(waitCtx(t)); !errors.Is(err, ductwork.ErrNotMigrated) {
		t.Errorf("supervisor Run before Migrate: %v; want ErrNotMigrated", err)
	}
}

func TestVersionKeepsOldRunsFromNewCode(t *testing.T) {
	v1 := echoDef("versioned")
	v2 := flow.MustDefine("versioned", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Start(p, echo)
	}, flow.Version("2"))
	if v1.Fingerprint() == v2.Fingerprint() {
		t.Fatal("flow.Version did not change the fingerprint")
	}
	e := newEnv(t, v2) // the new process knows only v2
	r, err := ductwork.Trigger(waitCtx(t), e.client, v1, 1)
	if err != nil {
		t.Fatal(err)
	}
	var ude *ductwork.UnknownDefinitionError
	if _, err := ductwork.Open(waitCtx(t), e.client, v2, r.ID); !errors.As(err, &ude) {
		t.Fatalf("Open of a v1 run with v2: %v; want *UnknownDefinitionError", err)
	}
}

func TestStatusTerminal(t *testing.T) {
	for s, want := range map[ductwork.RunStatus]bool{
		ductwork.RunRunning: false, ductwork.RunWaiting: false,
		ductwork.RunCompleted: true, ductwork.RunCancelled: true, ductwork.RunHalted: true,
	} {
		if s.Terminal() != want {
			t.Errorf("%s.Terminal() = %t; want %t", s, s.Terminal(), want)
		}
	}
}
