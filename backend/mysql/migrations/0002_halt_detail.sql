-- Version 2: what halted a run, in columns of its own (the reason string
-- stays short and readable), and the panic stack of a job's last failure.
--
-- One column per statement: MySQL 8 has no ADD COLUMN IF NOT EXISTS, so
-- Migrate treats "duplicate column" (error 1060) as a statement already
-- applied, which keeps a migration cut short re-runnable.

ALTER TABLE ductwork_runs ADD COLUMN halt_node VARBINARY(255) NOT NULL DEFAULT '';
ALTER TABLE ductwork_runs ADD COLUMN halt_scope VARBINARY(255) NOT NULL DEFAULT '';
ALTER TABLE ductwork_runs ADD COLUMN halt_cause VARBINARY(32) NOT NULL DEFAULT '';
ALTER TABLE ductwork_runs ADD COLUMN halt_attempt INT NOT NULL DEFAULT 0;
ALTER TABLE ductwork_runs ADD COLUMN halt_stack MEDIUMBLOB NULL;
ALTER TABLE ductwork_jobs ADD COLUMN error_stack MEDIUMBLOB NULL;
