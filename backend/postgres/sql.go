package postgres

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// The statements below are templates: {schema} is replaced once, in New, by
// the quoted schema identifier. Values are always bound parameters. Durations
// are bound as int64 microseconds and added to the database's clock.

const sqlTrigger = `
WITH r AS (
	INSERT INTO {schema}.ductwork_runs (pipeline, fingerprint, status, input, metadata, identity)
	VALUES ($1, $2, 'running', $3, $4, $10)
	RETURNING id
), j AS (
	INSERT INTO {schema}.ductwork_jobs (run_id, node_id, scope, status, priority, input, due_at,
		queue, gated, gate_key, gate_limit, rate_key)
	SELECT r.id, $5, $6, 'pending', $7, $8, now() + $9::bigint * interval '1 microsecond',
		$11, $12, $13, $14, $15
	FROM r
	RETURNING id
)
SELECT r.id, j.id FROM r, j`

// sqlTriggerMany is sqlTrigger for several triggers in one statement, from
// arrays in sqlTrigger's order of arguments ($4, the metadata, as JSON text).
// Each run's job is matched to it by its identity, which the caller checks
// is set and distinct; it returns (identity, run id, job id) per trigger.
const sqlTriggerMany = `
WITH a AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::integer[], $8::bytea[],
		$9::bigint[], $10::text[], $11::text[], $12::boolean[], $13::text[], $14::integer[], $15::text[])
		WITH ORDINALITY AS a(pipeline, fingerprint, input, metadata, node_id, scope, priority, job_input,
			delay_us, identity, queue, gated, gate_key, gate_limit, rate_key, ord)
), r AS (
	INSERT INTO {schema}.ductwork_runs (pipeline, fingerprint, status, input, metadata, identity)
	SELECT a.pipeline, a.fingerprint, 'running', a.input, a.metadata::jsonb, a.identity FROM a ORDER BY a.ord
	RETURNING id, identity
), j AS (
	INSERT INTO {schema}.ductwork_jobs (run_id, node_id, scope, status, priority, input, due_at,
		queue, gated, gate_key, gate_limit, rate_key)
	SELECT r.id, a.node_id, a.scope, 'pending', a.priority, a.job_input, now() + a.delay_us * interval '1 microsecond',
		a.queue, a.gated, a.gate_key, a.gate_limit, a.rate_key
	FROM a JOIN r ON r.identity = a.identity
	ORDER BY a.ord
	RETURNING id, run_id
)
SELECT r.identity, r.id, j.id FROM r JOIN j ON j.run_id = r.id`

// sqlTriggerKeyed is sqlTrigger with an idempotency key ($11): on a key
// already used in the pipeline it inserts nothing and returns no row (the
// caller then reads the existing run with sqlTriggerExisting, in a new
// statement, which sees a concurrent trigger's committed row).
const sqlTriggerKeyed = `
WITH r AS (
	INSERT INTO {schema}.ductwork_runs (pipeline, fingerprint, status, input, metadata, identity, trigger_key)
	VALUES ($1, $2, 'running', $3, $4, $10, $11)
	ON CONFLICT (pipeline, trigger_key) WHERE trigger_key IS NOT NULL DO NOTHING
	RETURNING id
), j AS (
	INSERT INTO {schema}.ductwork_jobs (run_id, node_id, scope, status, priority, input, due_at,
		queue, gated, gate_key, gate_limit, rate_key)
	SELECT r.id, $5, $6, 'pending', $7, $8, now() + $9::bigint * interval '1 microsecond',
		$12, $13, $14, $15, $16
	FROM r
	RETURNING id
)
SELECT r.id, j.id FROM r, j`

const sqlTriggerExisting = `
SELECT r.id, coalesce((SELECT min(j.id) FROM {schema}.ductwork_jobs AS j WHERE j.run_id = r.id), 0), r.input,
	r.status IN ('completed', 'cancelled')
FROM {schema}.ductwork_runs AS r
WHERE r.pipeline = $1 AND r.trigger_key = $2`

// sqlReleaseKey takes a trigger key from a finished run (KeyWhileActive).
const sqlReleaseKey = `UPDATE {schema}.ductwork_runs SET trigger_key = NULL
WHERE id = $1 AND status IN ('completed', 'cancelled')`

// sqlClaim takes due jobs of running runs whose definition is one of the
// ($2, $3) pairs, skipping rows other claimers hold. The run check is a
// correlated subquery (OFFSET 0 keeps it from being flattened into a join),
// so the plan walks the pending index in claim order and stops after $4
// claimable rows instead of joining every due job to its run and sorting.
// The due test is written so that it cannot be an index condition: on a
// fresh table (no statistics yet) a range condition on due_at made the
// planner pick a bitmap scan of every due job plus a sort, 100+ ms a claim. The locking subquery is
// a MATERIALIZED CTE so that it runs exactly once: written as
// "WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)" the planner may
// rescan it per outer row, and each rescan skips the rows this statement has
// just updated and takes n more, claiming more than n. For join jobs it also
// returns the outputs of the join's arrivals in slot order, so a claim is one
// atomic statement.
const sqlClaim = `
WITH c AS MATERIALIZED (
	SELECT c.id
	FROM {schema}.ductwork_jobs AS c
	WHERE c.status = 'pending' AND NOT c.gated AND c.queue = $5
	  AND c.due_at + interval '0' <= now()
	  AND EXISTS (
		SELECT 1 FROM {schema}.ductwork_runs AS cr
		WHERE cr.id = c.run_id AND cr.status IN ('running', 'waiting')
		  AND (cr.pipeline, cr.fingerprint) IN (SELECT d.p, d.f FROM unnest($2::text[], $3::text[]) AS d(p, f))
		OFFSET 0)
	ORDER BY c.priority DESC, c.due_at, c.id
	LIMIT $4
	FOR UPDATE OF c SKIP LOCKED
)
UPDATE {schema}.ductwork_jobs AS j
SET status = 'running', fence = j.fence + 1, process_id = $1, started_at = now()
FROM c, {schema}.ductwork_runs AS r
WHERE j.id = c.id AND r.id = j.run_id AND j.status = 'pending'
RETURNING j.id, j.run_id, r.pipeline, r.fingerprint, r.identity, j.node_id, j.scope, j.input, j.is_join, j.join_id,
	j.attempt, j.retry_base, j.crashes, j.fence, r.metadata, j.created_at, j.due_at, j.started_at, j.priority,
	CASE WHEN j.is_join THEN ARRAY(
		SELECT a.output FROM {schema}.ductwork_jobs AS a
		WHERE a.arrival_join_id = j.join_id
		ORDER BY a.arrival_slot) END`

// sqlClaimNext runs last in a Complete batch with ClaimNext: it claims, for
// the completing process, the job (run of job $1, node $2, scope $3) that the
// completion just created, if it is due and its run is running. The job was
// inserted by this transaction, so no other claimer can hold it.
const sqlClaimNext = `
UPDATE {schema}.ductwork_jobs AS j
SET status = 'running', fence = j.fence + 1, process_id = $4, started_at = now()
FROM {schema}.ductwork_jobs AS c, {schema}.ductwork_runs AS r
WHERE c.id = $1 AND j.run_id = c.run_id AND r.id = c.run_id AND r.status = 'running'
  AND j.node_id = $2 AND j.scope = $3 AND j.status = 'pending' AND j.due_at <= now()
RETURNING j.id, j.run_id, j.input, j.is_join, j.attempt, j.retry_base, j.crashes, j.fence, j.created_at, j.due_at, j.started_at,
	CASE WHEN j.is_join THEN ARRAY(
		SELECT a.output FROM {schema}.ductwork_jobs AS a
		WHERE a.arrival_join_id = j.join_id
		ORDER BY a.arrival_slot) END`

// sqlInsertJobsClaim is sqlInsertJobs for a completion with ClaimNext whose
// next job is the plan's job at ordinality $7: that job is inserted already
// claimed by process $8 (running, fence 1, started now) when the run is
// running, one statement instead of an insert and an update of the row just
// inserted. It returns the number of jobs inserted and the claimed job's
// fields (NULL when the run is not running).
const sqlInsertJobsClaim = `
WITH src AS (
	SELECT j.run_id, r.status = 'running' AS running
	FROM {schema}.ductwork_jobs AS j JOIN {schema}.ductwork_runs AS r ON r.id = j.run_id
	WHERE j.id = $1
), ins AS (
	INSERT INTO {schema}.ductwork_jobs (run_id, node_id, scope, status, priority, input, due_at, fence, process_id, started_at)
	SELECT src.run_id, u.node_id, u.scope,
		CASE WHEN src.running AND u.ord = $7 THEN 'running' ELSE 'pending' END,
		u.priority, u.input, now() + u.delay_us * interval '1 microsecond',
		CASE WHEN src.running AND u.ord = $7 THEN 1 ELSE 0 END,
		CASE WHEN src.running AND u.ord = $7 THEN $8::text END,
		CASE WHEN src.running AND u.ord = $7 THEN now() END
	FROM src, unnest($2::text[], $3::text[], $4::integer[], $5::bytea[], $6::bigint[])
		WITH ORDINALITY AS u(node_id, scope, priority, input, delay_us, ord)
	ORDER BY u.ord
	RETURNING id, run_id, status, input, created_at, due_at, started_at
)
SELECT (SELECT count(*) FROM ins), c.id, c.run_id, c.input, c.created_at, c.due_at, c.started_at
FROM (SELECT 1) AS one LEFT JOIN ins AS c ON c.status = 'running'`

// sqlLockOwner runs first in the batches of Complete, Fail and Release. Its
// KEY SHARE lock on the owner's process row orders the commit against Reap
// and DeregisterProcess, which delete that row: if a reaper is deleting it,
// this waits for the reaper to commit and the fenced update that follows
// (a new statement, so a new snapshot) sees the reset job and fails without
// waiting on, or locking, the job row. A zombie's failing commit therefore
// never holds the job's row lock while the reaper's next Claim would skip it.
// If the commit takes the lock first, the reaper waits for it instead.
const sqlLockOwner = `SELECT 1 FROM {schema}.ductwork_processes WHERE id = $1 FOR KEY SHARE`

// sqlLockRun runs next in a Complete batch: its KEY SHARE lock on the job's
// run row orders the completion against CancelRun, which locks that row FOR
// UPDATE before it cancels the run's jobs. A completion that locks first
// commits first, and CancelRun's next statement (a new snapshot) sees, and
// cancels, the jobs it inserted; one that comes second finds its job
// cancelled, and its fenced update raises DW001. KEY SHARE locks do not
// conflict with each other, so completions of one run do not wait for each
// other here.
const sqlLockRun = `SELECT 1 FROM {schema}.ductwork_runs
WHERE id = (SELECT run_id FROM {schema}.ductwork_jobs WHERE id = $1) FOR KEY SHARE`

// sqlLockClaim locks a claimed job's row, before a transactional step runs,
// when the claim is still current; no row means a stale claim.
const sqlLockClaim = `SELECT true FROM {schema}.ductwork_jobs
WHERE id = $1 AND fence = $2 AND process_id = $3 AND status = 'running' FOR UPDATE`

// execColumns are the columns of an execution row that the statements
// ending a claim insert (see sqlExecutionFrom).
const execColumns = `run_id, job_id, node_id, scope, attempt, crashes, fence, process_id, started_at, finished_at, outcome, error, error_stack`

// The fenced update raises DW001 when it matches nothing, which aborts the
// rest of the batch and its implicit transaction at once, server side. The
// completed execution stays on the job row (its claim's start, owner and
// fence, its end): a completion writes no history row.
const sqlCompleteJob = `
WITH u AS (
	UPDATE {schema}.ductwork_jobs
	SET status = 'completed', output = $4, finished_at = now()
	WHERE id = $1 AND fence = $2 AND process_id = $3 AND status = 'running'
	RETURNING id
)
SELECT CASE WHEN EXISTS (SELECT 1 FROM u) THEN 0
	ELSE {schema}.ductwork_raise('DW001', 'ductwork: stale claim') END`

// sqlCompleteJobRun is sqlCompleteJob followed by sqlCompleteRun in one
// statement (its arguments: the job's four, then sqlCompleteRun's $3 and $4
// as $5 and $6), for a completion whose plan has nothing to apply between the
// two (no jobs, joins or arrival). The run's update sees the job's through
// the CTE; it returns whether this statement completed the run.
const sqlCompleteJobRun = `
WITH u AS (
	UPDATE {schema}.ductwork_jobs
	SET status = 'completed', output = $4, finished_at = now()
	WHERE id = $1 AND fence = $2 AND process_id = $3 AND status = 'running'
	RETURNING run_id
), r AS (
	UPDATE {schema}.ductwork_runs
	SET status = CASE WHEN status IN ('running', 'waiting') AND outstanding + $6 = 0 THEN 'completed' ELSE status END,
		output = CASE WHEN $5 THEN $4 ELSE output END,
		outstanding = outstanding + $6,
		updated_at = now()
	WHERE id = (SELECT run_id FROM u) AND status IN ('running', 'waiting', 'halted')
	RETURNING status = 'completed' AND outstanding = 0 AS done
)
SELECT CASE WHEN EXISTS (SELECT 1 FROM u) THEN coalesce((SELECT done FROM r), false)
	ELSE {schema}.ductwork_raise('DW001', 'ductwork: stale claim') = 0 END`

// sqlCompleteEnds is sqlCompleteJobRun for several completions that each
// end their run (Plan.CompleteRun, nothing else to apply), in one statement:
// $1..$4 are arrays of the jobs' ids, fences, owners and outputs. It returns
// one row per completed job, with whether it completed its run. When a claim
// is stale, or two of the jobs belong to one run (the run's update would see
// only one of them), it raises DW001 and the batch is applied otherwise.
const sqlCompleteEnds = `
WITH a AS (
	SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bytea[]) AS a(id, fence, process_id, output)
), u AS (
	UPDATE {schema}.ductwork_jobs AS j
	SET status = 'completed', output = a.output, finished_at = now()
	FROM a
	WHERE j.id = a.id AND j.fence = a.fence AND j.process_id = a.process_id AND j.status = 'running'
	RETURNING j.id, j.run_id, a.output
), r AS (
	UPDATE {schema}.ductwork_runs AS r
	SET status = CASE WHEN r.status IN ('running', 'waiting') AND r.outstanding - 1 = 0 THEN 'completed' ELSE r.status END,
		output = u.output,
		outstanding = r.outstanding - 1,
		updated_at = now()
	FROM u
	WHERE r.id = u.run_id AND r.status IN ('running', 'waiting', 'halted')
	RETURNING u.id, r.status = 'completed' AND r.outstanding = 0 AS done
)
SELECT u.id, coalesce(r.done, false)
FROM (SELECT CASE WHEN (SELECT count(*) FROM u) = cardinality($1::bigint[])
		AND (SELECT count(DISTINCT run_id) FROM u) = cardinality($1::bigint[]) THEN 0
		ELSE {schema}.ductwork_raise('DW001', 'ductwork: stale claim') END AS ok) AS chk
	JOIN u ON chk.ok = 0
	LEFT JOIN r ON r.id = u.id`

// sqlLockRuns is sqlLockRun for the jobs of a group ($1, an array), in one
// statement, in the order of the runs' ids.
const sqlLockRuns = `SELECT 1 FROM {schema}.ductwork_runs
WHERE id IN (SELECT run_id FROM {schema}.ductwork_jobs WHERE id = ANY($1::bigint[])) ORDER BY id FOR KEY SHARE`

// sqlCompleteJobArrive also records the job as arrival $7 at join ($5, $6);
// arrival_join_id stays NULL when the join does not exist.
const sqlCompleteJobArrive = `
WITH u AS (
	UPDATE {schema}.ductwork_jobs AS j
	SET status = 'completed', output = $4, finished_at = now(),
		arrival_join_id = (SELECT jn.id FROM {schema}.ductwork_joins AS jn
			WHERE jn.run_id = j.run_id AND jn.node_id = $5 AND jn.scope = $6),
		arrival_slot = $7
	WHERE j.id = $1 AND j.fence = $2 AND j.process_id = $3 AND j.status = 'running'
	RETURNING j.id
)
SELECT CASE WHEN EXISTS (SELECT 1 FROM u) THEN 0
	ELSE {schema}.ductwork_raise('DW001', 'ductwork: stale claim') END`

const sqlInsertJobs = `
INSERT INTO {schema}.ductwork_jobs (run_id, node_id, scope, status, priority, input, due_at)
SELECT src.run_id, u.node_id, u.scope, 'pending', u.priority, u.input, now() + u.delay_us * interval '1 microsecond'
FROM (SELECT run_id FROM {schema}.ductwork_jobs WHERE id = $1) AS src,
	unnest($2::text[], $3::text[], $4::integer[], $5::bytea[], $6::bigint[])
		WITH ORDINALITY AS u(node_id, scope, priority, input, delay_us, ord)
ORDER BY u.ord`

// sqlInsertJobsGated is sqlInsertJobs for a plan with a job on a queue or
// with a gate (plans without keep the shorter statement).
const sqlInsertJobsGated = `
INSERT INTO {schema}.ductwork_jobs (run_id, node_id, scope, status, priority, input, due_at,
	queue, gated, gate_key, gate_limit, rate_key)
SELECT src.run_id, u.node_id, u.scope, 'pending', u.priority, u.input, now() + u.delay_us * interval '1 microsecond',
	u.queue, u.gate_key IS NOT NULL OR u.rate_key IS NOT NULL, u.gate_key, u.gate_limit, u.rate_key
FROM (SELECT run_id FROM {schema}.ductwork_jobs WHERE id = $1) AS src,
	unnest($2::text[], $3::text[], $4::integer[], $5::bytea[], $6::bigint[], $7::text[], $8::text[], $9::integer[], $10::text[])
		WITH ORDINALITY AS u(node_id, scope, priority, input, delay_us, queue, gate_key, gate_limit, rate_key, ord)
ORDER BY u.ord`

// sqlOpenJoins inserts join rows and, for those expecting no arrival, their
// join job at once. It returns the number of join jobs inserted.
const sqlOpenJoins = `
WITH oj AS (
	INSERT INTO {schema}.ductwork_joins (run_id, node_id, scope, expected, priority, delay_us, queue, gate_key, gate_limit, rate_key)
	SELECT src.run_id, u.node_id, u.scope, u.expected, u.priority, u.delay_us, u.queue, u.gate_key, u.gate_limit, u.rate_key
	FROM (SELECT run_id FROM {schema}.ductwork_jobs WHERE id = $1) AS src,
		unnest($2::text[], $3::text[], $4::integer[], $5::integer[], $6::bigint[], $7::text[], $8::text[], $9::integer[], $10::text[])
			WITH ORDINALITY AS u(node_id, scope, expected, priority, delay_us, queue, gate_key, gate_limit, rate_key, ord)
	ORDER BY u.ord
	RETURNING id, run_id, node_id, scope, expected, priority, delay_us, queue, gate_key, gate_limit, rate_key
), fired AS (
	INSERT INTO {schema}.ductwork_jobs (run_id, node_id, scope, status, priority, is_join, join_id, due_at,
		queue, gated, gate_key, gate_limit, rate_key)
	SELECT run_id, node_id, scope, 'pending', priority, true, id, now() + delay_us * interval '1 microsecond',
		queue, gate_key IS NOT NULL OR rate_key IS NOT NULL, gate_key, gate_limit, rate_key
	FROM oj
	WHERE expected = 0
	RETURNING id
)
SELECT count(*) FROM fired`

// sqlArrive counts the completing job $1 (whose arrival_join_id was set by
// sqlCompleteJobArrive) at its join; the arrival that reaches the expected
// count inserts the join job (Complete notifies after commit). A missing
// join, or one that already received its expected arrivals and fired,
// raises DW002.
const sqlArrive = `
WITH jn AS (
	UPDATE {schema}.ductwork_joins AS jn
	SET arrived = jn.arrived + 1
	FROM {schema}.ductwork_jobs AS j
	WHERE j.id = $1 AND jn.id = j.arrival_join_id AND jn.arrived < jn.expected
	RETURNING jn.id, jn.run_id, jn.node_id, jn.scope, jn.expected, jn.arrived, jn.priority, jn.delay_us,
		jn.queue, jn.gate_key, jn.gate_limit, jn.rate_key
), fired AS (
	INSERT INTO {schema}.ductwork_jobs (run_id, node_id, scope, status, priority, is_join, join_id, due_at,
		queue, gated, gate_key, gate_limit, rate_key)
	SELECT run_id, node_id, scope, 'pending', priority, true, id, now() + delay_us * interval '1 microsecond',
		queue, gate_key IS NOT NULL OR rate_key IS NOT NULL, gate_key, gate_limit, rate_key
	FROM jn
	WHERE arrived = expected
	RETURNING due_at
)
SELECT CASE WHEN EXISTS (SELECT 1 FROM jn) THEN 1
		ELSE {schema}.ductwork_raise('DW002', 'ductwork: arrival at a join that does not exist or already fired') END,
	(SELECT count(*) FROM fired)`

// sqlCompleteRun applies a completion's change to its run's outstanding work
// (Plan.CompleteRun and Plan.Detached): $4 is the change, $3 whether the job
// is the end node, $2 its output. The run completes when the count reaches 0
// while it is running; a halted run keeps the count and the output for when
// it is revived. Every SET expression sees the row as it was. The result is
// true only for the statement that completed the run.
const sqlCompleteRun = `
UPDATE {schema}.ductwork_runs
SET status = CASE WHEN status IN ('running', 'waiting') AND outstanding + $4 = 0 THEN 'completed' ELSE status END,
	output = CASE WHEN $3 THEN $2 ELSE output END,
	outstanding = outstanding + $4,
	updated_at = now()
WHERE id = (SELECT run_id FROM {schema}.ductwork_jobs WHERE id = $1) AND status IN ('running', 'waiting', 'halted')
RETURNING status = 'completed' AND outstanding = 0`

const sqlNotify = `SELECT pg_notify($1, '')`

// sqlClaimOutcome reads what became of a claim whose fenced write matched
// nothing: the job's status if it is still owned under that fence (a
// completed or failed status then means an earlier call with the same claim
// committed), and whether that claim's failure halted the run.
const sqlClaimOutcome = `
SELECT j.status, coalesce(r.status, ''),
	coalesce(r.halted_job_id = j.id AND r.halted_fence = j.fence, false)
FROM {schema}.ductwork_jobs AS j
LEFT JOIN {schema}.ductwork_runs AS r ON r.id = j.run_id
WHERE j.id = $1 AND j.fence = $2 AND j.process_id = $3`

// sqlFailRetry makes the job due again and records the failed execution
// ($7 its outcome) under the attempt it ran as.
const sqlFailRetry = `
WITH u AS (
	UPDATE {schema}.ductwork_jobs
	SET status = 'pending', attempt = attempt + 1, due_at = now() + $5::bigint * interval '1 microsecond',
		error = $4, error_stack = $6, process_id = NULL
	WHERE id = $1 AND fence = $2 AND process_id = $3 AND status = 'running'
	RETURNING id, run_id, node_id, scope, attempt - 1 AS attempt, crashes, fence, started_at
), e AS (
	INSERT INTO {schema}.ductwork_executions (` + execColumns + `)
	SELECT run_id, id, node_id, scope, attempt, crashes, fence, $3, started_at, now(), $7, $4, $6 FROM u
)
SELECT count(*) FROM u`

// sqlFailHalt fails the job and halts its run; the second count is 1 only for
// the statement that moved the run to halted. The failed execution stays on
// the job row, which says failed; a history row is written only when the
// outcome ($7) is another (a timeout), and the listing prefers it.
const sqlFailHalt = `
WITH j AS (
	UPDATE {schema}.ductwork_jobs
	SET status = 'failed', error = $4, error_stack = $5, finished_at = now()
	WHERE id = $1 AND fence = $2 AND process_id = $3 AND status = 'running'
	RETURNING id, run_id, node_id, scope, attempt, crashes, fence, started_at, finished_at
), e AS (
	INSERT INTO {schema}.ductwork_executions (` + execColumns + `)
	SELECT run_id, id, node_id, scope, attempt, crashes, fence, $3, started_at, finished_at, $7, $4, $5 FROM j
	WHERE $7 <> 'failed'
), r AS (
	UPDATE {schema}.ductwork_runs AS r
	SET status = 'halted', error = $4, halt_node = j.node_id, halt_scope = j.scope, halt_cause = $6,
		halt_attempt = j.attempt, halt_stack = $5, updated_at = now(),
		halted_job_id = $1, halted_fence = $2
	FROM j
	WHERE r.id = j.run_id AND r.status IN ('running', 'waiting')
	RETURNING r.id
)
SELECT (SELECT count(*) FROM j), (SELECT count(*) FROM r)`

// A release is not a crash (crashes is left as it is) unless the releaser
// says the execution was lost ($5, 0 or 1); the execution is recorded as
// released or crashed accordingly.
const sqlRelease = `
WITH j AS (
	UPDATE {schema}.ductwork_jobs
	SET status = 'pending', process_id = NULL, crashes = crashes + $5
	WHERE id = $1 AND fence = $2 AND process_id = $3 AND status = 'running'
	RETURNING id, run_id, node_id, scope, attempt, crashes - $5 AS crashes, fence, started_at
), e AS (
	INSERT INTO {schema}.ductwork_executions (` + execColumns + `)
	SELECT run_id, id, node_id, scope, attempt, crashes, fence, $3, started_at, now(),
		CASE WHEN $5 = 1 THEN 'crashed' ELSE 'released' END, '', '' FROM j
)
SELECT (SELECT count(*) FROM j),
	(SELECT count(*) FROM (SELECT pg_notify($4, '') WHERE EXISTS (SELECT 1 FROM j)) AS n)`

const sqlRegisterProcess = `
INSERT INTO {schema}.ductwork_processes (id, host, pid, definitions, started_at, heartbeat_at)
VALUES ($1, $2, $3, $4, now(), now())
ON CONFLICT (id) DO UPDATE
SET host = excluded.host, pid = excluded.pid, definitions = excluded.definitions, heartbeat_at = now()
RETURNING started_at`

// sqlHeartbeat also returns which runs of $2 are cancelled.
const sqlHeartbeat = `
WITH h AS (
	UPDATE {schema}.ductwork_processes SET heartbeat_at = clock_timestamp() WHERE id = $1 RETURNING heartbeat_at
)
SELECT h.heartbeat_at, ARRAY(
	SELECT r.id FROM {schema}.ductwork_runs AS r
	WHERE r.id = ANY($2::bigint[]) AND r.status = 'cancelled')
FROM h`

// sqlOwned lists the running jobs a process owns (served by the partial
// index on process_id of running rows).
const sqlOwned = `
SELECT id, fence FROM {schema}.ductwork_jobs WHERE process_id = $1 AND status = 'running' ORDER BY id`

const sqlDeregisterProcess = `
WITH j AS (
	UPDATE {schema}.ductwork_jobs
	SET status = 'pending', process_id = NULL
	WHERE process_id = $1 AND status = 'running'
	RETURNING id, run_id, node_id, scope, attempt, crashes, fence, started_at
), e AS (
	INSERT INTO {schema}.ductwork_executions (` + execColumns + `)
	SELECT run_id, id, node_id, scope, attempt, crashes, fence, $1, started_at, now(), 'released', '', '' FROM j
), p AS (
	DELETE FROM {schema}.ductwork_processes WHERE id = $1 RETURNING id
)
SELECT (SELECT count(*) FROM j), (SELECT count(*) FROM p),
	(SELECT count(*) FROM (SELECT pg_notify($2, '') WHERE EXISTS (SELECT 1 FROM j)) AS n)`

// sqlReap deletes stale processes (the DELETE re-checks staleness on the
// current row version, so concurrent reapers reap each process once) and
// resets their running jobs, plus running jobs whose owner has no row. The
// jobs are locked first (o), so that the crashed executions it records name
// the owner the reset clears.
const sqlReap = `
WITH dead AS (
	DELETE FROM {schema}.ductwork_processes
	WHERE id <> $1 AND heartbeat_at < now() - $2::bigint * interval '1 microsecond'
	RETURNING id
), o AS (
	SELECT j.id, j.process_id
	FROM {schema}.ductwork_jobs AS j
	WHERE j.status = 'running'
	  AND (j.process_id IN (SELECT id FROM dead)
	    OR (j.process_id IS NOT NULL
	      AND j.process_id <> $1
	      AND j.started_at < now() - $2::bigint * interval '1 microsecond'
	      AND NOT EXISTS (SELECT 1 FROM {schema}.ductwork_processes AS p WHERE p.id = j.process_id)))
	FOR UPDATE OF j
), j AS (
	UPDATE {schema}.ductwork_jobs AS j
	SET status = 'pending', process_id = NULL, crashes = j.crashes + 1
	FROM o
	WHERE j.id = o.id AND j.status = 'running'
	RETURNING j.id, j.run_id, j.node_id, j.scope, j.attempt, j.crashes - 1 AS crashes, j.fence, o.process_id, j.started_at
), e AS (
	INSERT INTO {schema}.ductwork_executions (` + execColumns + `)
	SELECT run_id, id, node_id, scope, attempt, crashes, fence, process_id, started_at, now(), 'crashed', '', '' FROM j
)
SELECT ARRAY(SELECT id FROM dead ORDER BY id), (SELECT count(*) FROM j),
	(SELECT count(*) FROM (SELECT pg_notify($3, '') WHERE EXISTS (SELECT 1 FROM j)) AS n)`

const runColumns = `id, pipeline, fingerprint, status, input, output, error, metadata, created_at, updated_at,
	halt_node, halt_scope, halt_cause, halt_attempt, halt_stack, identity`

const sqlGetRun = `SELECT ` + runColumns + ` FROM {schema}.ductwork_runs WHERE id = $1`

const sqlListRuns = `
SELECT ` + runColumns + `
FROM {schema}.ductwork_runs
WHERE ($1 = '' OR pipeline = $1) AND ($2 = '' OR status = $2) AND ($3::bigint <= 0 OR id < $3)
  AND ($5::timestamptz IS NULL OR created_at >= $5) AND ($6::timestamptz IS NULL OR created_at < $6)
ORDER BY id DESC
LIMIT $4`

const sqlListJobs = `
SELECT id, run_id, node_id, scope, status, input, output, error, error_stack, is_join, attempt, retry_base, crashes, fence,
	coalesce(process_id, ''), created_at, due_at, started_at, finished_at
FROM {schema}.ductwork_jobs
WHERE run_id = $1 AND ($2 = '' OR status = $2) AND id > $3
ORDER BY id
LIMIT $4`

const sqlListExecutions = `
SELECT job_id, run_id, node_id, scope, attempt, crashes, fence, process_id, started_at, finished_at, outcome, error, error_stack
FROM (
	SELECT ` + jobExecution + `
	FROM {schema}.ductwork_jobs AS j
	WHERE j.run_id = $1 AND ($2::bigint = 0 OR j.id = $2) AND (j.id > $3 OR (j.id = $3 AND j.fence > $4))
	  AND ` + jobHasExecution + `
	  AND NOT EXISTS (SELECT 1 FROM {schema}.ductwork_executions AS h
		WHERE h.run_id = j.run_id AND h.job_id = j.id AND h.fence = j.fence)
	UNION ALL
	SELECT h.job_id, h.run_id, h.node_id, h.scope, h.attempt, h.crashes, h.fence, h.process_id, h.started_at,
		h.finished_at, h.outcome, h.error, h.error_stack
	FROM {schema}.ductwork_executions AS h
	WHERE h.run_id = $1 AND ($2::bigint = 0 OR h.job_id = $2) AND (h.job_id > $3 OR (h.job_id = $3 AND h.fence > $4))
) AS x
ORDER BY job_id, fence
LIMIT $5`

// jobHasExecution holds for a job row (j) that holds its latest execution:
// running, or ended by a completion, a failure that halted or a cancel
// while it ran (a cancelled job that still names an owner). A pending job's
// previous executions, if any, are history rows.
const jobHasExecution = `j.fence > 0 AND (j.status IN ('running', 'completed', 'failed')
	OR (j.status = 'cancelled' AND j.process_id IS NOT NULL))`

// jobExecution renders the latest execution a job row (j) holds, in the
// columns of an execution row (job_id first); a running one has no end.
const jobExecution = `j.id AS job_id, j.run_id, j.node_id, j.scope, j.attempt, j.crashes, j.fence,
		coalesce(j.process_id, '') AS process_id, j.started_at,
		CASE WHEN j.status = 'running' THEN NULL ELSE j.finished_at END AS finished_at,
		CASE j.status WHEN 'running' THEN 'running' WHEN 'failed' THEN 'failed' WHEN 'cancelled' THEN 'cancelled'
			ELSE 'completed' END AS outcome,
		CASE WHEN j.status = 'failed' THEN j.error ELSE '' END AS error,
		CASE WHEN j.status = 'failed' THEN j.error_stack ELSE '' END AS error_stack`

// sqlPruneExecutions deletes, among the $2 oldest executions by ID (the
// order they ended in), those that finished more than $1 microseconds ago.
const sqlPruneExecutions = `
WITH o AS (
	SELECT id FROM {schema}.ductwork_executions ORDER BY id LIMIT $2
)
DELETE FROM {schema}.ductwork_executions AS e
USING o
WHERE e.id = o.id AND e.finished_at < now() - $1::bigint * interval '1 microsecond'`

// sqlCancelRun locks the run row FOR UPDATE first (see sqlLockRun), then
// cancels it; sqlCancelJobs, the next statement of the same transaction,
// cancels its pending and running jobs.
const sqlCancelRun = `
WITH l AS (
	SELECT id FROM {schema}.ductwork_runs WHERE id = $1 FOR UPDATE
)
UPDATE {schema}.ductwork_runs AS r
SET status = 'cancelled', error = $2, updated_at = now()
FROM l
WHERE r.id = l.id AND r.status IN ('running', 'waiting', 'halted')`

// The running jobs among them (those with an owner: pending jobs have
// none) end an execution, which stays on the job row: cancelled, with its
// owner and end.
const sqlCancelJobs = `
UPDATE {schema}.ductwork_jobs
SET status = 'cancelled', finished_at = now()
WHERE run_id = $1 AND status IN ('pending', 'running')
  AND EXISTS (SELECT 1 FROM {schema}.ductwork_runs WHERE id = $1 AND status = 'cancelled')`

const sqlRunExists = `SELECT EXISTS (SELECT 1 FROM {schema}.ductwork_runs WHERE id = $1)`

const sqlReviveRun = `
WITH r AS (
	UPDATE {schema}.ductwork_runs
	SET status = 'running', error = '', updated_at = now()
	WHERE id = $1 AND status = 'halted'
	RETURNING id
), j AS (
	UPDATE {schema}.ductwork_jobs AS j
	SET status = 'pending', retry_base = j.attempt, attempt = j.attempt + 1, due_at = now(), process_id = NULL, finished_at = NULL
	FROM r
	WHERE j.run_id = r.id AND j.status = 'failed'
	RETURNING j.id
), h AS (
	INSERT INTO {schema}.ductwork_executions (` + execColumns + `)
	SELECT f.run_id, f.id, f.node_id, f.scope, f.attempt, f.crashes, f.fence, coalesce(f.process_id, ''), f.started_at,
		f.finished_at, 'failed', f.error, f.error_stack
	FROM {schema}.ductwork_jobs AS f, r
	WHERE f.run_id = r.id AND f.status = 'failed'
	  AND NOT EXISTS (SELECT 1 FROM {schema}.ductwork_executions AS e
		WHERE e.run_id = f.run_id AND e.job_id = f.id AND e.fence = f.fence)
)
SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM j),
	(SELECT count(*) FROM (SELECT pg_notify($2, '') WHERE EXISTS (SELECT 1 FROM j)) AS n)`

const sqlSetValue = `
INSERT INTO {schema}.ductwork_values (run_id, key, value) VALUES ($1, $2, $3)
ON CONFLICT (run_id, key) DO NOTHING`

const sqlSetValueOverwrite = `
INSERT INTO {schema}.ductwork_values (run_id, key, value) VALUES ($1, $2, $3)
ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value`

const sqlGetValue = `SELECT value FROM {schema}.ductwork_values WHERE run_id = $1 AND key = $2`

const sqlStranded = `
SELECT r.pipeline, r.fingerprint, count(*)
FROM {schema}.ductwork_runs AS r
WHERE r.status IN ('running', 'waiting')
  AND NOT EXISTS (
	SELECT 1 FROM unnest($1::text[], $2::text[]) AS k(p, f)
	WHERE k.p = r.pipeline AND k.f = r.fingerprint)
GROUP BY r.pipeline, r.fingerprint
ORDER BY r.pipeline, r.fingerprint`

const sqlNow = `SELECT clock_timestamp()`

// Migration bookkeeping. The lock key pairs a constant with the schema's
// hash, so migrations of different schemas do not wait for each other.
const (
	sqlMigrateLock       = `SELECT pg_advisory_xact_lock(1685419107, hashtext($1))`
	sqlSchemaExists      = `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)`
	sqlCreateSchema      = `CREATE SCHEMA IF NOT EXISTS {schema}`
	sqlCreateMigrations  = `CREATE TABLE IF NOT EXISTS {schema}.ductwork_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`
	sqlAppliedMigrations = `SELECT version FROM {schema}.ductwork_migrations`
	sqlRecordMigration   = `INSERT INTO {schema}.ductwork_migrations (version, applied_at) VALUES ($1, now())`
)

// queries holds the statements rendered for one schema.
type queries struct {
	trigger, triggerKeyed, triggerExisting, claimOutcome, owned        string
	claim, claimNext, insertJobsGated, insertJobsClaim                 string
	gatedSelect, gatedClaim, limitRow, gateRunning, limitSetTAT        string
	releaseKey                                                         string
	completeJob, completeJobArrive, insertJobs, openJoins, arrive      string
	completeRun, notify, failRetry, failHalt, release, lockOwner       string
	completeJobRun, lockRuns, completeEnds, triggerMany                string
	lockRun, cancelJobs, lockClaim, listExecutions, pruneExecutions    string
	registerProcess, heartbeat, deregisterProcess, reap                string
	getRun, listRuns, listJobs, cancelRun, runExists, reviveRun        string
	setValue, setValueOverwrite, getValue, stranded, now               string
	createSchema, createMigrations, appliedMigrations, recordMigration string
	replacer                                                           *strings.Replacer
	sig                                                                signalQueries
}

// renderQueries renders every statement for schema, quoted as an identifier.
func renderQueries(schema string) queries {
	r := strings.NewReplacer("{schema}", pgx.Identifier{schema}.Sanitize())
	return queries{
		trigger:           r.Replace(sqlTrigger),
		triggerKeyed:      r.Replace(sqlTriggerKeyed),
		triggerExisting:   r.Replace(sqlTriggerExisting),
		releaseKey:        r.Replace(sqlReleaseKey),
		claimOutcome:      r.Replace(sqlClaimOutcome),
		owned:             r.Replace(sqlOwned),
		claim:             r.Replace(sqlClaim),
		claimNext:         r.Replace(sqlClaimNext),
		completeJob:       r.Replace(sqlCompleteJob),
		completeJobArrive: r.Replace(sqlCompleteJobArrive),
		insertJobs:        r.Replace(sqlInsertJobs),
		insertJobsGated:   r.Replace(sqlInsertJobsGated),
		insertJobsClaim:   r.Replace(sqlInsertJobsClaim),
		gatedSelect:       r.Replace(sqlGatedSelect),
		gatedClaim:        r.Replace(sqlGatedClaim),
		limitRow:          r.Replace(sqlLimitRow),
		gateRunning:       r.Replace(sqlGateRunning),
		limitSetTAT:       r.Replace(sqlLimitSetTAT),
		openJoins:         r.Replace(sqlOpenJoins),
		arrive:            r.Replace(sqlArrive),
		completeRun:       r.Replace(sqlCompleteRun),
		completeJobRun:    r.Replace(sqlCompleteJobRun),
		lockRuns:          r.Replace(sqlLockRuns),
		completeEnds:      r.Replace(sqlCompleteEnds),
		triggerMany:       r.Replace(sqlTriggerMany),
		notify:            sqlNotify,
		failRetry:         r.Replace(sqlFailRetry),
		failHalt:          r.Replace(sqlFailHalt),
		release:           r.Replace(sqlRelease),
		lockOwner:         r.Replace(sqlLockOwner),
		lockRun:           r.Replace(sqlLockRun),
		lockClaim:         r.Replace(sqlLockClaim),
		cancelJobs:        r.Replace(sqlCancelJobs),
		listExecutions:    r.Replace(sqlListExecutions),
		pruneExecutions:   r.Replace(sqlPruneExecutions),
		registerProcess:   r.Replace(sqlRegisterProcess),
		heartbeat:         r.Replace(sqlHeartbeat),
		deregisterProcess: r.Replace(sqlDeregisterProcess),
		reap:              r.Replace(sqlReap),
		getRun:            r.Replace(sqlGetRun),
		listRuns:          r.Replace(sqlListRuns),
		listJobs:          r.Replace(sqlListJobs),
		cancelRun:         r.Replace(sqlCancelRun),
		runExists:         r.Replace(sqlRunExists),
		reviveRun:         r.Replace(sqlReviveRun),
		setValue:          r.Replace(sqlSetValue),
		setValueOverwrite: r.Replace(sqlSetValueOverwrite),
		getValue:          r.Replace(sqlGetValue),
		stranded:          r.Replace(sqlStranded),
		now:               sqlNow,
		createSchema:      r.Replace(sqlCreateSchema),
		createMigrations:  r.Replace(sqlCreateMigrations),
		appliedMigrations: r.Replace(sqlAppliedMigrations),
		recordMigration:   r.Replace(sqlRecordMigration),
		replacer:          r,
		sig:               renderSignalQueries(r),
	}
}
