-- Version 2: what halted a run, in columns of its own (the reason string
-- stays short and readable), and the panic stack of a job's last failure.

ALTER TABLE ductwork_runs ADD COLUMN halt_node TEXT NOT NULL DEFAULT '';
ALTER TABLE ductwork_runs ADD COLUMN halt_scope TEXT NOT NULL DEFAULT '';
ALTER TABLE ductwork_runs ADD COLUMN halt_cause TEXT NOT NULL DEFAULT '';
ALTER TABLE ductwork_runs ADD COLUMN halt_attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ductwork_runs ADD COLUMN halt_stack TEXT NOT NULL DEFAULT '';
ALTER TABLE ductwork_jobs ADD COLUMN error_stack TEXT NOT NULL DEFAULT '';
