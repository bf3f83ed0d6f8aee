-- Ductwork schema, version 4: the run's outstanding work, so a run whose
-- branches end detached completes when the last of them finishes. It counts
-- 1 for the end node until that finishes, plus every pending job and open
-- join on a detached branch; completions change it in their own transaction,
-- and the one that brings it to 0 completes the run. Runs started before
-- this version have no detached branches: 1 while unfinished, 0 once
-- completed.
ALTER TABLE ductwork_runs ADD COLUMN outstanding INTEGER NOT NULL DEFAULT 1;
UPDATE ductwork_runs SET outstanding = 0 WHERE status = 'completed';
