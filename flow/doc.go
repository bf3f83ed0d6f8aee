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
// What the compiler cannot check is checked by Define, which returns a
// *DefinitionError naming the pipeline, the node and the broken rule (see the
// Rule constants). Node IDs are the step names, so they are identical in every
// process and build of the same definition; the Fingerprint covers the whole
// shape and changes with any rewiring.
//
// Package flow does no I/O.
package flow
