package mysql

// SQL of the backend. Statements are constants; the only ones assembled at run
// time repeat a constant placeholder group for a variable number of rows or
// IDs (see placeholders). No value is ever spliced into SQL text.

// nowUS is the database's clock as unix microseconds. UTC_TIMESTAMP does not
// depend on the session time zone, and TIMESTAMPDIFF between two DATETIMEs
// involves no zone conversion, so the DSN cannot change the value.
const nowUS = "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))"

const qNow = "SELECT " + nowUS

// Migrations.
const (
	qCurrentDatabase = "SELECT DATABASE()"
	qGetLock         = "SELECT GET_LOCK(CONCAT('ductwork_migrate_', MD5(DATABASE())), ?)"
	qReleaseLock     = "SELECT RELEASE_LOCK(CONCAT('ductwork_migrate_', MD5(DATABASE())))"
	qCreateVersions  = `CREATE TABLE IF NOT EXISTS ductwork_migrations (
  version    INT NOT NULL,
  applied_at BIGINT NOT NULL,
  PRIMARY KEY (version)
) ENGINE=InnoDB`
	qVersions      = "SELECT version FROM ductwork_migrations"
	qRecordVersion = "INSERT INTO ductwork_migrations (version, applied_at) VALUES (?, " + nowUS + ")"
)

// Trigger.
const (
	qInsertRun = `INSERT INTO ductwork_runs
  (pipeline, fingerprint, status, input, output, error, metadata, identity, created_at, updated_at, trigger_key)
VALUES (?, ?, 'running', ?, NULL, NULL, ?, ?, ` + nowUS + `, ` + nowUS + `, ?)`
	// qInsertRunsHead and insertRunRow insert the runs of a group of
	// triggers (no key); qInsertFirstJobsHead and insertFirstJobRow their
	// first jobs.
	qInsertRunsHead = `INSERT INTO ductwork_runs
  (pipeline, fingerprint, status, input, output, error, metadata, identity, created_at, updated_at) VALUES `
	insertRunRow         = "(?, ?, 'running', ?, NULL, NULL, ?, ?, " + nowUS + ", " + nowUS + ")"
	qInsertFirstJobsHead = `INSERT INTO ductwork_jobs
  (run_id, node_id, scope, status, priority, input, created_at, due_at, queue, gated, gate_key, gate_limit, rate_key) VALUES `
	insertFirstJobRow = "(?, ?, ?, 'pending', ?, ?, " + nowUS + ", " + nowUS + " + ?, ?, ?, ?, ?, ?)"
	qTriggerExisting  = `SELECT r.id, COALESCE((SELECT MIN(j.id) FROM ductwork_jobs j WHERE j.run_id = r.id), 0), r.input,
  r.status IN ('completed', 'cancelled')
FROM ductwork_runs r WHERE r.pipeline = ? AND r.trigger_key = ?`
	// qReleaseKey takes a trigger key from a finished run (KeyWhileActive).
	qReleaseKey     = `UPDATE ductwork_runs SET trigger_key = NULL WHERE id = ? AND status IN ('completed', 'cancelled')`
	qInsertFirstJob = `INSERT INTO ductwork_jobs
  (run_id, node_id, scope, status, priority, input, created_at, due_at, queue, gated, gate_key, gate_limit, rate_key)
VALUES (?, ?, ?, 'pending', ?, ?, ` + nowUS + `, ` + nowUS + ` + ?, ?, ?, ?, ?, ?)`
)

// Claim. FORCE INDEX (ductwork_jobs_claim) and a scalar subquery (not EXISTS
// or IN, which the optimizer turns into a semi-join) keep the scan in claim
// index order, so it stops after LIMIT rows and locks only those: a semi-join
// plan sorts first and locks every due job. FORCE INDEX (PRIMARY) keeps the
// run lookups point reads (the optimizer otherwise prefers a range over all
// running runs of the definition). The subqueries read ductwork_runs without
// locking it, so claimers never block on, or lock, run rows.
const (
	qClaimSelectHead = `SELECT j.id, j.run_id, j.node_id, j.scope, j.input, j.is_join, j.join_id,
  j.attempt, j.retry_base, j.crashes, j.fence, j.created_at, j.due_at,
  (SELECT r.pipeline FROM ductwork_runs r FORCE INDEX (PRIMARY) WHERE r.id = j.run_id),
  (SELECT r.identity FROM ductwork_runs r FORCE INDEX (PRIMARY) WHERE r.id = j.run_id),
  (SELECT r.fingerprint FROM ductwork_runs r FORCE INDEX (PRIMARY) WHERE r.id = j.run_id),
  (SELECT r.metadata FROM ductwork_runs r FORCE INDEX (PRIMARY) WHERE r.id = j.run_id),
  ` + nowUS + `
FROM ductwork_jobs j FORCE INDEX (ductwork_jobs_claim)
WHERE j.status = 'pending' AND j.gated = 0 AND j.queue = ? AND j.due_at <= ` + nowUS + `
  AND (SELECT 1 FROM ductwork_runs r FORCE INDEX (PRIMARY) WHERE r.id = j.run_id AND r.status IN ('running', 'waiting')
       AND (r.pipeline, r.fingerprint) IN (`
	// Then placeholders("(?, ?)", len(Definitions)) and:
	qClaimSelectTail = `)) = 1
ORDER BY j.priority DESC, j.due_at, j.id
LIMIT ?
FOR UPDATE SKIP LOCKED`
	qClaimUpdateHead = `UPDATE ductwork_jobs SET status = 'running', fence = fence + 1, process_id = ?, started_at = ?
WHERE status = 'pending' AND id IN (`
	qJoinInputsHead = `SELECT arrival_join_id, output FROM ductwork_jobs WHERE arrival_join_id IN (`
	qJoinInputsTail = `) ORDER BY arrival_join_id, arrival_slot`
)

// Complete, Fail, Release. Every write to a claimed job is fenced by
// (id, fence, process_id, status running).
const (
	fenced = " WHERE id = ? AND fence = ? AND process_id = ? AND status = 'running'"

	qCompleteJob = `UPDATE ductwork_jobs SET status = 'completed', output = ?, finished_at = ` + nowUS + fenced
	// qCompleteJob's stale answer (no row) is errStaleUnchanged.
	qJobRunAndFinish = `SELECT j.run_id, j.finished_at, r.status FROM ductwork_jobs j
JOIN ductwork_runs r ON r.id = j.run_id WHERE j.id = ?`
	// qInsertClaimedJob inserts a job claimed at once (insertClaimed).
	qInsertClaimedJob = `INSERT INTO ductwork_jobs (run_id, node_id, scope, status, priority, input, created_at, due_at,
  fence, process_id, started_at, queue, gated, gate_key, gate_limit, rate_key)
VALUES (?, ?, ?, 'running', ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)`
	// qInsertSetJobsHead and insertSetJobRow insert the new jobs of a set
	// of completions, claimed or not (insertSetJobs).
	qInsertSetJobsHead = `INSERT INTO ductwork_jobs (run_id, node_id, scope, status, priority, input, created_at, due_at,
  fence, process_id, started_at, queue, gated, gate_key, gate_limit, rate_key) VALUES `
	insertSetJobRow = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	// qInsertClaimedReturning is qInsertClaimedJob with the run and the
	// time taken from the completed job, for a running run only
	// (insertClaimedReturning).
	qInsertClaimedReturning = `INSERT INTO ductwork_jobs (run_id, node_id, scope, status, priority, input, created_at, due_at,
  fence, process_id, started_at, queue, gated, gate_key, gate_limit, rate_key)
SELECT j.run_id, ?, ?, 'running', ?, ?, j.finished_at, j.finished_at, 1, ?, j.finished_at, ?, ?, ?, ?, ?
FROM ductwork_jobs j JOIN ductwork_runs r ON r.id = j.run_id WHERE j.id = ? AND r.status = 'running'
RETURNING id, run_id, created_at`

	qInsertJobsHead = `INSERT INTO ductwork_jobs (run_id, node_id, scope, status, priority, input, created_at, due_at,
  queue, gated, gate_key, gate_limit, rate_key) VALUES `
	insertJobRow    = "(?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	insertJobParams = 12

	qInsertJoin = `INSERT INTO ductwork_joins (run_id, node_id, scope, expected, arrived, priority, delay_us,
  queue, gate_key, gate_limit, rate_key)
VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)`
	qInsertJoinJob = `INSERT INTO ductwork_jobs
  (run_id, node_id, scope, status, priority, input, is_join, join_id, created_at, due_at,
   queue, gated, gate_key, gate_limit, rate_key)
VALUES (?, ?, ?, 'pending', ?, NULL, 1, ?, ?, ?, ?, ?, ?, ?, ?)`
	qArriveJoin = `UPDATE ductwork_joins SET arrived = arrived + 1 WHERE run_id = ? AND node_id = ? AND scope = ?`
	qJoinRow    = `SELECT id, expected, arrived, priority, delay_us, queue, gate_key, gate_limit, rate_key FROM ductwork_joins
WHERE run_id = ? AND node_id = ? AND scope = ? FOR UPDATE`
	qMarkArrival = `UPDATE ductwork_jobs SET arrival_join_id = ?, arrival_slot = ? WHERE id = ?`
	// qFinishRun completes the run of the job (the arguments: whether the
	// job's output is the run's, that output, the job, the change to the
	// outstanding work) if that change leaves none; qShiftRun otherwise
	// applies the change (and the output) to a run not yet finished.
	qFinishRun = `UPDATE ductwork_runs SET status = 'completed', output = IF(?, ?, output), outstanding = 0,
  updated_at = ` + nowUS + `
WHERE id = (SELECT run_id FROM ductwork_jobs WHERE id = ?) AND status IN ('running', 'waiting') AND outstanding + ? = 0`
	qShiftRun = `UPDATE ductwork_runs SET output = IF(?, ?, output), outstanding = outstanding + ?, updated_at = ` + nowUS + `
WHERE id = (SELECT run_id FROM ductwork_jobs WHERE id = ?) AND status IN ('running', 'waiting', 'halted')`

	qRetryJob = `UPDATE ductwork_jobs SET status = 'pending', attempt = attempt + 1, due_at = ` + nowUS + ` + ?,
  error = ?, error_stack = ?, process_id = NULL` + fenced
	qFailJob = `UPDATE ductwork_jobs SET status = 'failed', error = ?, error_stack = ?, finished_at = ` + nowUS + fenced
	qJobRun  = "SELECT run_id, node_id, scope, attempt FROM ductwork_jobs WHERE id = ?"
	qHaltRun = `UPDATE ductwork_runs SET status = 'halted', error = ?, halt_node = ?, halt_scope = ?, halt_cause = ?,
  halt_attempt = ?, halt_stack = ?, updated_at = ` + nowUS + `, halted_job_id = ?, halted_fence = ?
WHERE id = ? AND status IN ('running', 'waiting')`
	// qClaimOutcome reads what became of a claim whose fenced write matched
	// nothing (see claimOutcome).
	qClaimOutcome = `SELECT j.status, COALESCE(r.status, ''),
  COALESCE(r.halted_job_id = j.id AND r.halted_fence = j.fence, 0)
FROM ductwork_jobs j LEFT JOIN ductwork_runs r ON r.id = j.run_id
WHERE j.id = ? AND j.fence = ? AND j.process_id = ?`
	// A release is not a crash (crashes is left as it is) unless the
	// releaser says the execution was lost (the first parameter, 0 or 1).
	qReleaseJob = `UPDATE ductwork_jobs SET status = 'pending', process_id = NULL, crashes = crashes + ?` + fenced
)

// The execution history: one row per execution a job leaves behind (a
// retried failure, a crash, a release, the failure a revive re-runs),
// written in the transaction of the write that leaves it behind; a job's
// latest execution stays on its job row.
const (
	execColumns = `run_id, job_id, node_id, scope, attempt, crashes, fence, process_id, started_at, finished_at, outcome, error, error_stack`

	// qRecordExecution records the execution that a write to the job (just
	// made, in the same transaction) ended: the first two parameters undo
	// what that write added to the attempt and crash counts, then the owner,
	// the outcome, the error and the stack. A job the write finished carries
	// its end time; one made pending again ends now.
	qRecordExecution = `INSERT INTO ductwork_executions (` + execColumns + `)
SELECT run_id, id, node_id, scope, attempt - ?, crashes - ?, fence, ?, started_at,
  COALESCE(finished_at, ` + nowUS + `), ?, ?, ?
FROM ductwork_jobs WHERE id = ?`

	// qRecordEndedHead records, with the outcome given first, the executions
	// of running jobs locked by the caller, which then resets them with
	// qResetJobsHead; then placeholders for the job IDs, then ")".
	qRecordEndedHead = `INSERT INTO ductwork_executions (` + execColumns + `)
SELECT run_id, id, node_id, scope, attempt, crashes, fence, COALESCE(process_id, ''), started_at, ` + nowUS + `, ?, NULL, NULL
FROM ductwork_jobs WHERE status = 'running' AND id IN (`
	qResetJobsHead = `UPDATE ductwork_jobs SET status = 'pending', process_id = NULL, crashes = crashes + ?
WHERE status = 'running' AND id IN (`

	// qRecordRevived moves, before qReviveJobs makes them pending, the
	// failed executions of the run's failed jobs from their job rows to the
	// history (unless a history row holds one already: a timeout).
	qRecordRevived = `INSERT INTO ductwork_executions (` + execColumns + `)
SELECT f.run_id, f.id, f.node_id, f.scope, f.attempt, f.crashes, f.fence, COALESCE(f.process_id, ''), f.started_at,
  f.finished_at, 'failed', f.error, f.error_stack
FROM ductwork_jobs AS f
WHERE f.run_id = ? AND f.status = 'failed'
  AND NOT EXISTS (SELECT 1 FROM ductwork_executions AS e WHERE e.run_id = f.run_id AND e.job_id = f.id AND e.fence = f.fence)`

	// qListExecutions lists a run's executions (one job's when not 0) after
	// (job, fence), by job then fence: the job rows' latest executions,
	// except those a history row holds, and the history. The arguments,
	// for each part: run, job, job, after job, after job, after fence; then
	// the limit.
	qListExecutions = `SELECT job_id, run_id, node_id, scope, attempt, crashes, fence, process_id, started_at, finished_at,
  outcome, error, error_stack
FROM (
  SELECT ` + jobExecution + `
  FROM ductwork_jobs AS j
  WHERE j.run_id = ? AND (? = 0 OR j.id = ?) AND (j.id > ? OR (j.id = ? AND j.fence > ?))
    AND ` + jobHasExecution + `
    AND NOT EXISTS (SELECT 1 FROM ductwork_executions AS h WHERE h.run_id = j.run_id AND h.job_id = j.id AND h.fence = j.fence)
  UNION ALL
  SELECT h.job_id, h.run_id, h.node_id, h.scope, h.attempt, h.crashes, h.fence, h.process_id, h.started_at,
    h.finished_at, h.outcome, h.error, h.error_stack
  FROM ductwork_executions AS h
  WHERE h.run_id = ? AND (? = 0 OR h.job_id = ?) AND (h.job_id > ? OR (h.job_id = ? AND h.fence > ?))
) AS x
ORDER BY job_id, fence
LIMIT ?`

	// jobHasExecution holds for a job row (j) that holds its latest
	// execution: running, or ended by a completion, a failure that halted
	// or a cancel while it ran (a cancelled job that still names an owner).
	// A pending job's previous executions, if any, are history rows.
	jobHasExecution = `j.fence > 0 AND (j.status IN ('running', 'completed', 'failed')
    OR (j.status = 'cancelled' AND j.process_id IS NOT NULL))`

	// jobExecution renders the latest execution a job row (j) holds, in the
	// columns of an execution row (job_id first); a running one has no end.
	jobExecution = `j.id AS job_id, j.run_id, j.node_id, j.scope, j.attempt, j.crashes, j.fence,
    COALESCE(j.process_id, '') AS process_id, j.started_at,
    CASE WHEN j.status = 'running' THEN NULL ELSE j.finished_at END AS finished_at,
    CASE j.status WHEN 'running' THEN 'running' WHEN 'failed' THEN 'failed' WHEN 'cancelled' THEN 'cancelled'
      ELSE 'completed' END AS outcome,
    CASE WHEN j.status = 'failed' THEN j.error ELSE NULL END AS error,
    CASE WHEN j.status = 'failed' THEN j.error_stack ELSE NULL END AS error_stack`

	// qPruneBound is the highest ID among the oldest executions (by ID, the
	// order they ended in); qPruneExecutions deletes those up to it that
	// finished before the cutoff, a range of the primary key.
	qPruneBound      = `SELECT MAX(id) FROM (SELECT id FROM ductwork_executions ORDER BY id LIMIT ?) AS o`
	qPruneExecutions = `DELETE FROM ductwork_executions WHERE id <= ? AND finished_at < ` + nowUS + ` - ?`
)

// Processes and the reaper.
const (
	qRegisterProcess = `INSERT INTO ductwork_processes (id, host, pid, definitions, started_at, heartbeat_at)
VALUES (?, ?, ?, ?, ` + nowUS + `, ` + nowUS + `)
ON DUPLICATE KEY UPDATE host = VALUES(host), pid = VALUES(pid), definitions = VALUES(definitions),
  heartbeat_at = VALUES(heartbeat_at), beats = beats + 1`
	qProcessStarted = "SELECT started_at FROM ductwork_processes WHERE id = ?"
	// beats always changes, so RowsAffected is 1 for an existing row even
	// when two heartbeats fall in the same microsecond (MySQL reports changed,
	// not matched, rows unless the DSN sets clientFoundRows).
	qHeartbeat      = "UPDATE ductwork_processes SET heartbeat_at = " + nowUS + ", beats = beats + 1 WHERE id = ?"
	qProcessBeat    = "SELECT heartbeat_at FROM ductwork_processes WHERE id = ?"
	qOwnedJobs      = "SELECT id, fence FROM ductwork_jobs WHERE process_id = ? AND status = 'running' ORDER BY id"
	qProcessJobs    = `SELECT id FROM ductwork_jobs WHERE process_id = ? AND status = 'running' ORDER BY id FOR UPDATE`
	qDeleteProcess  = "DELETE FROM ductwork_processes WHERE id = ?"
	qStaleProcesses = `SELECT id FROM ductwork_processes
WHERE id <> ? AND heartbeat_at < ` + nowUS + ` - ?
ORDER BY id FOR UPDATE SKIP LOCKED`
	qReapJobsHead      = `SELECT id FROM ductwork_jobs WHERE status = 'running' AND process_id IN (`
	qReapJobsTail      = `) ORDER BY id FOR UPDATE`
	qReapProcessesHead = `DELETE FROM ductwork_processes WHERE heartbeat_at < ` + nowUS + ` - ? AND id IN (`
	qReapOrphans       = `SELECT id FROM ductwork_jobs j WHERE j.status = 'running' AND j.started_at < ` + nowUS + ` - ?
  AND NOT EXISTS (SELECT 1 FROM ductwork_processes p WHERE p.id = j.process_id) ORDER BY j.id FOR UPDATE`
)

// Runs, jobs and values.
const (
	runColumns = `id, pipeline, fingerprint, status, input, output, error, metadata, created_at, updated_at,
  halt_node, halt_scope, halt_cause, halt_attempt, halt_stack, identity`
	qGetRun    = "SELECT " + runColumns + " FROM ductwork_runs WHERE id = ?"
	qRunStatus = "SELECT status FROM ductwork_runs WHERE id = ?"
	// ListRuns: qListRunsHead, then any of the filters, then qListRunsTail.
	qListRunsHead   = "SELECT " + runColumns + " FROM ductwork_runs WHERE 1 = 1"
	qFilterBeforeID = " AND id < ?"
	qFilterPipeline = " AND pipeline = ?"
	qFilterStatus   = " AND status = ?"
	qFilterFrom     = " AND created_at >= ?"
	qFilterTo       = " AND created_at < ?"
	qListRunsTail   = " ORDER BY id DESC LIMIT ?"
	qListJobsHead   = `SELECT id, run_id, node_id, scope, status, input, output, error, error_stack, is_join, attempt, retry_base, crashes,
  fence, process_id, created_at, due_at, started_at, finished_at FROM ductwork_jobs WHERE run_id = ? AND id > ?`
	qListJobsTail = " ORDER BY id LIMIT ?"

	qCancelRun = `UPDATE ductwork_runs SET status = 'cancelled', error = ?, updated_at = ` + nowUS + `
WHERE id = ? AND status IN ('running', 'waiting', 'halted')`
	qReviveRun = `UPDATE ductwork_runs SET status = 'running', error = NULL, updated_at = ` + nowUS + `
WHERE id = ? AND status = 'halted'`
	// qReviveJobs keeps the attempt count and the error; the re-run is the
	// next attempt and its retry budget starts from the failed one. MySQL
	// assigns left to right, so retry_base takes the old attempt.
	qReviveJobs = `UPDATE ductwork_jobs SET status = 'pending', retry_base = attempt, attempt = attempt + 1,
  due_at = ` + nowUS + `, process_id = NULL, finished_at = NULL WHERE run_id = ? AND status = 'failed'`

	// qCancelJobs ends a cancelled run's pending and running jobs; a running
	// one thereby loses its claim (the fence requires status running).
	qCancelJobs = `UPDATE ductwork_jobs SET status = 'cancelled', finished_at = ` + nowUS + `
WHERE run_id = ? AND status IN ('pending', 'running')`

	// qCancelledRunsHead, then placeholders for the run IDs, then ")".
	qCancelledRunsHead = `SELECT id FROM ductwork_runs WHERE status = 'cancelled' AND id IN (`

	// SetValue inserts only when the run exists (0 rows → ErrRunNotFound).
	qInsertValue = `INSERT INTO ductwork_values (run_id, name, value)
SELECT id, ?, ? FROM ductwork_runs WHERE id = ?`
	qUpsertValue = qInsertValue + " ON DUPLICATE KEY UPDATE value = VALUES(value)"
	qGetValue    = "SELECT value FROM ductwork_values WHERE run_id = ? AND name = ?"

	qUnfinishedDefinitions = `SELECT pipeline, fingerprint, COUNT(*) FROM ductwork_runs
WHERE status IN ('running', 'waiting') GROUP BY pipeline, fingerprint ORDER BY pipeline, fingerprint`
)

// maxPlaceholders is MySQL's limit of parameters in one prepared statement.
const maxPlaceholders = 65535

// placeholders returns n copies of group separated by ", ". group is always
// a constant such as "?" or "(?, ?)".
func placeholders(group string, n int) string {
	if n <= 0 {
		return ""
	}
	b := make([]byte, 0, n*(len(group)+2))
	for i := range n {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, group...)
	}
	return string(b)
}
