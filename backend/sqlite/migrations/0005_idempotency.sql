-- Ductwork SQLite schema, version 5: what lets a caller learn the outcome of
-- a write whose reply was lost.
--
-- trigger_key: a trigger's idempotency key, unique per pipeline, so that a
-- retried trigger finds the run the first attempt started.
-- halted_job_id, halted_fence: the claim whose failure halted the run, so that
-- a retried halt can tell it was its own (and run OnHalt exactly once).
ALTER TABLE ductwork_runs ADD COLUMN trigger_key TEXT;
ALTER TABLE ductwork_runs ADD COLUMN halted_job_id INTEGER;
ALTER TABLE ductwork_runs ADD COLUMN halted_fence INTEGER;
CREATE UNIQUE INDEX ductwork_runs_trigger_key ON ductwork_runs (pipeline, trigger_key)
    WHERE trigger_key IS NOT NULL;
