package conformance

import (
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
)

func testPayloads(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"RoundTrip":          payloadRoundTrip,
		"SetValueWriteOnce":  payloadSetValueWriteOnce,
		"SetValueOverwrite":  payloadSetValueOverwrite,
		"GetValueMissing":    payloadGetValueMissing,
		"ValuesPerRun":       payloadValuesPerRun,
		"UnicodeIdentifiers": payloadUnicodeIdentifiers,
	})
}

// payloadCases are the payloads every round trip carries.
func payloadCases(t *testing.T) map[string][]byte {
	t.Helper()
	nested := map[string]any{
		"user":  map[string]any{"id": 42, "tags": []string{"a", "b"}, "address": map[string]any{"city": "Zürich", "zip": nil}},
		"list":  []any{1, 2.5, "three", true, nil, []any{map[string]any{"deep": []int{1, 2, 3}}}},
		"empty": map[string]any{},
	}
	return map[string][]byte{
		"unicode": enc(t, "héllo wörld — 世界 🚀 \u202ertl\u202c \u0000 nul \\ \" 'quote'"),
		"1MiB":    enc(t, strings.Repeat("0123456789abcdef", 1<<16)),
		"nested":  enc(t, nested),
		"empty":   {},
		"nil":     nil,
	}
}

// payloadRoundTrip: each payload comes back byte for byte through Trigger,
// GetRun, Claim, Complete and ListJobs.
func payloadRoundTrip(t *testing.T, h Harness) {
	for name, p := range payloadCases(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, h)
			res, err := b.Trigger(testCtx(t), &backend.TriggerParams{
				Pipeline: defA.Pipeline, Fingerprint: defA.Fingerprint, Input: p,
				First: backend.NewJob{NodeID: "root", Input: p},
			})
			if err != nil {
				t.Fatalf("Trigger: %v", err)
			}
			if r := getRun(t, b, res.RunID); !equalBytes(r.Input, p) {
				t.Errorf("run input = %s; want %s", short(r.Input), short(p))
			}
			proc := register(t, b, defA)
			j := claimOne(t, b, proc, defA)
			if !equalBytes(j.Input, p) {
				t.Errorf("claimed input = %s; want %s", short(j.Input), short(p))
			}
			complete(t, b, j, proc, p, backend.Plan{Jobs: []backend.NewJob{{NodeID: "next", Input: p}}})
			next := claimOne(t, b, proc, defA)
			if !equalBytes(next.Input, p) {
				t.Errorf("planned job input = %s; want %s", short(next.Input), short(p))
			}
			complete(t, b, next, proc, p, backend.Plan{CompleteRun: true})
			for _, info := range listJobs(t, b, res.RunID) {
				if !equalBytes(info.Input, p) || !equalBytes(info.Output, p) {
					t.Errorf("listed job %s = {input %s, output %s}; want %s both", info.NodeID, short(info.Input), short(info.Output), short(p))
				}
			}
			if r := getRun(t, b, res.RunID); !equalBytes(r.Output, p) {
				t.Errorf("run output = %s; want %s", short(r.Output), short(p))
			}
			if err := b.SetValue(testCtx(t), &backend.SetValueParams{RunID: res.RunID, Key: "k", Value: p}); err != nil {
				t.Fatalf("SetValue: %v", err)
			}
			v, err := b.GetValue(testCtx(t), &backend.GetValueParams{RunID: res.RunID, Key: "k"})
			if err != nil {
				t.Fatalf("GetValue: %v", err)
			}
			if !equalBytes(v.Value, p) {
				t.Errorf("value = %s; want %s", short(v.Value), short(p))
			}
		})
	}
}

// payloadSetValueWriteOnce: 16 concurrent writers of a new key have exactly
// one winner; the others get ErrValueExists and the winner's value stays.
func payloadSetValueWriteOnce(t *testing.T, h Harness) {
	b := newBackend(t, h)
	const writers = 16
	tr := trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	values := make([][]byte, writers)
	for i := range values {
		values[i] = enc(t, i)
	}
	ctx := testCtx(t)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			<-start
			errs[i] = b.SetValue(ctx, &backend.SetValueParams{RunID: tr.RunID, Key: "once", Value: values[i]})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("writers %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, backend.ErrValueExists):
			t.Errorf("writer %d: %v; want nil or ErrValueExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	v, err := b.GetValue(ctx, &backend.GetValueParams{RunID: tr.RunID, Key: "once"})
	if err != nil {
		t.Fatalf("GetValue: %v", err)
	}
	if !equalBytes(v.Value, values[winner]) {
		t.Errorf("value = %s; want the winner's %s", short(v.Value), short(values[winner]))
	}
}

// payloadSetValueOverwrite: Overwrite replaces an existing value, and writes
// a new one.
func payloadSetValueOverwrite(t *testing.T, h Harness) {
	b := newBackend(t, h)
	tr := trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	ctx := testCtx(t)
	set := func(v []byte, overwrite bool) error {
		return b.SetValue(ctx, &backend.SetValueParams{RunID: tr.RunID, Key: "k", Value: v, Overwrite: overwrite})
	}
	get := func() []byte {
		t.Helper()
		v, err := b.GetValue(ctx, &backend.GetValueParams{RunID: tr.RunID, Key: "k"})
		if err != nil {
			t.Fatalf("GetValue: %v", err)
		}
		return v.Value
	}
	if err := set(enc(t, "one"), true); err != nil {
		t.Fatalf("SetValue(Overwrite) of a new key: %v", err)
	}
	wantErr(t, "SetValue of an existing key", set(enc(t, "two"), false), backend.ErrValueExists)
	if v := get(); !equalBytes(v, enc(t, "one")) {
		t.Fatalf("value after a refused write = %s; want \"one\"", short(v))
	}
	if err := set(enc(t, "three"), true); err != nil {
		t.Fatalf("SetValue(Overwrite): %v", err)
	}
	if v := get(); !equalBytes(v, enc(t, "three")) {
		t.Fatalf("value after Overwrite = %s; want \"three\"", short(v))
	}
}

// payloadGetValueMissing: a key never set is ErrValueNotFound.
func payloadGetValueMissing(t *testing.T, h Harness) {
	b := newBackend(t, h)
	tr := trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	_, err := b.GetValue(testCtx(t), &backend.GetValueParams{RunID: tr.RunID, Key: "missing"})
	wantErr(t, "GetValue(missing)", err, backend.ErrValueNotFound)
}

// payloadValuesPerRun: the same key in two runs holds two values.
func payloadValuesPerRun(t *testing.T, h Harness) {
	b := newBackend(t, h)
	ctx := testCtx(t)
	r1 := trigger(t, b, defA, backend.NewJob{NodeID: "root"}).RunID
	r2 := trigger(t, b, defA, backend.NewJob{NodeID: "root"}).RunID
	for _, r := range []int64{r1, r2} {
		if err := b.SetValue(ctx, &backend.SetValueParams{RunID: r, Key: "k", Value: enc(t, r)}); err != nil {
			t.Fatalf("SetValue(run %d): %v", r, err)
		}
	}
	for _, r := range []int64{r1, r2} {
		v, err := b.GetValue(ctx, &backend.GetValueParams{RunID: r, Key: "k"})
		if err != nil {
			t.Fatalf("GetValue(run %d): %v", r, err)
		}
		if !equalBytes(v.Value, enc(t, r)) {
			t.Errorf("run %d value = %s; want %d", r, short(v.Value), r)
		}
	}
}

// payloadUnicodeIdentifiers: text columns (metadata, node IDs, scopes,
// errors, keys) keep non-ASCII text.
func payloadUnicodeIdentifiers(t *testing.T, h Harness) {
	b := newBackend(t, h)
	def := backend.DefinitionRef{Pipeline: "pipeline-ü-世界", Fingerprint: "fp-🚀"}
	meta := map[string]string{"ключ": "значение", "emoji": "🚀✨", "empty": ""}
	res, err := b.Trigger(testCtx(t), &backend.TriggerParams{
		Pipeline: def.Pipeline, Fingerprint: def.Fingerprint, Metadata: meta,
		First: backend.NewJob{NodeID: "nœud-1", Scope: ""},
	})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	r := getRun(t, b, res.RunID)
	if r.Pipeline != def.Pipeline || r.Fingerprint != def.Fingerprint || !maps.Equal(r.Metadata, meta) {
		t.Errorf("run = {%q, %q, %v}; want {%q, %q, %v}", r.Pipeline, r.Fingerprint, r.Metadata, def.Pipeline, def.Fingerprint, meta)
	}
	proc := register(t, b, def)
	j := claimOne(t, b, proc, def)
	if j.NodeID != "nœud-1" || !maps.Equal(j.Metadata, meta) {
		t.Errorf("claimed node %q metadata %v; want \"nœud-1\", %v", j.NodeID, j.Metadata, meta)
	}
	if _, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Error: "échec: 失败"}); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	if r := getRun(t, b, res.RunID); r.Error != "échec: 失败" {
		t.Errorf("run error = %q; want \"échec: 失败\"", r.Error)
	}
	if err := b.SetValue(testCtx(t), &backend.SetValueParams{RunID: res.RunID, Key: "clé-🔑", Value: enc(t, 1)}); err != nil {
		t.Fatalf("SetValue: %v", err)
	}
	if _, err := b.GetValue(testCtx(t), &backend.GetValueParams{RunID: res.RunID, Key: "clé-🔑"}); err != nil {
		t.Fatalf("GetValue: %v", err)
	}
}
