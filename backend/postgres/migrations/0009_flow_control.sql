-- Ductwork PostgreSQL schema, version 9: flow control.
--
-- Jobs and joins carry a queue ('' is the default queue) and, for steps with
-- limits, a gate: gate_key and gate_limit (a concurrency limit: at most
-- gate_limit running jobs with that key) and rate_key (a named rate limit).
-- gated is true when either is set. The ordinary claim reads only ungated
-- jobs of its queue, through its own partial index, so steps without limits
-- pay nothing for them; gated jobs have their own index and are claimed by
-- the gated claim, which counts running jobs by gate_key and keeps each rate
-- limit's state in ductwork_limits.
ALTER TABLE {schema}.ductwork_jobs
    ADD COLUMN queue      text    NOT NULL DEFAULT '',
    ADD COLUMN gated      boolean NOT NULL DEFAULT false,
    ADD COLUMN gate_key   text,
    ADD COLUMN gate_limit integer NOT NULL DEFAULT 0,
    ADD COLUMN rate_key   text;
ALTER TABLE {schema}.ductwork_joins
    ADD COLUMN queue      text    NOT NULL DEFAULT '',
    ADD COLUMN gate_key   text,
    ADD COLUMN gate_limit integer NOT NULL DEFAULT 0,
    ADD COLUMN rate_key   text;

DROP INDEX {schema}.ductwork_jobs_pending_idx;
CREATE INDEX ductwork_jobs_pending_idx ON {schema}.ductwork_jobs (queue, priority DESC, due_at, id)
    WHERE status = 'pending' AND NOT gated;
CREATE INDEX ductwork_jobs_gated_idx ON {schema}.ductwork_jobs (queue, priority DESC, due_at, id)
    WHERE status = 'pending' AND gated;
CREATE INDEX ductwork_jobs_gate_running_idx ON {schema}.ductwork_jobs (gate_key)
    WHERE status = 'running' AND gate_key IS NOT NULL;

-- One row per concurrency key or rate limit that a gated claim has used: the
-- row a claim locks before counting or taking, and, for a rate limit, its
-- theoretical arrival time.
CREATE TABLE {schema}.ductwork_limits (
    name text        PRIMARY KEY,
    tat  timestamptz
);

-- Schedules, as registered by the processes that serve them (for listings;
-- the tick's trigger key, not this row, makes each tick run once).
CREATE TABLE {schema}.ductwork_schedules (
    name       text        PRIMARY KEY,
    pipeline   text        NOT NULL,
    spec       text        NOT NULL,
    location   text        NOT NULL DEFAULT 'UTC',
    missed     text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_tick  timestamptz,
    next_tick  timestamptz
);
