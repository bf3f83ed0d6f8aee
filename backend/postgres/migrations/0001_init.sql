-- Ductwork PostgreSQL schema, version 1.
-- {schema} is replaced by the quoted schema name (Config.Schema) before execution.

CREATE TABLE {schema}.ductwork_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline    text        NOT NULL,
    fingerprint text        NOT NULL,
    status      text        NOT NULL,
    input       bytea,
    output      bytea,
    error       text        NOT NULL DEFAULT '',
    metadata    jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ductwork_runs_status_pipeline_idx ON {schema}.ductwork_runs (status, pipeline);
CREATE INDEX ductwork_runs_pipeline_id_idx ON {schema}.ductwork_runs (pipeline, id);

-- Jobs carry no foreign key to runs: the check and the KEY SHARE lock it takes
-- on the run row would sit on the hot path of every fan-out insert.
CREATE TABLE {schema}.ductwork_jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          bigint      NOT NULL,
    node_id         text        NOT NULL,
    scope           text        NOT NULL DEFAULT '',
    status          text        NOT NULL,
    priority        integer     NOT NULL DEFAULT 0,
    input           bytea,
    output          bytea,
    error           text        NOT NULL DEFAULT '',
    is_join         boolean     NOT NULL DEFAULT false,
    join_id         bigint,
    arrival_join_id bigint,
    arrival_slot    integer,
    attempt         integer     NOT NULL DEFAULT 1,
    crashes         integer     NOT NULL DEFAULT 0,
    fence           bigint      NOT NULL DEFAULT 0,
    process_id      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    due_at          timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    CONSTRAINT ductwork_jobs_instance_key UNIQUE (run_id, node_id, scope)
);
-- A queue table: rows churn, so vacuum and analyze it early and often.
ALTER TABLE {schema}.ductwork_jobs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
-- Serves the claim: only pending rows, in claim order.
CREATE INDEX ductwork_jobs_pending_idx ON {schema}.ductwork_jobs (priority DESC, due_at, id)
    WHERE status = 'pending';
CREATE INDEX ductwork_jobs_arrival_idx ON {schema}.ductwork_jobs (arrival_join_id, arrival_slot)
    WHERE arrival_join_id IS NOT NULL;
-- Serves the reaper and deregistration: only running rows.
CREATE INDEX ductwork_jobs_process_idx ON {schema}.ductwork_jobs (process_id)
    WHERE status = 'running';
CREATE INDEX ductwork_jobs_run_id_idx ON {schema}.ductwork_jobs (run_id, id);

CREATE TABLE {schema}.ductwork_joins (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id   bigint  NOT NULL,
    node_id  text    NOT NULL,
    scope    text    NOT NULL DEFAULT '',
    expected integer NOT NULL,
    arrived  integer NOT NULL DEFAULT 0,
    priority integer NOT NULL DEFAULT 0,
    delay_us bigint  NOT NULL DEFAULT 0,
    CONSTRAINT ductwork_joins_instance_key UNIQUE (run_id, node_id, scope)
);

CREATE TABLE {schema}.ductwork_processes (
    id           text PRIMARY KEY,
    host         text        NOT NULL DEFAULT '',
    pid          integer     NOT NULL DEFAULT 0,
    definitions  jsonb       NOT NULL DEFAULT '[]',
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.ductwork_values (
    run_id bigint NOT NULL REFERENCES {schema}.ductwork_runs (id) ON DELETE CASCADE,
    key    text   NOT NULL,
    value  bytea,
    PRIMARY KEY (run_id, key)
);

-- ductwork_raise aborts the statement (and the pipelined batch it is part of)
-- with a Ductwork SQLSTATE: DW001 stale claim, DW002 join not found.
CREATE FUNCTION {schema}.ductwork_raise(code text, msg text) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = msg;
END
$$;
