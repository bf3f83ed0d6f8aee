package flow

import "fmt"

// Rules a definition can break. DefinitionError.Rule is one of these.
const (
	RuleNoStart           = "the pipeline has no Start"
	RuleTwoStarts         = "Start is called more than once"
	RuleNilStep           = "the step is nil"
	RuleEmptyName         = "the step name is empty"
	RuleDuplicateName     = "the step name is used twice in the pipeline"
	RuleNilNode           = "the node is nil (not made by a transition of this pipeline)"
	RuleForeignNode       = "the node belongs to another pipeline"
	RuleAlreadyContinues  = "the node already has a successor; use Divide to branch"
	RuleCollapseNoExpand  = "Collapse without an open Expand on this branch"
	RuleCombineNoDivide   = "Combine of a node that is not the end of a Divide branch"
	RuleCombineMixed      = "Combine of nodes from different Divides"
	RuleCombineIncomplete = "Combine must take every branch of its Divide exactly once"
	RuleDivideEmpty       = "Divide needs at least one step"
	RuleCaseDuplicate     = "the Divert already has a Case with this key"
	RuleOtherwiseTwice    = "the Divert already has an Otherwise"
	RuleNoOtherwise       = "Divert without Otherwise"
	RuleConvergeNoDivert  = "Converge of a node that is not the end of a Divert case"
	RuleConvergeMixed     = "Converge of nodes from different Diverts"
	RuleConvergeMissing   = "Converge misses a case of its Divert, or takes one twice"
	RuleNilKeyFunc        = "the Divert key function is nil"
	RuleDangling          = "the node is left dangling: nothing takes its output"
	RuleDetachMainLine    = "Detach of a node on the pipeline's main line: only a Divide or Expand branch can end detached"
	RuleDetachCase        = "Detach inside a Divert case: the cases of a Divert must Converge"
	RuleEndOpen           = "the pipeline ends inside an open Expand, Divide or Divert"
	RuleNotEncodable      = "the type cannot be encoded by the pipeline's codec"
	RuleEmptyPipelineName = "the pipeline name is empty"
	RuleNilDefine         = "the definition function is nil or returned no node"
	RuleSignalName        = "the signal's name is empty"
	RuleNegativeWait      = "a sleep or an await timeout is negative"
	RuleFlowControl       = "a flow-control option (Queue, Concurrency, ConcurrencyKey, RateLimit) is invalid"
)

// DefinitionError reports a pipeline definition that breaks a rule the
// compiler cannot check. It is returned by Define.
type DefinitionError struct {
	Pipeline string
	Node     string // the step name of the offending node, if any
	Rule     string // one of the Rule constants
	Detail   string // extra context, if any
}

func (e *DefinitionError) Error() string {
	msg := fmt.Sprintf("flow: pipeline %q", e.Pipeline)
	if e.Node != "" {
		msg += fmt.Sprintf(", node %q", e.Node)
	}
	msg += ": " + e.Rule
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}
