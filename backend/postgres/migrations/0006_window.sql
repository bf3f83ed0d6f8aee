-- Version 6: what the window (CLI, dashboard) reads. Definitions are stored
-- once per version, so any tool can draw a run's graph without the
-- pipeline's code; the indexes serve the run listings (newest first, keyset
-- on id) by status, by pipeline and status, and by time.

CREATE TABLE {schema}.ductwork_definitions (
    pipeline    text        NOT NULL,
    fingerprint text        NOT NULL,
    shape       jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, fingerprint)
);
CREATE INDEX ductwork_runs_status_id_idx ON {schema}.ductwork_runs (status, id);
CREATE INDEX ductwork_runs_pipeline_status_id_idx ON {schema}.ductwork_runs (pipeline, status, id);
CREATE INDEX ductwork_runs_created_at_idx ON {schema}.ductwork_runs (created_at, id);
