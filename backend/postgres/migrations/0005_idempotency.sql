-- Ductwork PostgreSQL schema, version 5: what lets a caller learn the outcome
-- of a write whose reply was lost.
--
-- trigger_key: a trigger's idempotency key, unique per pipeline, so that a
-- retried trigger finds the run the first attempt started.
-- halted_job_id, halted_fence: the claim whose failure halted the run, so that
-- a retried halt can tell it was its own (and run OnHalt exactly once).
ALTER TABLE {schema}.ductwork_runs
    ADD COLUMN trigger_key   text,
    ADD COLUMN halted_job_id bigint,
    ADD COLUMN halted_fence  bigint;
CREATE UNIQUE INDEX ductwork_runs_trigger_key_idx ON {schema}.ductwork_runs (pipeline, trigger_key)
    WHERE trigger_key IS NOT NULL;
