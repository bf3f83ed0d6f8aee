package flow_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

// TestShapeOfDefinition: the stored shape names every node with its kind,
// predecessors, types, the join closing an expansion, and step options, and
// survives a JSON round trip.
func TestShapeOfDefinition(t *testing.T) {
	load := step.New("load", func(step.Context, int) (string, error) { return "", nil }, step.Retries(4), step.Timeout(time.Second))
	d := flow.MustDefine("p", func(p *flow.Pipeline[int]) flow.End[int] {
		ids := flow.Start(p, st[int, []int]("ids"))
		one := flow.Expand(ids, load)
		return flow.Collapse(one, st[[]string, int]("count"))
	})
	sd, err := d.Erased().StoredShape()
	if err != nil {
		t.Fatal(err)
	}
	if sd.Pipeline != "p" || sd.Fingerprint != d.Fingerprint() {
		t.Fatalf("stored ref %v", sd.DefinitionRef)
	}
	var s backend.Shape
	if err := json.Unmarshal(sd.Shape, &s); err != nil {
		t.Fatal(err)
	}
	if s.InType != "int" || s.OutType != "int" || len(s.Nodes) != 3 {
		t.Fatalf("shape %+v", s)
	}
	byID := map[string]backend.ShapeNode{}
	for _, n := range s.Nodes {
		byID[n.ID] = n
	}
	if n := byID["ids"]; n.Kind != "start" || n.OutType != "[]int" {
		t.Fatalf("ids node %+v", n)
	}
	if n := byID["load"]; n.Kind != "expand" || n.Join != "count" || n.Preds[0] != "ids" || n.InType != "int" || n.Options.Retries == nil || *n.Options.Retries != 4 || n.Options.Timeout != time.Second {
		t.Fatalf("load node %+v", n)
	}
	if n := byID["count"]; n.Kind != "collapse" || n.Preds[0] != "load" || n.InType != "[]string" {
		t.Fatalf("count node %+v", n)
	}
}
