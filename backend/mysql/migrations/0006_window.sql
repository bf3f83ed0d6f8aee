-- Version 6: what the window (CLI, dashboard) reads. Definitions are stored
-- once per version, so any tool can draw a run's graph without the
-- pipeline's code; the indexes serve the run listings (newest first, keyset
-- on id) by pipeline and status, and by time (status alone is served by
-- ductwork_runs_status_id of version 1). A CREATE INDEX that an interrupted
-- Migrate already applied (error 1061) counts as applied.

CREATE TABLE IF NOT EXISTS ductwork_definitions (
  pipeline    VARBINARY(255) NOT NULL,
  fingerprint VARBINARY(255) NOT NULL,
  shape       MEDIUMBLOB NOT NULL,
  created_at  BIGINT NOT NULL,
  PRIMARY KEY (pipeline, fingerprint)
) ENGINE=InnoDB;
CREATE INDEX ductwork_runs_pipeline_status_id ON ductwork_runs (pipeline, status, id);
CREATE INDEX ductwork_runs_created_at ON ductwork_runs (created_at, id);
