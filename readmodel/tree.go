package readmodel

import (
	"sort"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/ductworktype"
)

// Node states of a run's graph, as NodeState.State reports them.
const (
	StateNotReached = "not-reached"
	StatePending    = "pending"
	StateWaiting    = "waiting"
	StateRunning    = "running"
	StateCompleted  = "completed"
	StateFailed     = "failed"
	StateCancelled  = "cancelled"
)

// NodeState is one node of a run's graph with the step instances that ran
// it (one per scope; several under an expansion).
type NodeState struct {
	Node backend.ShapeNode `json:"node"`
	// State sums up the instances: failed if any failed, else running,
	// pending, waiting (a sleep or an await), completed (all of them), or
	// not-reached when there is none.
	State string `json:"state"`
	// Counts is the number of instances per step status.
	Counts    map[ductworktype.StepStatus]int `json:"counts"`
	Instances []Step                          `json:"instances"`
}

// Total is the number of instances.
func (n *NodeState) Total() int { return len(n.Instances) }

// Tree places steps on the nodes of shape, in definition order. Steps of
// nodes the shape does not name (a shape missing or of another version) are
// placed on nodes of their own, of kind "unknown", after the others.
func Tree(shape *backend.Shape, steps []Step) []NodeState {
	var nodes []NodeState
	at := map[string]int{}
	if shape != nil {
		for _, n := range shape.Nodes {
			at[n.ID] = len(nodes)
			nodes = append(nodes, NodeState{Node: n, Counts: map[ductworktype.StepStatus]int{}})
		}
	}
	for _, s := range steps {
		i, ok := at[s.Node]
		if !ok {
			at[s.Node] = len(nodes)
			i = len(nodes)
			nodes = append(nodes, NodeState{Node: backend.ShapeNode{ID: s.Node, Pos: i, Kind: "unknown"}, Counts: map[ductworktype.StepStatus]int{}})
		}
		nodes[i].Instances = append(nodes[i].Instances, s)
		nodes[i].Counts[s.Status]++
	}
	for i := range nodes {
		n := &nodes[i]
		sort.SliceStable(n.Instances, func(a, b int) bool { return scopeLess(n.Instances[a].Scope, n.Instances[b].Scope) })
		switch {
		case len(n.Instances) == 0:
			n.State = StateNotReached
		case n.Counts[ductworktype.StepFailed] > 0:
			n.State = StateFailed
		case n.Counts[ductworktype.StepRunning] > 0:
			n.State = StateRunning
		case n.Counts[ductworktype.StepPending] > 0:
			n.State = StatePending
		case n.Counts[StepWaiting] > 0:
			n.State = StateWaiting
		case n.Counts[ductworktype.StepCompleted] == len(n.Instances):
			n.State = StateCompleted
		default:
			n.State = StateCancelled
		}
	}
	return nodes
}

// scopeLess orders scopes "" < "0" < "1" < "2" < "10" < "10.0".
func scopeLess(a, b string) bool {
	if len(a) != len(b) && !hasDot(a) && !hasDot(b) {
		return len(a) < len(b)
	}
	return a < b
}

func hasDot(s string) bool {
	for i := range len(s) {
		if s[i] == '.' {
			return true
		}
	}
	return false
}
