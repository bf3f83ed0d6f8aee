-- Version 7: durable sleeps and typed signals. A job that waits (wait_kind
-- 'sleep' or 'signal') holds nothing until it is due; an await's job names
-- its signal and key, and receives the signal delivered to it. Signals are
-- rows of their own: kept until an await consumes them (a TargetAll signal
-- is never consumed). Delivery finds a run's awaits through the unique
-- (run_id, node_id, scope) index, so the hot jobs table gets no new index.
-- A duplicate column or index (1060, 1061) counts as applied.

ALTER TABLE ductwork_jobs ADD COLUMN wait_kind VARBINARY(16) NOT NULL DEFAULT '';
ALTER TABLE ductwork_jobs ADD COLUMN signal_name VARBINARY(255) NULL;
ALTER TABLE ductwork_jobs ADD COLUMN signal_key VARBINARY(255) NULL;
ALTER TABLE ductwork_jobs ADD COLUMN signal_id BIGINT NULL;
ALTER TABLE ductwork_jobs ADD COLUMN signal_payload LONGBLOB NULL;

CREATE TABLE IF NOT EXISTS ductwork_signals (
  id              BIGINT NOT NULL AUTO_INCREMENT,
  run_id          BIGINT NOT NULL,
  name            VARBINARY(255) NOT NULL,
  target_kind     TINYINT NOT NULL DEFAULT 0,
  target          VARBINARY(255) NOT NULL DEFAULT '',
  payload         LONGBLOB NULL,
  created_at      BIGINT NOT NULL,
  consumed_job_id BIGINT NULL,
  consumed_at     BIGINT NULL,
  PRIMARY KEY (id),
  KEY ductwork_signals_run (run_id, name, id),
  KEY ductwork_signals_open (consumed_job_id, id)
) ENGINE=InnoDB;
