-- Version 10: schedules. One row per schedule, keyed by its name: the
-- pipeline it triggers, its cron spec and time zone, the missed-tick policy,
-- whether it is paused, and its progress: next_tick (the earliest tick not
-- yet handled; due when the database's clock reaches it), last_tick and
-- last_run_id. A process fires a tick by locking the row and advancing
-- next_tick in the transaction that triggers the run, whose trigger key is
-- derived from the schedule's name and the tick, so each tick starts one run.
-- Version 9 created a placeholder ductwork_schedules table that no code wrote;
-- it is replaced by this one.
DROP TABLE {schema}.ductwork_schedules;
CREATE TABLE {schema}.ductwork_schedules (
    name        text        PRIMARY KEY,
    pipeline    text        NOT NULL,
    spec        text        NOT NULL,
    timezone    text        NOT NULL,
    missed      text        NOT NULL,
    paused      boolean     NOT NULL DEFAULT false,
    next_tick   timestamptz NOT NULL,
    last_tick   timestamptz,
    last_run_id bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
