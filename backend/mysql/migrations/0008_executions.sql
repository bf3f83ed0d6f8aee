-- Version 8: the execution history, one row per execution of a step
-- instance (a claim, from the claim to the write that ended it), written in
-- that write's transaction. IDs are handed out as executions end, so the
-- primary key's order is the order of finished_at: pruning reads the oldest
-- rows by ID. Listings of a run's executions use (run_id, id). outcome is
-- free text (completed, failed, timeout, crashed, released, cancelled).
-- Runs are also found by trigger key alone (the unique key leads with the
-- pipeline). A CREATE INDEX that an interrupted Migrate already applied
-- (error 1061) counts as applied.

CREATE TABLE IF NOT EXISTS ductwork_executions (
  id          BIGINT NOT NULL AUTO_INCREMENT,
  run_id      BIGINT NOT NULL,
  job_id      BIGINT NOT NULL,
  node_id     VARBINARY(255) NOT NULL,
  scope       VARBINARY(255) NOT NULL,
  attempt     INT NOT NULL,
  crashes     INT NOT NULL,
  fence       BIGINT NOT NULL,
  process_id  VARBINARY(255) NOT NULL DEFAULT '',
  started_at  BIGINT NULL,
  finished_at BIGINT NOT NULL,
  outcome     VARBINARY(32) NOT NULL,
  error       MEDIUMBLOB NULL,
  error_stack MEDIUMBLOB NULL,
  PRIMARY KEY (id),
  KEY ductwork_executions_run (run_id, id)
) ENGINE=InnoDB;
CREATE INDEX ductwork_runs_key_id ON ductwork_runs (trigger_key, id);
