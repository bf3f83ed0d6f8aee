package graph

import (
	"encoding/json"
	"reflect"

	"github.com/ductwork-go/ductwork/backend"
)

// Shape returns the drawable form of the definition: nodes, transition kinds,
// edges, type names and options, as plain data (no closures, no types).
func (g *Graph) Shape() backend.Shape {
	s := backend.Shape{
		Pipeline: g.Pipeline, Fingerprint: g.Fingerprint,
		InType: typeName(g.InType), OutType: typeName(g.OutType),
		Retries: g.Retries, Backoff: g.Backoff, MaxBackoff: g.MaxBackoff,
		MaxFanOut: g.MaxFanOut, MaxCrashes: g.MaxCrashes,
		Nodes: make([]backend.ShapeNode, 0, len(g.Nodes)),
	}
	seen := map[string]bool{}
	for _, n := range g.Nodes {
		sn := backend.ShapeNode{
			ID: n.ID, Pos: n.Pos, Kind: n.Kind.String(),
			InType: typeName(n.InType), OutType: typeName(n.OutType),
			Branch: n.Branch, CaseKey: n.CaseKey, Fallback: n.Fallback, Diverts: n.Divert != nil, Detached: n.Detached,
			Options: backend.ShapeOptions{
				Retries: n.Options.Retries, Backoff: n.Options.Backoff, MaxBackoff: n.Options.MaxBackoff,
				Timeout: n.Options.Timeout, Delay: n.Options.Delay, Priority: n.Options.Priority,
				MaxCrashes: n.Options.MaxCrashes,
				Queue:      n.Options.Queue, Concurrency: n.Options.Concurrency,
			},
		}
		if k := n.Options.ConcurrencyKey; k != nil {
			sn.Options.KeyConcurrency = k.Limit
		}
		if r := n.Options.RateLimit; r != nil {
			sn.Options.RateLimit = r.Name
		}
		for _, p := range n.Preds {
			sn.Preds = append(sn.Preds, p.ID)
		}
		if n.Join != nil {
			sn.Join = n.Join.ID
		}
		if w := n.Wait; w != nil {
			sn.Wait = &backend.ShapeWait{
				Sleep: w.Sleep, Until: w.Until != nil, Signal: w.Signal, SignalType: typeName(w.SignalType),
				Timeout: w.Timeout, Keyed: w.Key != nil,
			}
			if w.Signal != "" && !seen[w.Signal] {
				seen[w.Signal] = true
				s.Signals = append(s.Signals, backend.ShapeSignal{Name: w.Signal, Type: typeName(w.SignalType)})
			}
		}
		s.Nodes = append(s.Nodes, sn)
	}
	return s
}

// StoredShape returns the definition's shape encoded for
// backend.SaveDefinitions.
func (g *Graph) StoredShape() (backend.StoredDefinition, error) {
	b, err := json.Marshal(g.Shape())
	if err != nil {
		return backend.StoredDefinition{}, err
	}
	return backend.StoredDefinition{DefinitionRef: g.Ref(), Shape: b}, nil
}

func typeName(t reflect.Type) string {
	if t == nil {
		return ""
	}
	return t.String()
}
