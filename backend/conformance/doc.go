// Package conformance is the backend contract in executable form: a test
// suite that every Ductwork backend runs against itself.
//
// A backend's test file calls Run with a Harness that knows how to give the
// suite fresh, isolated storage:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, conformance.Harness{
//			NewBackend: func(t *testing.T) backend.Backend {
//				b, err := sqlite.Open(testdb.SQLitePath(t), nil)
//				if err != nil {
//					t.Fatal(err)
//				}
//				t.Cleanup(func() { _ = b.Close(context.WithoutCancel(t.Context())) })
//				return b
//			},
//		})
//	}
//
// Every case is a parallel subtest that asks NewBackend for its own backend,
// so cases never see each other's runs. The suite migrates each backend
// itself; NewBackend must hand back an un-migrated one.
//
// The cases are grouped by contract area, one file each: migrations,
// triggers, claims, fencing, the reaper, joins, retries and run state, halts
// (halt detail, limits), payloads and the run context, the clock, and
// listings. They branch on
// Backend.Capabilities only, never on a backend's name or a driver's error
// text, and they check errors with errors.Is against the sentinels of package
// backend.
//
// Cases that need something only some harnesses can give (a second handle on
// the same storage, the caller's own transaction, crash points) skip when the
// matching optional Harness hook is nil.
//
// The crash-point cases (area CrashPoints) start this test binary again as a
// helper process that opens the same storage, arms a crash point inside one
// of the backend's transactions (completion, fan-out insert, join update,
// reaper, migration), runs the operation and dies there by SIGKILL; the case
// then checks on its own backend that the work recovers and every step
// instance completes exactly once. A backend opts in with Harness.Crash and
// by calling CrashHelper first in its TestMain.
package conformance
