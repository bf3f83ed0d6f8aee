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
package supervisor
