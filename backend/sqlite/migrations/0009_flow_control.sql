-- Ductwork SQLite schema, version 9: flow control.
--
-- Jobs and joins carry a queue ('' is the default queue) and, for steps with
-- limits, a gate: gate_key and gate_limit (a concurrency limit: at most
-- gate_limit running jobs with that key) and rate_key (a named rate limit).
-- gated is 1 when either is set. The ordinary claim reads only ungated jobs
-- of its queue, through its own partial index, so steps without limits pay
-- nothing for them; gated jobs have their own index and are claimed by the
-- gated claim, which counts running jobs by gate_key (ductwork_jobs_gate_running)
-- and keeps each rate limit's state in ductwork_limits.
ALTER TABLE ductwork_jobs ADD COLUMN queue TEXT NOT NULL DEFAULT '';
ALTER TABLE ductwork_jobs ADD COLUMN gated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ductwork_jobs ADD COLUMN gate_key TEXT;
ALTER TABLE ductwork_jobs ADD COLUMN gate_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ductwork_jobs ADD COLUMN rate_key TEXT;
ALTER TABLE ductwork_joins ADD COLUMN queue TEXT NOT NULL DEFAULT '';
ALTER TABLE ductwork_joins ADD COLUMN gate_key TEXT;
ALTER TABLE ductwork_joins ADD COLUMN gate_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ductwork_joins ADD COLUMN rate_key TEXT;

DROP INDEX ductwork_jobs_claim;
CREATE INDEX ductwork_jobs_claim ON ductwork_jobs (queue, priority DESC, due_at, id)
    WHERE status = 'pending' AND gated = 0;
CREATE INDEX ductwork_jobs_gated ON ductwork_jobs (queue, priority DESC, due_at, id)
    WHERE status = 'pending' AND gated = 1;
CREATE INDEX ductwork_jobs_gate_running ON ductwork_jobs (gate_key)
    WHERE status = 'running' AND gate_key IS NOT NULL;

-- One row per concurrency key or rate limit that a gated claim has used:
-- the row a claim locks (SQLite: the write lock) before counting or taking,
-- and, for a rate limit, its theoretical arrival time (unix microseconds).
CREATE TABLE ductwork_limits (
    name TEXT    PRIMARY KEY,
    tat  INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Schedules, as registered by the processes that serve them (for listings;
-- the tick's trigger key, not this row, makes each tick run once).
CREATE TABLE ductwork_schedules (
    name       TEXT    PRIMARY KEY,
    pipeline   TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    location   TEXT    NOT NULL DEFAULT 'UTC',
    missed     TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_tick  INTEGER,
    next_tick  INTEGER
) STRICT;
