-- Version 7: durable sleeps and typed signals. A job that waits (wait_kind
-- 'sleep' or 'signal') holds nothing until it is due; an await's job names
-- its signal and key, and receives the signal delivered to it. Signals are
-- rows of their own: kept until an await consumes them (a TargetAll signal
-- is never consumed).

ALTER TABLE ductwork_jobs ADD COLUMN wait_kind TEXT NOT NULL DEFAULT '';
ALTER TABLE ductwork_jobs ADD COLUMN signal_name TEXT;
ALTER TABLE ductwork_jobs ADD COLUMN signal_key TEXT;
ALTER TABLE ductwork_jobs ADD COLUMN signal_id INTEGER;
ALTER TABLE ductwork_jobs ADD COLUMN signal_payload BLOB;

-- Delivery: the awaits of a run waiting for a signal.
CREATE INDEX ductwork_jobs_awaiting ON ductwork_jobs (run_id, signal_name)
    WHERE status = 'pending' AND signal_name IS NOT NULL AND signal_id IS NULL;

CREATE TABLE ductwork_signals (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id          INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    target_kind     INTEGER NOT NULL DEFAULT 0,
    target          TEXT    NOT NULL DEFAULT '',
    payload         BLOB,
    created_at      INTEGER NOT NULL,
    consumed_job_id INTEGER,
    consumed_at     INTEGER
) STRICT;

CREATE INDEX ductwork_signals_run ON ductwork_signals (run_id, name, id);
-- The delivery sweep: signals not consumed yet.
CREATE INDEX ductwork_signals_open ON ductwork_signals (id) WHERE consumed_job_id IS NULL;
