-- Ductwork schema, version 5: what lets a caller learn the outcome of a write
-- whose reply was lost.
--
-- trigger_key: a trigger's idempotency key, unique per pipeline (NULLs do not
-- collide), so that a retried trigger finds the run the first attempt started.
-- halted_job_id, halted_fence: the claim whose failure halted the run, so that
-- a retried halt can tell it was its own (and run OnHalt exactly once).
--
-- MySQL 8 has no ADD COLUMN IF NOT EXISTS, so the one ALTER TABLE (applied
-- whole or not at all) runs only when the column is missing: rerunning this
-- version after an interruption is a no-op.
SET @ductwork_ddl = IF((SELECT COUNT(*) FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = 'ductwork_runs' AND column_name = 'trigger_key') = 0,
  'ALTER TABLE ductwork_runs ADD COLUMN trigger_key VARBINARY(255) NULL, ADD COLUMN halted_job_id BIGINT NULL, ADD COLUMN halted_fence BIGINT NULL, ADD UNIQUE KEY ductwork_runs_trigger_key (pipeline, trigger_key)',
  'DO 0');
PREPARE ductwork_stmt FROM @ductwork_ddl;
EXECUTE ductwork_stmt;
DEALLOCATE PREPARE ductwork_stmt;
