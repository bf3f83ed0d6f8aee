// Package flow is the typed DSL that defines a pipeline: a DAG of steps in
// which every hand-off between steps is checked by the compiler.
//
// Go methods cannot take type parameters, so transitions are package-level
// generic functions over typed Node handles:
//
//	var Enrich = flow.MustDefine("enrich-all-users", func(p *flow.Pipeline[int]) flow.End[Summary] {
//		ids := flow.Start(p, QueryUsers)          // Node[[]int64]
//		user := flow.Expand(ids, LoadUser)        // one branch per id
//		a, b := flow.Divide2(user, FetchA, FetchB) // parallel branches, same input
//		collated := flow.Combine(Collate, a, b)   // []Enrichment, in argument order
//		result := flow.Chain(collated, Update)
//		d := flow.Divert(result, func(r Result) string { return r.Status })
//		final := flow.Converge(Finalize, flow.Case(d, "success", Notify), flow.Otherwise(d, Flag))
//		return flow.Collapse(final, Report)       // []Final, in index order
//	})
//
// A branch may also end on its own, without a join: Detach(n) makes n the
// last step of its Divide or Expand branch, at any depth. A Combine then
// takes only the branches that are not detached, and an Expand whose
// branches are detached needs no Collapse:
//
//	order := flow.Start(p, PlaceOrder)
//	receipt, crm, fans := flow.Divide3(order, SendReceipt, FindCustomer, ListFollowers)
//	flow.Detach(receipt)                    // nobody waits on its output
//	flow.Detach(flow.Chain(crm, UpdateCRM)) // a detached branch of two steps
//	flow.Detach(flow.Expand(fans, Notify))  // one branch per follower, no Collapse
//	return order                            // the run's output
//
// The run completes when its end node and every detached branch have
// finished; its output is the end node's. A detached branch that fails for
// good halts the run (Revive resumes it); Cancel stops it with the rest.
//
// A branch can wait for people and for time. A signal is declared once with
// its payload type; Await waits for it (ductwork.Send delivers it), Sleep and
// SleepUntil wait for a due time. While a run only waits it holds no worker
// and no claim, and its status is waiting:
//
//	var Approval = flow.Signal[Decision]("manager-approval")
//	reviewed := flow.Await(order, Approval, 48*time.Hour) // Node[Awaited[Order, Decision]]
//	d := flow.Divert(reviewed, flow.Awaited[Order, Decision].Outcome) // Received or TimedOut
//	later := flow.Sleep(flow.Chain(order, Ship), 24*time.Hour)
//
// What the compiler cannot check is checked by Define, which returns a
// *DefinitionError naming the pipeline, the node and the broken rule (see the
// Rule constants). Node IDs are the step names, so they are identical in every
// process and build of the same definition; the Fingerprint covers the whole
// shape and changes with any rewiring.
//
// Package flow does no I/O.
package flow
