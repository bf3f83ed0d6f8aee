-- Ductwork schema, version 1. Times are integer unix microseconds taken
-- from SQLite's clock. Tables are STRICT (SQLite 3.37 or newer).

CREATE TABLE ductwork_runs (
    id          INTEGER PRIMARY KEY,
    pipeline    TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    input       BLOB,
    output      BLOB,
    error       TEXT    NOT NULL DEFAULT '',
    metadata    TEXT    NOT NULL DEFAULT 'null',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX ductwork_runs_status_pipeline ON ductwork_runs (status, pipeline, fingerprint);
CREATE INDEX ductwork_runs_pipeline_id ON ductwork_runs (pipeline, id);

CREATE TABLE ductwork_jobs (
    id              INTEGER PRIMARY KEY,
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
    UNIQUE (run_id, node_id, scope)
) STRICT;

-- Serves the claim: pending jobs in claim order.
CREATE INDEX ductwork_jobs_claim ON ductwork_jobs (priority DESC, due_at, id)
    WHERE status = 'pending';
-- Join inputs in slot order.
CREATE INDEX ductwork_jobs_arrival ON ductwork_jobs (arrival_join_id, arrival_slot)
    WHERE arrival_join_id IS NOT NULL;
-- The reaper and DeregisterProcess: running jobs by owner.
CREATE INDEX ductwork_jobs_process ON ductwork_jobs (process_id)
    WHERE status = 'running';
-- Listings of one run's jobs.
CREATE INDEX ductwork_jobs_run_id ON ductwork_jobs (run_id, id);

CREATE TABLE ductwork_joins (
    id       INTEGER PRIMARY KEY,
    run_id   INTEGER NOT NULL,
    node_id  TEXT    NOT NULL,
    scope    TEXT    NOT NULL,
    expected INTEGER NOT NULL,
    arrived  INTEGER NOT NULL DEFAULT 0,
    priority INTEGER NOT NULL DEFAULT 0,
    delay_us INTEGER NOT NULL DEFAULT 0,
    UNIQUE (run_id, node_id, scope)
) STRICT;

CREATE TABLE ductwork_processes (
    id           TEXT    PRIMARY KEY,
    host         TEXT    NOT NULL DEFAULT '',
    pid          INTEGER NOT NULL DEFAULT 0,
    definitions  TEXT    NOT NULL DEFAULT '[]',
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
) STRICT;

CREATE TABLE ductwork_values (
    run_id INTEGER NOT NULL,
    key    TEXT    NOT NULL,
    value  BLOB,
    PRIMARY KEY (run_id, key)
) STRICT;
