-- Version 6: what the window (CLI, dashboard) reads. Definitions are stored
-- once per version, so any tool can draw a run's graph without the
-- pipeline's code; the indexes serve the run listings (newest first, keyset
-- on id) by status, by pipeline and status, and by time.

CREATE TABLE ductwork_definitions (
    pipeline    TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    shape       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (pipeline, fingerprint)
) STRICT;
CREATE INDEX ductwork_runs_status_id ON ductwork_runs (status, id);
CREATE INDEX ductwork_runs_pipeline_status_id ON ductwork_runs (pipeline, status, id);
CREATE INDEX ductwork_runs_created_at ON ductwork_runs (created_at, id);
