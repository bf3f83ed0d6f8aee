-- Ductwork PostgreSQL schema, version 11: the execution history keeps only
-- the executions a job leaves behind (a retried failure, a crash, a release,
-- the failure a revive re-runs); a job's latest execution stays on its job
-- row. Listings read both by job, then fence, so the history's listing index
-- becomes (run_id, job_id, fence), which also finds the history row of one
-- execution (a job row whose execution is there is left out of a listing).
-- Rows written before this version stay (a listing shows each execution
-- once) and go with pruning.
CREATE INDEX ductwork_executions_run_job_idx ON {schema}.ductwork_executions (run_id, job_id, fence);
DROP INDEX {schema}.ductwork_executions_run_id_idx;
