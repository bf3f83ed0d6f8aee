-- Ductwork schema, version 11: the execution history keeps only the
-- executions a job leaves behind (a retried failure, a crash, a release, the
-- failure a revive re-runs); a job's latest execution stays on its job row.
-- Listings read both by job, then fence, so the history's listing index
-- becomes (run_id, job_id, fence), which also finds the history row of one
-- execution (a job row whose execution is there is left out of a listing).
-- Rows written before this version stay (a listing shows each execution
-- once) and go with pruning. The ALTER TABLE (applied whole or not at all)
-- runs only while the old key exists: rerunning this version after an
-- interruption is a no-op.
SET @ductwork_ddl = IF((SELECT COUNT(*) FROM information_schema.statistics
    WHERE table_schema = DATABASE() AND table_name = 'ductwork_executions' AND index_name = 'ductwork_executions_run') > 0,
  'ALTER TABLE ductwork_executions DROP KEY ductwork_executions_run, ADD KEY ductwork_executions_run_job (run_id, job_id, fence)',
  'DO 0');
PREPARE ductwork_stmt FROM @ductwork_ddl;
EXECUTE ductwork_stmt;
DEALLOCATE PREPARE ductwork_stmt;
