package conformance

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
)

func testDefinitions(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"SaveAndGet":     definitionsSaveAndGet,
		"Idempotent":     definitionsIdempotent,
		"ConcurrentSave": definitionsConcurrent,
		"NotFound":       definitionsNotFound,
	})
}

// shapeOf encodes a small shape for ref.
func shapeOf(t *testing.T, ref backend.DefinitionRef, nodes ...string) []byte {
	t.Helper()
	s := backend.Shape{Pipeline: ref.Pipeline, Fingerprint: ref.Fingerprint}
	for i, n := range nodes {
		sn := backend.ShapeNode{ID: n, Pos: i, Kind: "chain"}
		if i == 0 {
			sn.Kind = "start"
		} else {
			sn.Preds = []string{nodes[i-1]}
		}
		s.Nodes = append(s.Nodes, sn)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameShape compares two encoded shapes as values (a backend may store JSON
// in a normalized form).
func sameShape(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w backend.Shape
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("stored shape is not the JSON saved: %v (%q)", err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Fatalf("stored shape %s; want %s", gb, wb)
	}
}

// definitionsSaveAndGet: saved shapes come back per version, two versions
// of one pipeline side by side.
func definitionsSaveAndGet(t *testing.T, h Harness) {
	b := newBackend(t, h)
	v1 := backend.DefinitionRef{Pipeline: "orders", Fingerprint: "v1"}
	v2 := backend.DefinitionRef{Pipeline: "orders", Fingerprint: "v2"}
	s1, s2 := shapeOf(t, v1, "a", "b"), shapeOf(t, v2, "a", "b", "c")
	res, err := b.SaveDefinitions(testCtx(t), &backend.SaveDefinitionsParams{Definitions: []backend.StoredDefinition{
		{DefinitionRef: v1, Shape: s1}, {DefinitionRef: v2, Shape: s2},
	}})
	if err != nil {
		t.Fatalf("SaveDefinitions: %v", err)
	}
	if res.Inserted != 2 {
		t.Fatalf("SaveDefinitions inserted %d; want 2", res.Inserted)
	}
	before, err := b.Now(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[backend.DefinitionRef][]byte{v1: s1, v2: s2} {
		d, err := b.GetDefinition(testCtx(t), &backend.GetDefinitionParams{Ref: ref})
		if err != nil {
			t.Fatalf("GetDefinition(%v): %v", ref, err)
		}
		if d.DefinitionRef != ref {
			t.Fatalf("GetDefinition(%v) returned %v", ref, d.DefinitionRef)
		}
		sameShape(t, d.Shape, want)
		if d.CreatedAt.IsZero() || d.CreatedAt.After(before.Add(b.Capabilities().TimePrecision)) {
			t.Fatalf("CreatedAt %v; want the database's time of the save (now %v)", d.CreatedAt, before)
		}
	}
}

// definitionsIdempotent: saving a stored version again inserts nothing and
// keeps the first shape.
func definitionsIdempotent(t *testing.T, h Harness) {
	b := newBackend(t, h)
	ref := backend.DefinitionRef{Pipeline: "orders", Fingerprint: "v1"}
	first := shapeOf(t, ref, "a")
	for i, shape := range [][]byte{first, first, shapeOf(t, ref, "x", "y")} {
		res, err := b.SaveDefinitions(testCtx(t), &backend.SaveDefinitionsParams{Definitions: []backend.StoredDefinition{{DefinitionRef: ref, Shape: shape}}})
		if err != nil {
			t.Fatalf("SaveDefinitions #%d: %v", i+1, err)
		}
		if want := map[bool]int{true: 1, false: 0}[i == 0]; res.Inserted != want {
			t.Fatalf("SaveDefinitions #%d inserted %d; want %d", i+1, res.Inserted, want)
		}
	}
	d, err := b.GetDefinition(testCtx(t), &backend.GetDefinitionParams{Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	sameShape(t, d.Shape, first)
}

// definitionsConcurrent: many savers of one version at once store it once,
// with no error.
func definitionsConcurrent(t *testing.T, h Harness) {
	b := newBackend(t, h)
	ref := backend.DefinitionRef{Pipeline: "race", Fingerprint: "v1"}
	shape := shapeOf(t, ref, "a")
	var wg sync.WaitGroup
	var mu sync.Mutex
	inserted := 0
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			res, err := b.SaveDefinitions(testCtx(t), &backend.SaveDefinitionsParams{Definitions: []backend.StoredDefinition{{DefinitionRef: ref, Shape: shape}}})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			inserted += res.Inserted
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent SaveDefinitions: %v", err)
	}
	if inserted != 1 {
		t.Fatalf("concurrent saves inserted %d rows in all; want 1", inserted)
	}
}

// definitionsNotFound: an unknown version is ErrDefinitionNotFound.
func definitionsNotFound(t *testing.T, h Harness) {
	b := newBackend(t, h)
	_, err := b.GetDefinition(testCtx(t), &backend.GetDefinitionParams{Ref: backend.DefinitionRef{Pipeline: "nope", Fingerprint: "x"}})
	wantErr(t, "GetDefinition(unknown)", err, backend.ErrDefinitionNotFound)
}
