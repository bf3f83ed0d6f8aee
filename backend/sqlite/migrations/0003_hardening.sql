-- Version 3: run and job IDs are never reused, runs carry a random identity
-- (part of every step's idempotency key), jobs a retry base (a revive keeps
-- the attempt count and starts a fresh retry budget from it).
--
-- Without AUTOINCREMENT SQLite hands out max(id)+1, so the ID of a deleted or
-- rolled-back row comes back. AUTOINCREMENT keeps the highest ID ever
-- committed in sqlite_sequence; the backend also raises it past the IDs it
-- handed out in transactions that were rolled back (see ids.go). SQLite
-- cannot add AUTOINCREMENT to a table, so both tables are rebuilt: new table,
-- copy, drop, rename, indexes. The whole migration runs in Migrate's
-- transaction, so it applies wholly or not at all.

CREATE TABLE ductwork_runs_v2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline    TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    input       BLOB,
    output      BLOB,
    error       TEXT    NOT NULL DEFAULT '',
    metadata    TEXT    NOT NULL DEFAULT 'null',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    halt_node    TEXT    NOT NULL DEFAULT '',
    halt_scope   TEXT    NOT NULL DEFAULT '',
    halt_cause   TEXT    NOT NULL DEFAULT '',
    halt_attempt INTEGER NOT NULL DEFAULT 0,
    halt_stack   TEXT    NOT NULL DEFAULT '',
    identity    TEXT    NOT NULL DEFAULT ''
) STRICT;

INSERT INTO ductwork_runs_v2 (id, pipeline, fingerprint, status, input, output, error, metadata, created_at, updated_at,
    halt_node, halt_scope, halt_cause, halt_attempt, halt_stack)
SELECT id, pipeline, fingerprint, status, input, output, error, metadata, created_at, updated_at,
    halt_node, halt_scope, halt_cause, halt_attempt, halt_stack
FROM ductwork_runs;

DROP TABLE ductwork_runs;
ALTER TABLE ductwork_runs_v2 RENAME TO ductwork_runs;
CREATE INDEX ductwork_runs_status_pipeline ON ductwork_runs (status, pipeline, fingerprint);
CREATE INDEX ductwork_runs_pipeline_id ON ductwork_runs (pipeline, id);

CREATE TABLE ductwork_jobs_v2 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id          INTEGER NOT NULL,
    node_id         TEXT    NOT NULL,
    scope           TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    priority        INTEGER NOT NULL DEFAULT 0,
    input           BLOB,
    output          BLOB,
    error           TEXT    NOT NULL DEFAULT '',
    is_join         INTEGER NOT NULL DEFAULT 0,
    join_id         INTEGER,
    arrival_join_id INTEGER,
    arrival_slot    INTEGER,
    attempt         INTEGER NOT NULL DEFAULT 1,
    crashes         INTEGER NOT NULL DEFAULT 0,
    fence           INTEGER NOT NULL DEFAULT 0,
    process_id      TEXT,
    created_at      INTEGER NOT NULL,
    due_at          INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    error_stack     TEXT    NOT NULL DEFAULT '',
    retry_base      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (run_id, node_id, scope)
) STRICT;

INSERT INTO ductwork_jobs_v2 (id, run_id, node_id, scope, status, priority, input, output, error, is_join, join_id,
    arrival_join_id, arrival_slot, attempt, crashes, fence, process_id, created_at, due_at, started_at, finished_at,
    error_stack)
SELECT id, run_id, node_id, scope, status, priority, input, output, error, is_join, join_id,
    arrival_join_id, arrival_slot, attempt, crashes, fence, process_id, created_at, due_at, started_at, finished_at,
    error_stack
FROM ductwork_jobs;

DROP TABLE ductwork_jobs;
ALTER TABLE ductwork_jobs_v2 RENAME TO ductwork_jobs;
CREATE INDEX ductwork_jobs_claim ON ductwork_jobs (priority DESC, due_at, id)
    WHERE status = 'pending';
CREATE INDEX ductwork_jobs_arrival ON ductwork_jobs (arrival_join_id, arrival_slot)
    WHERE arrival_join_id IS NOT NULL;
CREATE INDEX ductwork_jobs_process ON ductwork_jobs (process_id)
    WHERE status = 'running';
CREATE INDEX ductwork_jobs_run_id ON ductwork_jobs (run_id, id);
