-- Version 8: the execution history, one row per execution of a step
-- instance (a claim, from the claim to the write that ended it), written by
-- that write's own statement. IDs are handed out as executions end, so the
-- primary key's order is the order of finished_at, give or take the commits
-- in flight: pruning reads the oldest rows by ID. Listings of a run's
-- executions use (run_id, id). outcome is free text (completed, failed,
-- timeout, crashed, released, cancelled): new outcomes need no migration.
-- Runs are also found by trigger key alone (the unique index leads with the
-- pipeline); the index is partial, so unkeyed triggers do not pay for it.

CREATE TABLE {schema}.ductwork_executions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      bigint      NOT NULL,
    job_id      bigint      NOT NULL,
    node_id     text        NOT NULL,
    scope       text        NOT NULL DEFAULT '',
    attempt     integer     NOT NULL,
    crashes     integer     NOT NULL,
    fence       bigint      NOT NULL,
    process_id  text        NOT NULL DEFAULT '',
    started_at  timestamptz,
    finished_at timestamptz NOT NULL DEFAULT now(),
    outcome     text        NOT NULL,
    error       text        NOT NULL DEFAULT '',
    error_stack text        NOT NULL DEFAULT ''
);
ALTER TABLE {schema}.ductwork_executions SET (autovacuum_vacuum_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.05);
CREATE INDEX ductwork_executions_run_id_idx ON {schema}.ductwork_executions (run_id, id);
CREATE INDEX ductwork_runs_trigger_key_id_idx ON {schema}.ductwork_runs (trigger_key, id)
    WHERE trigger_key IS NOT NULL;
