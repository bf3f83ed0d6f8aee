-- Ductwork MySQL schema, version 4: the run's outstanding work, so a run whose
-- branches end detached completes when the last of them finishes. It counts
-- 1 for the end node until that finishes, plus every pending job and open
-- join on a detached branch; completions change it in their own transaction,
-- and the one that brings it to 0 completes the run. Runs started before
-- this version have no detached branches: 1 while unfinished, 0 once
-- completed.
--
-- MySQL 8 has no ADD COLUMN IF NOT EXISTS, and every statement here must be
-- safe to run again (DDL is not transactional), so the ALTER is prepared
-- only when the column is missing.
SET @ductwork_ddl = (SELECT IF(COUNT(*) = 0,
    'ALTER TABLE ductwork_runs ADD COLUMN outstanding INT NOT NULL DEFAULT 1',
    'DO 0')
  FROM information_schema.columns
  WHERE table_schema = DATABASE() AND table_name = 'ductwork_runs' AND column_name = 'outstanding');
PREPARE ductwork_ddl FROM @ductwork_ddl;
EXECUTE ductwork_ddl;
DEALLOCATE PREPARE ductwork_ddl;
UPDATE ductwork_runs SET outstanding = 0 WHERE status = 'completed';
