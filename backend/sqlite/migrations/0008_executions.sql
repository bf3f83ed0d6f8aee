-- Version 8: the execution history, one row per execution of a step
-- instance (a claim, from the claim to the write that ended it), written in
-- that write's transaction. IDs are handed out as executions end, so the
-- primary key's order is the order of finished_at: pruning reads the oldest
-- rows by ID. Listings of a run's executions use (run_id, id). outcome is
-- free text (completed, failed, timeout, crashed, released, cancelled).
-- Runs are also found by trigger key alone (partial index: unkeyed triggers
-- do not pay for it).

CREATE TABLE ductwork_executions (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL,
    job_id      INTEGER NOT NULL,
    node_id     TEXT    NOT NULL,
    scope       TEXT    NOT NULL DEFAULT '',
    attempt     INTEGER NOT NULL,
    crashes     INTEGER NOT NULL,
    fence       INTEGER NOT NULL,
    process_id  TEXT    NOT NULL DEFAULT '',
    started_at  INTEGER,
    finished_at INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    error       TEXT    NOT NULL DEFAULT '',
    error_stack TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX ductwork_executions_run_id ON ductwork_executions (run_id, id);
CREATE INDEX ductwork_runs_trigger_key_id ON ductwork_runs (trigger_key, id) WHERE trigger_key IS NOT NULL;
