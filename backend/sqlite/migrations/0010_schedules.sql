-- Ductwork SQLite schema, version 10: schedules.
--
-- One row per schedule, keyed by its name: the pipeline it triggers, its
-- cron spec and time zone, the missed-tick policy, whether it is paused, and
-- its progress: next_tick (the earliest tick not yet handled, unix
-- microseconds; due when the database's clock reaches it), last_tick and
-- last_run_id. A process fires a tick in one write transaction that checks
-- next_tick, triggers the run (its trigger key derived from the schedule's
-- name and the tick) and advances next_tick, so each tick starts one run.
-- Version 9 created a placeholder ductwork_schedules table that no code wrote;
-- it is replaced by this one.
DROP TABLE ductwork_schedules;
CREATE TABLE ductwork_schedules (
    name        TEXT    NOT NULL PRIMARY KEY,
    pipeline    TEXT    NOT NULL,
    spec        TEXT    NOT NULL,
    timezone    TEXT    NOT NULL,
    missed      TEXT    NOT NULL,
    paused      INTEGER NOT NULL DEFAULT 0,
    next_tick   INTEGER NOT NULL,
    last_tick   INTEGER,
    last_run_id INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
