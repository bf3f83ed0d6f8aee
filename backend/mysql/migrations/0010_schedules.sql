-- Version 10: schedules. One row per schedule, keyed by its name: the
-- pipeline it triggers, its cron spec and time zone, the missed-tick policy,
-- whether it is paused, and its progress: next_tick (the earliest tick not
-- yet handled, unix microseconds; due when the database's clock reaches it),
-- last_tick and last_run_id. A process fires a tick by locking the row and
-- advancing next_tick in the transaction that triggers the run, whose
-- trigger key is derived from the schedule's name and the tick, so each tick
-- starts one run.
-- Version 9 created a placeholder ductwork_schedules table that no code wrote;
-- it is replaced by this one.
DROP TABLE IF EXISTS ductwork_schedules;
CREATE TABLE IF NOT EXISTS ductwork_schedules (
  name        VARBINARY(255) NOT NULL,
  pipeline    VARBINARY(255) NOT NULL,
  spec        VARBINARY(255) NOT NULL,
  timezone    VARBINARY(255) NOT NULL,
  missed      VARBINARY(16)  NOT NULL,
  paused      BOOLEAN NOT NULL DEFAULT FALSE,
  next_tick   BIGINT NOT NULL,
  last_tick   BIGINT NULL,
  last_run_id BIGINT NULL,
  created_at  BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL,
  PRIMARY KEY (name)
) ENGINE=InnoDB;
