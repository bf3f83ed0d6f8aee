package conformance

import (
	"errors"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
)

func testIdentity(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"RolledBackIDsNotReused": identityRolledBackIDs,
		"RunIdentityStored":      identityStored,
		"NotMigrated":            identityNotMigrated,
	})
}

// identityRolledBackIDs: the run and job IDs of a Trigger whose transaction
// was rolled back are never handed out again: the next run, triggered in
// the backend's own transaction or in another caller's, gets greater IDs. A
// caller that kept the rolled-back run's ID never finds another run under it.
func identityRolledBackIDs(t *testing.T, h Harness) {
	if h.BeginTx == nil {
		t.Skip("Harness.BeginTx is nil: cannot test TriggerTx")
	}
	b := newBackend(t, h)
	trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	inTx := func(commitIt bool) *backend.TriggerResult {
		t.Helper()
		tx, commit, rollback := h.BeginTx(t, b)
		res, err := b.Trigger(testCtx(t), &backend.TriggerParams{
			Pipeline: defA.Pipeline, Fingerprint: defA.Fingerprint,
			First: backend.NewJob{NodeID: "root"}, Tx: tx,
		})
		if err != nil {
			_ = rollback()
			t.Fatalf("Trigger in a transaction: %v", err)
		}
		end := rollback
		if commitIt {
			end = commit
		}
		if err := end(); err != nil {
			t.Fatalf("end transaction: %v", err)
		}
		return res
	}
	gone := inTx(false)
	next := trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	if next.RunID <= gone.RunID || next.JobID <= gone.JobID {
		t.Errorf("after a rolled-back trigger (run %d, job %d) the next trigger got run %d, job %d; want greater IDs",
			gone.RunID, gone.JobID, next.RunID, next.JobID)
	}
	gone2 := inTx(false)
	viaTx := inTx(true)
	if viaTx.RunID <= gone2.RunID || viaTx.JobID <= gone2.JobID {
		t.Errorf("after a rolled-back trigger (run %d, job %d) a trigger in a transaction got run %d, job %d; want greater IDs",
			gone2.RunID, gone2.JobID, viaTx.RunID, viaTx.JobID)
	}
	for _, id := range []int64{gone.RunID, gone2.RunID} {
		_, err := b.GetRun(testCtx(t), &backend.GetRunParams{RunID: id})
		wantErr(t, "GetRun of a rolled-back run's ID", err, backend.ErrRunNotFound)
	}
}

// identityStored: TriggerParams.Identity is stored with the run (Run.Identity)
// and handed back with every claimed job of it (Job.RunIdentity).
func identityStored(t *testing.T, h Harness) {
	b := newBackend(t, h)
	const identity = "0123456789abcdef0123456789abcdef"
	res, err := b.Trigger(testCtx(t), &backend.TriggerParams{
		Pipeline: defA.Pipeline, Fingerprint: defA.Fingerprint, Identity: identity,
		First: backend.NewJob{NodeID: "root"},
	})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	if r := getRun(t, b, res.RunID); r.Identity != identity {
		t.Errorf("Run.Identity = %q; want %q", r.Identity, identity)
	}
	if j := claimOne(t, b, register(t, b, defA), defA); j.RunIdentity != identity {
		t.Errorf("claimed Job.RunIdentity = %q; want %q", j.RunIdentity, identity)
	}
}

// identityNotMigrated: on storage that was never migrated, every operation
// returns an error matching backend.ErrNotMigrated (not a raw driver error).
func identityNotMigrated(t *testing.T, h Harness) {
	b := h.NewBackend(t)
	if b == nil {
		t.Fatal("Harness.NewBackend returned nil")
	}
	ctx := testCtx(t)
	calls := map[string]func() error{
		"Trigger": func() error {
			_, err := b.Trigger(ctx, &backend.TriggerParams{Pipeline: "p", Fingerprint: "f", First: backend.NewJob{NodeID: "root"}})
			return err
		},
		"Claim": func() error {
			_, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: "p", Limit: 1, Definitions: []backend.DefinitionRef{defA}})
			return err
		},
		"RegisterProcess": func() error {
			_, err := b.RegisterProcess(ctx, &backend.RegisterProcessParams{ProcessID: "p"})
			return err
		},
		"Heartbeat": func() error {
			_, err := b.Heartbeat(ctx, &backend.HeartbeatParams{ProcessID: "p", Runs: []int64{1}})
			return err
		},
		"Reap": func() error {
			_, err := b.Reap(ctx, &backend.ReapParams{ProcessID: "p", Threshold: 1})
			return err
		},
		"GetRun": func() error {
			_, err := b.GetRun(ctx, &backend.GetRunParams{RunID: 1})
			return err
		},
		"ListRuns": func() error {
			_, err := b.ListRuns(ctx, &backend.ListRunsParams{})
			return err
		},
		"ListJobs": func() error {
			_, err := b.ListJobs(ctx, &backend.ListJobsParams{RunID: 1})
			return err
		},
		"CancelRun": func() error {
			_, err := b.CancelRun(ctx, &backend.CancelRunParams{RunID: 1})
			return err
		},
		"ReviveRun": func() error {
			_, err := b.ReviveRun(ctx, &backend.ReviveRunParams{RunID: 1})
			return err
		},
		"SetValue": func() error { return b.SetValue(ctx, &backend.SetValueParams{RunID: 1, Key: "k"}) },
		"GetValue": func() error {
			_, err := b.GetValue(ctx, &backend.GetValueParams{RunID: 1, Key: "k"})
			return err
		},
		"StrandedDefinitions": func() error {
			_, err := b.StrandedDefinitions(ctx, &backend.StrandedDefinitionsParams{})
			return err
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, backend.ErrNotMigrated) {
			t.Errorf("%s before Migrate: %v; want an error matching ErrNotMigrated", name, err)
		}
	}
}
