-- Version 7: durable sleeps and typed signals. A job that waits (wait_kind
-- 'sleep' or 'signal') holds nothing until it is due; an await's job names
-- its signal and key, and receives the signal delivered to it. Signals are
-- rows of their own: kept until an await consumes them (a TargetAll signal
-- is never consumed).

ALTER TABLE {schema}.ductwork_jobs
    ADD COLUMN wait_kind text NOT NULL DEFAULT '',
    ADD COLUMN signal_name text,
    ADD COLUMN signal_key text,
    ADD COLUMN signal_id bigint,
    ADD COLUMN signal_payload bytea;

-- Delivery: the awaits of a run waiting for a signal.
CREATE INDEX ductwork_jobs_awaiting_idx ON {schema}.ductwork_jobs (run_id, signal_name)
    WHERE status = 'pending' AND signal_name IS NOT NULL AND signal_id IS NULL;

CREATE TABLE {schema}.ductwork_signals (
    id              bigserial   PRIMARY KEY,
    run_id          bigint      NOT NULL,
    name            text        NOT NULL,
    target_kind     smallint    NOT NULL DEFAULT 0,
    target          text        NOT NULL DEFAULT '',
    payload         bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    consumed_job_id bigint,
    consumed_at     timestamptz
);

CREATE INDEX ductwork_signals_run_idx ON {schema}.ductwork_signals (run_id, name, id);
-- The delivery sweep: signals not consumed yet.
CREATE INDEX ductwork_signals_open_idx ON {schema}.ductwork_signals (id) WHERE consumed_job_id IS NULL;
