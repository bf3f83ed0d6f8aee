// Package supervisor runs a Ductwork client's work inside the application: a
// pool of worker goroutines that claim due steps in batches and execute them,
// a heartbeat for this process, a reaper that recovers the claims of dead
// processes (judged by the database's clock), and a reporter for runs whose
// definition no process here knows.
//
// Each loop is restarted if it panics. Cancelling the context given to Run
// shuts down gracefully: claiming stops, in-flight steps get a grace period,
// then their claims are released so other processes take them over.
//
// Roles split the loops for container deployments: RoleWorker pods execute,
// a RoleMaintenance pod reaps. Any number of supervisors, in any number of
// processes, can share one database.
//
// Step timeouts are enforced (Config.StepTimeout, step.Timeout): a step that
// ignores the cancellation of its context is abandoned after
// Config.StuckGrace, so that it holds neither a worker nor a shutdown.
//
// With Config.Processes the steps run in child processes: Run re-executes
// the program as that many children and keeps them alive (restarts with
// backoff, recycling after Children.MaxSteps steps or above
// Children.MaxRSS, replacement of a child whose step ignored its timeout).
// The program runs as usual in a child, where Run executes steps; IsChild
// tells it which it is:
//
//	func main() {
//		client := setup() // open the backend, register the definitions
//		if !supervisor.IsChild() {
//			go serveHTTP(client) // only in the parent
//		}
//		sup, _ := supervisor.New(client, &supervisor.Config{Processes: 4,
//			Children: supervisor.Children{MaxSteps: 10_000, MaxRSS: 1 << 30}})
//		ctx, stop := supervisor.SignalContext(context.Background())
//		defer stop()
//		_ = sup.Run(ctx)
//	}
package supervisor
