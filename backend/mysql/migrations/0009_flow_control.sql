-- Ductwork schema, version 9: flow control.
--
-- Jobs and joins carry a queue ('' is the default queue) and, for steps with
-- limits, a gate: gate_key and gate_limit (a concurrency limit: at most
-- gate_limit running jobs with that key) and rate_key (a named rate limit).
-- gated is 1 when either is set. The ordinary claim reads only ungated jobs
-- of its queue (the claim index leads with status, gated, queue), so steps
-- without limits pay nothing for them; the gated claim counts running jobs
-- by gate_key and keeps each rate limit's state in ductwork_limits.
--
-- Each ALTER TABLE (applied whole or not at all) runs only when its column
-- is missing: rerunning this version after an interruption is a no-op.
SET @ductwork_ddl = IF((SELECT COUNT(*) FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = 'ductwork_jobs' AND column_name = 'gated') = 0,
  'ALTER TABLE ductwork_jobs ADD COLUMN queue VARBINARY(64) NOT NULL DEFAULT '''', ADD COLUMN gated TINYINT NOT NULL DEFAULT 0, ADD COLUMN gate_key VARBINARY(255) NULL, ADD COLUMN gate_limit INT NOT NULL DEFAULT 0, ADD COLUMN rate_key VARBINARY(255) NULL, DROP KEY ductwork_jobs_claim, ADD KEY ductwork_jobs_claim (status, gated, queue, priority DESC, due_at, id), ADD KEY ductwork_jobs_gate_running (gate_key, status)',
  'DO 0');
PREPARE ductwork_stmt FROM @ductwork_ddl;
EXECUTE ductwork_stmt;
DEALLOCATE PREPARE ductwork_stmt;
SET @ductwork_ddl = IF((SELECT COUNT(*) FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = 'ductwork_joins' AND column_name = 'gate_key') = 0,
  'ALTER TABLE ductwork_joins ADD COLUMN queue VARBINARY(64) NOT NULL DEFAULT '''', ADD COLUMN gate_key VARBINARY(255) NULL, ADD COLUMN gate_limit INT NOT NULL DEFAULT 0, ADD COLUMN rate_key VARBINARY(255) NULL',
  'DO 0');
PREPARE ductwork_stmt FROM @ductwork_ddl;
EXECUTE ductwork_stmt;
DEALLOCATE PREPARE ductwork_stmt;

-- One row per concurrency key or rate limit that a gated claim has used: the
-- row a claim locks before counting or taking, and, for a rate limit, its
-- theoretical arrival time (unix microseconds).
CREATE TABLE IF NOT EXISTS ductwork_limits (
  name VARBINARY(255) NOT NULL,
  tat  BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (name)
) ENGINE=InnoDB;

-- Schedules, as registered by the processes that serve them (for listings;
-- the tick's trigger key, not this row, makes each tick run once).
CREATE TABLE IF NOT EXISTS ductwork_schedules (
  name       VARBINARY(255) NOT NULL,
  pipeline   VARBINARY(255) NOT NULL,
  spec       VARBINARY(255) NOT NULL,
  location   VARBINARY(255) NOT NULL DEFAULT 'UTC',
  missed     VARBINARY(16) NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  last_tick  BIGINT NULL,
  next_tick  BIGINT NULL,
  PRIMARY KEY (name)
) ENGINE=InnoDB;
