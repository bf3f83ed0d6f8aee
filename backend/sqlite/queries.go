package sqlite

// SQL of every operation, as constants. Values are always bound; lists of
// values (definitions, process IDs) are bound as one JSON array read with
// json_each, so every statement has a fixed text and is prepared once.

// nowUS is the database's clock in integer unix microseconds. SQLite keeps
// 'now' constant within one statement step. unixepoch('subsec') needs
// SQLite 3.42 or newer (the bundled library is newer).
const nowUS = "CAST(ROUND(unixepoch('subsec') * 1000000) AS INTEGER)"

// execColumns are the columns of an execution row.
const execColumns = `run_id, job_id, node_id, scope, attempt, crashes, fence, process_id, started_at, finished_at, outcome, error, error_stack`

// jobHasExecution holds for a job row (j) that holds its latest execution:
// running, or ended by a completion, a failure that halted or a cancel
// while it ran (a cancelled job that still names an owner). A pending job's
// previous executions, if any, are history rows.
const jobHasExecution = `j.fence > 0 AND (j.status IN ('running', 'completed', 'failed')
    OR (j.status = 'cancelled' AND j.process_id IS NOT NULL))`

// jobExecution renders the latest execution a job row (j) holds, in the
// columns of an execution row (job_id first); a running one has no end.
const jobExecution = `j.id AS job_id, j.run_id, j.node_id, j.scope, j.attempt, j.crashes, j.fence,
        COALESCE(j.process_id, '') AS process_id, j.started_at,
        CASE WHEN j.status = 'running' THEN NULL ELSE j.finished_at END AS finished_at,
        CASE j.status WHEN 'running' THEN 'running' WHEN 'failed' THEN 'failed' WHEN 'cancelled' THEN 'cancelled'
            ELSE 'completed' END AS outcome,
        CASE WHEN j.status = 'failed' THEN j.error ELSE '' END AS error,
        CASE WHEN j.status = 'failed' THEN j.error_stack ELSE '' END AS error_stack`

// reapedJobs selects the running jobs a reap resets.
const reapedJobs = `
WHERE status = 'running'
  AND process_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM ductwork_processes AS p WHERE p.id = ductwork_jobs.process_id)
  AND (process_id IN (SELECT d.value FROM json_each(?) AS d) OR started_at < ` + nowUS + ` - ?)`

// fenced is the guard of Complete, Fail and Release: the claim presented must
// be the job's current one.
const fenced = ` WHERE id = ? AND fence = ? AND process_id = ? AND status = 'running'`

const (
	qBootstrap = `CREATE TABLE IF NOT EXISTS ductwork_migrations (
    version    INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL
) STRICT`
	qMigrationVersion = `SELECT COALESCE(MAX(version), 0) FROM ductwork_migrations`
	qRecordMigration  = `INSERT INTO ductwork_migrations (version, applied_at) VALUES (?, ` + nowUS + `)`

	qNow = `SELECT ` + nowUS

	// qInsertRun and qInsertFirstJob take an explicit ID: the next one of
	// sqlite_sequence, or past the highest this Backend handed out, whichever
	// is greater (see ids.go).
	qInsertRun = `INSERT INTO ductwork_runs (id, pipeline, fingerprint, status, input, metadata, identity, created_at, updated_at, trigger_key)
VALUES (max(?, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'ductwork_runs'), 0) + 1),
    ?, ?, 'running', ?, ?, ?, ` + nowUS + `, ` + nowUS + `, ?)`

	qInsertFirstJob = `INSERT INTO ductwork_jobs (id, run_id, node_id, scope, status, priority, input, created_at, due_at)
VALUES (max(?, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'ductwork_jobs'), 0) + 1),
    ?, ?, ?, 'pending', ?, ?, ` + nowUS + `, ` + nowUS + ` + ?)`

	// qRaiseSequence raises a table's sqlite_sequence to at least an ID
	// handed out in a transaction that may have been rolled back.
	qRaiseSequence = `UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?`

	// qTriggerExisting finds the run holding a trigger key (one writer, so
	// reading it in the write transaction before inserting is race free).
	qTriggerExisting = `SELECT r.id, COALESCE((SELECT MIN(j.id) FROM ductwork_jobs j WHERE j.run_id = r.id), 0), r.input,
    r.status IN ('completed', 'cancelled')
FROM ductwork_runs r WHERE r.pipeline = ? AND r.trigger_key = ?`

	// qReleaseKey takes a trigger key from a finished run (KeyWhileActive).
	qReleaseKey = `UPDATE ductwork_runs SET trigger_key = NULL WHERE id = ? AND status IN ('completed', 'cancelled')`

	// qClaimOutcome reads what became of a claim whose fenced write matched
	// nothing: an earlier call with the same claim may have committed.
	qClaimOutcome = `SELECT j.status, COALESCE(r.status, ''),
  COALESCE(r.halted_job_id = j.id AND r.halted_fence = j.fence, 0)
FROM ductwork_jobs j LEFT JOIN ductwork_runs r ON r.id = j.run_id
WHERE j.id = ? AND j.fence = ? AND j.process_id = ?`

	qOwnedJobs = `SELECT id, fence FROM ductwork_jobs WHERE process_id = ? AND status = 'running' ORDER BY id`

	qInsertJob = `INSERT INTO ductwork_jobs (run_id, node_id, scope, status, priority, input, created_at, due_at)
VALUES (?, ?, ?, 'pending', ?, ?, ` + nowUS + `, ` + nowUS + ` + ?)`

	// qInsertJobClaimed is qInsertJob for the job a ClaimNext completion
	// takes: inserted claimed (running, fence 1, owner, started now) when its
	// run is running, pending otherwise; it returns the job's ID, whether it
	// was claimed, and its times.
	qInsertJobClaimed = `INSERT INTO ductwork_jobs (run_id, node_id, scope, status, priority, input, created_at, due_at,
    fence, process_id, started_at)
SELECT ?, ?, ?, CASE WHEN r.status = 'running' THEN 'running' ELSE 'pending' END, ?, ?, ` + nowUS + `, ` + nowUS + `,
    CASE WHEN r.status = 'running' THEN 1 ELSE 0 END, CASE WHEN r.status = 'running' THEN ? END,
    CASE WHEN r.status = 'running' THEN ` + nowUS + ` END
FROM ductwork_runs AS r WHERE r.id = ?
RETURNING id, status = 'running', created_at, due_at, started_at`

	qInsertJoinJob = `INSERT INTO ductwork_jobs (run_id, node_id, scope, status, priority, input, is_join, join_id, created_at, due_at,
    queue, gated, gate_key, gate_limit, rate_key)
VALUES (?, ?, ?, 'pending', ?, NULL, 1, ?, ` + nowUS + `, ` + nowUS + ` + ?, ?, ?, ?, ?, ?)`

	// qInsertJobGated and qInsertFirstJobGated insert a job with a queue or
	// a gate (jobs without either keep the shorter statements above).
	qInsertJobGated = `INSERT INTO ductwork_jobs (run_id, node_id, scope, status, priority, input, created_at, due_at,
    queue, gated, gate_key, gate_limit, rate_key)
VALUES (?, ?, ?, 'pending', ?, ?, ` + nowUS + `, ` + nowUS + ` + ?, ?, ?, ?, ?, ?)`

	qInsertFirstJobGated = `INSERT INTO ductwork_jobs (id, run_id, node_id, scope, status, priority, input, created_at, due_at,
    queue, gated, gate_key, gate_limit, rate_key)
VALUES (max(?, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'ductwork_jobs'), 0) + 1),
    ?, ?, ?, 'pending', ?, ?, ` + nowUS + `, ` + nowUS + ` + ?, ?, ?, ?, ?, ?)`

	// qClaimSelect picks, in claim order, the due jobs of running runs of the
	// given definitions (a JSON array of [pipeline, fingerprint] pairs), with
	// their run's pipeline, fingerprint and metadata. CROSS JOIN makes SQLite
	// walk the partial claim index in claim order and stop at LIMIT, instead
	// of reading every job of every running run. It runs in the claim's write
	// transaction, followed by qClaimJob for each job: measured, that is
	// several times cheaper than one UPDATE ... WHERE id IN (SELECT ...).
	qClaimSelect = `SELECT j.id, r.pipeline, r.fingerprint, r.metadata, r.identity
FROM ductwork_jobs AS j
CROSS JOIN ductwork_runs AS r ON r.id = j.run_id
WHERE j.status = 'pending' AND j.gated = 0 AND j.queue = ?
  AND j.due_at <= ` + nowUS + `
  AND r.status IN ('running', 'waiting')
  AND (r.pipeline, r.fingerprint) IN (SELECT d.value ->> 0, d.value ->> 1 FROM json_each(?) AS d)
ORDER BY j.priority DESC, j.due_at, j.id
LIMIT ?`

	// qGatedSelect is qClaimSelect for gated jobs, with their limits. Jobs
	// whose concurrency key is already full are left out here, so that one
	// key's backlog does not hide the jobs of other keys behind it; the
	// claim then counts again and decides (see internal/gate).
	qGatedSelect = `SELECT j.id, r.pipeline, r.fingerprint, r.metadata, r.identity,
    COALESCE(j.gate_key, ''), j.gate_limit, COALESCE(j.rate_key, '')
FROM ductwork_jobs AS j
CROSS JOIN ductwork_runs AS r ON r.id = j.run_id
WHERE j.status = 'pending' AND j.gated = 1 AND j.queue = ?
  AND j.due_at <= ` + nowUS + `
  AND r.status IN ('running', 'waiting')
  AND (r.pipeline, r.fingerprint) IN (SELECT d.value ->> 0, d.value ->> 1 FROM json_each(?) AS d)
  AND (j.gate_key IS NULL OR (SELECT COUNT(*) FROM ductwork_jobs AS g
                              WHERE g.gate_key = j.gate_key AND g.status = 'running') < j.gate_limit)
ORDER BY j.priority DESC, j.due_at, j.id
LIMIT ?`

	// qGateRunning counts the running jobs of a concurrency key.
	qGateRunning = `SELECT COUNT(*) FROM ductwork_jobs WHERE gate_key = ? AND status = 'running'`

	// qLimitRow creates a limit's row if needed and returns its state with
	// the database's now (the write lock is held: nobody else claims).
	qLimitRow = `INSERT INTO ductwork_limits (name, tat) VALUES (?, 0)
ON CONFLICT (name) DO UPDATE SET name = excluded.name
RETURNING tat, ` + nowUS

	qLimitSetTAT = `UPDATE ductwork_limits SET tat = ? WHERE name = ?`

	// qClaimJob claims one job picked by qClaimSelect. The status guard
	// keeps it correct even outside an immediate transaction.
	qClaimJob = `UPDATE ductwork_jobs
SET status = 'running', fence = fence + 1, process_id = ?, started_at = ` + nowUS + `
WHERE id = ? AND status = 'pending'
RETURNING run_id, node_id, scope, input, is_join, join_id, attempt, retry_base, crashes, fence, created_at, due_at, started_at`

	qJoinInputs = `SELECT output FROM ductwork_jobs WHERE arrival_join_id = ? ORDER BY arrival_slot`

	// qClaimNextPick finds, for Complete with ClaimNext, the job (run, node,
	// scope) the completion just inserted, if it is due and its run running.
	qClaimNextPick = `SELECT j.id FROM ductwork_jobs AS j
JOIN ductwork_runs AS r ON r.id = j.run_id
WHERE j.run_id = ? AND j.node_id = ? AND j.scope = ? AND j.status = 'pending'
  AND j.due_at <= ` + nowUS + ` AND r.status = 'running'`

	qCompleteJob = `UPDATE ductwork_jobs
SET status = 'completed', output = ?, finished_at = ` + nowUS + fenced + `
RETURNING run_id`

	// qCompleteJobArrive also records the arrival at the join (node, scope)
	// of the job's own run; arrival_join_id is NULL when no such join is open.
	qCompleteJobArrive = `UPDATE ductwork_jobs
SET status = 'completed', output = ?, finished_at = ` + nowUS + `,
    arrival_join_id = (SELECT o.id FROM ductwork_joins AS o
                       WHERE o.run_id = ductwork_jobs.run_id AND o.node_id = ? AND o.scope = ?),
    arrival_slot = ?` + fenced + `
RETURNING run_id, arrival_join_id`

	qOpenJoin = `INSERT INTO ductwork_joins (run_id, node_id, scope, expected, arrived, priority, delay_us,
    queue, gate_key, gate_limit, rate_key)
VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)`

	qArrive = `UPDATE ductwork_joins SET arrived = arrived + 1 WHERE id = ?
RETURNING node_id, scope, expected, arrived, priority, delay_us, queue, gate_key, gate_limit, rate_key`

	// qAdvanceRun applies a completion's change to the run's outstanding work
	// (Plan.CompleteRun and Plan.Detached): ?1 is the change, ?2 whether the
	// job is the end node, ?3 its output. A halted run keeps the count and
	// the output for when it is revived. qCompleteRun then completes the run
	// if that brought the count to 0 while it is running: only one completion
	// can. (Two plain updates cost less here than one with CASE and
	// RETURNING.)
	qAdvanceRun = `UPDATE ductwork_runs
SET outstanding = outstanding + ?1, output = CASE WHEN ?2 THEN ?3 ELSE output END, updated_at = ` + nowUS + `
WHERE id = ?4 AND status IN ('running', 'waiting', 'halted')`

	qCompleteRun = `UPDATE ductwork_runs SET status = 'completed'
WHERE id = ? AND status IN ('running', 'waiting') AND outstanding = 0`

	qFailRetry = `UPDATE ductwork_jobs
SET status = 'pending', attempt = attempt + 1, due_at = ` + nowUS + ` + ?, error = ?, error_stack = ?, process_id = NULL` + fenced

	qFailJob = `UPDATE ductwork_jobs
SET status = 'failed', error = ?, error_stack = ?, finished_at = ` + nowUS + fenced + `
RETURNING run_id, node_id, scope, attempt`

	qHaltRun = `UPDATE ductwork_runs SET status = 'halted', error = ?, halt_node = ?, halt_scope = ?,
    halt_cause = ?, halt_attempt = ?, halt_stack = ?, updated_at = ` + nowUS + `,
    halted_job_id = ?, halted_fence = ?
WHERE id = ? AND status IN ('running', 'waiting')`

	// A release is not a crash (Crashes is left as it is) unless the
	// releaser says the execution was lost (the first parameter, 0 or 1).
	qRelease = `UPDATE ductwork_jobs
SET status = 'pending', process_id = NULL, crashes = crashes + ?` + fenced

	// qRecordExecution records the execution that a write to job ?7 (just
	// made, in the same transaction) ended: ?1 and ?2 undo what that write
	// added to the attempt and crash counts, ?3 is the owner, ?4 the
	// outcome, ?5 and ?6 the error and stack. A job that the write finished
	// carries its end time; one made pending again ends now.
	qRecordExecution = `INSERT INTO ductwork_executions (` + execColumns + `)
SELECT run_id, id, node_id, scope, attempt - ?1, crashes - ?2, fence, ?3, started_at,
    COALESCE(finished_at, ` + nowUS + `), ?4, ?5, ?6
FROM ductwork_jobs WHERE id = ?7`

	// qRecordProcessExecutions records, before qReleaseProcessJobs resets
	// them, the executions of a process's running jobs as released.
	qRecordProcessExecutions = `INSERT INTO ductwork_executions (` + execColumns + `)
SELECT run_id, id, node_id, scope, attempt, crashes, fence, process_id, started_at, ` + nowUS + `, 'released', '', ''
FROM ductwork_jobs WHERE process_id = ? AND status = 'running'`

	// qRecordReapedExecutions records, before qReapJobs resets them (same
	// arguments, same condition), the executions it ends as crashed.
	qRecordReapedExecutions = `INSERT INTO ductwork_executions (` + execColumns + `)
SELECT run_id, id, node_id, scope, attempt, crashes, fence, process_id, started_at, ` + nowUS + `, 'crashed', '', ''
FROM ductwork_jobs` + reapedJobs

	// qRecordRevivedExecutions moves, before qReviveJobs makes them pending,
	// the failed executions of run ?1's failed jobs from their job rows to
	// the history (unless a history row holds one already: a timeout).
	qRecordRevivedExecutions = `INSERT INTO ductwork_executions (` + execColumns + `)
SELECT f.run_id, f.id, f.node_id, f.scope, f.attempt, f.crashes, f.fence, COALESCE(f.process_id, ''), f.started_at,
    f.finished_at, 'failed', f.error, f.error_stack
FROM ductwork_jobs AS f
WHERE f.run_id = ?1 AND f.status = 'failed'
  AND NOT EXISTS (SELECT 1 FROM ductwork_executions AS e WHERE e.run_id = f.run_id AND e.job_id = f.id AND e.fence = f.fence)`

	// qListExecutions lists run ?1's executions (job ?2's when not 0) after
	// (job ?3, fence ?4), by job then fence, at most ?5: the job rows'
	// latest executions, except those a history row holds, and the history.
	qListExecutions = `SELECT job_id, run_id, node_id, scope, attempt, crashes, fence, process_id, started_at, finished_at,
    outcome, error, error_stack
FROM (
    SELECT ` + jobExecution + `
    FROM ductwork_jobs AS j
    WHERE j.run_id = ?1 AND (?2 = 0 OR j.id = ?2) AND (j.id > ?3 OR (j.id = ?3 AND j.fence > ?4))
      AND ` + jobHasExecution + `
      AND NOT EXISTS (SELECT 1 FROM ductwork_executions AS h WHERE h.run_id = j.run_id AND h.job_id = j.id AND h.fence = j.fence)
    UNION ALL
    SELECT h.job_id, h.run_id, h.node_id, h.scope, h.attempt, h.crashes, h.fence, h.process_id, h.started_at,
        h.finished_at, h.outcome, h.error, h.error_stack
    FROM ductwork_executions AS h
    WHERE h.run_id = ?1 AND (?2 = 0 OR h.job_id = ?2) AND (h.job_id > ?3 OR (h.job_id = ?3 AND h.fence > ?4))
) AS x
ORDER BY job_id, fence
LIMIT ?5`

	// qPruneExecutions deletes, among the ?2 oldest executions by ID (the
	// order they ended in), those that finished more than ?1 microseconds
	// ago.
	qPruneExecutions = `DELETE FROM ductwork_executions
WHERE id IN (SELECT id FROM ductwork_executions ORDER BY id LIMIT ?2)
  AND finished_at < ` + nowUS + ` - ?1`

	qRegisterProcess = `INSERT INTO ductwork_processes (id, host, pid, definitions, started_at, heartbeat_at)
VALUES (?, ?, ?, ?, ` + nowUS + `, ` + nowUS + `)
ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
    definitions = excluded.definitions, heartbeat_at = excluded.heartbeat_at
RETURNING started_at`

	qHeartbeat = `UPDATE ductwork_processes SET heartbeat_at = ` + nowUS + ` WHERE id = ? RETURNING heartbeat_at`

	qReleaseProcessJobs = `UPDATE ductwork_jobs
SET status = 'pending', process_id = NULL
WHERE process_id = ? AND status = 'running'`

	qDeleteProcess = `DELETE FROM ductwork_processes WHERE id = ?`

	// qReapProcesses deletes the stale processes; the staleness test is in
	// the DELETE itself, so concurrent reapers each delete a row once.
	qReapProcesses = `DELETE FROM ductwork_processes
WHERE id <> ? AND heartbeat_at < ` + nowUS + ` - ?
RETURNING id`

	// qReapJobs resets running jobs whose owner has no process row: those of
	// the processes just reaped (a JSON array of IDs), and others whose claim
	// is older than the threshold.
	qReapJobs = `UPDATE ductwork_jobs
SET status = 'pending', process_id = NULL, crashes = crashes + 1` + reapedJobs

	runColumns = `id, pipeline, fingerprint, status, input, output, error, metadata, created_at, updated_at,
    halt_node, halt_scope, halt_cause, halt_attempt, halt_stack, identity`

	qGetRun = `SELECT ` + runColumns + ` FROM ductwork_runs WHERE id = ?`

	qListRuns = `SELECT ` + runColumns + ` FROM ductwork_runs
WHERE id < ? AND (? = '' OR pipeline = ?) AND (? = '' OR status = ?) AND created_at >= ? AND created_at < ?
ORDER BY id DESC
LIMIT ?`

	qListJobs = `SELECT id, run_id, node_id, scope, status, input, output, error, error_stack, is_join, attempt, retry_base, crashes, fence,
    process_id, created_at, due_at, started_at, finished_at
FROM ductwork_jobs
WHERE run_id = ? AND id > ? AND (? = '' OR status = ?)
ORDER BY id
LIMIT ?`

	qRunExists = `SELECT 1 FROM ductwork_runs WHERE id = ?`

	qCancelRun = `UPDATE ductwork_runs SET status = 'cancelled', error = ?, updated_at = ` + nowUS + `
WHERE id = ? AND status IN ('running', 'waiting', 'halted')`

	// qCancelJobs ends the cancelled run's pending and running jobs. A
	// running job keeps its owner (for the record) but loses its claim: the
	// fence requires status running.
	qCancelJobs = `UPDATE ductwork_jobs SET status = 'cancelled', finished_at = ` + nowUS + `
WHERE run_id = ? AND status IN ('pending', 'running')`

	// qCancelledRuns lists which of a JSON array of run IDs are cancelled.
	qCancelledRuns = `SELECT id FROM ductwork_runs
WHERE status = 'cancelled' AND id IN (SELECT d.value FROM json_each(?) AS d)`

	qReviveRun = `UPDATE ductwork_runs SET status = 'running', updated_at = ` + nowUS + `
WHERE id = ? AND status = 'halted'`

	// qReviveJobs keeps the attempt count and the error: the re-run is the
	// next attempt, and its retry budget starts from the failed one.
	qReviveJobs = `UPDATE ductwork_jobs
SET status = 'pending', retry_base = attempt, attempt = attempt + 1, due_at = ` + nowUS + `,
    process_id = NULL, finished_at = NULL
WHERE run_id = ? AND status = 'failed'`

	// qSetValue and qSetValueOverwrite write nothing for an unknown run
	// (the values table has no foreign key SQLite enforces): SetValue then
	// tells ErrRunNotFound from ErrValueExists by qRunExists.
	qSetValue = `INSERT INTO ductwork_values (run_id, key, value)
SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM ductwork_runs WHERE id = ?1)
ON CONFLICT (run_id, key) DO NOTHING`

	qSetValueOverwrite = `INSERT INTO ductwork_values (run_id, key, value)
SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM ductwork_runs WHERE id = ?1)
ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value`

	qGetValue = `SELECT value FROM ductwork_values WHERE run_id = ? AND key = ?`

	qStranded = `SELECT pipeline, fingerprint, count(*)
FROM ductwork_runs
WHERE status IN ('running', 'waiting')
  AND (pipeline, fingerprint) NOT IN (SELECT d.value ->> 0, d.value ->> 1 FROM json_each(?) AS d)
GROUP BY pipeline, fingerprint
ORDER BY pipeline, fingerprint`
)

// hotWrites are prepared on the writer once and reused by every transaction.
var hotWrites = []string{
	qInsertRun, qInsertFirstJob, qInsertJob, qInsertJobClaimed, qInsertJoinJob, qInsertJobGated, qClaimSelect, qGatedSelect, qClaimJob, qJoinInputs, qClaimNextPick,
	qCompleteJob, qCompleteJobArrive, qOpenJoin, qArrive, qAdvanceRun, qCompleteRun,
	qFailRetry, qFailJob, qHaltRun, qRelease, qHeartbeat, qRecordExecution,
}
