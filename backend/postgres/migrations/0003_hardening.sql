-- Version 3: runs carry a random identity (part of every step's idempotency
-- key); jobs a retry base (a revive keeps the attempt count and starts a
-- fresh retry budget from it). Identity columns never hand out an ID twice,
-- rolled-back inserts included, so IDs need nothing here.
ALTER TABLE {schema}.ductwork_runs ADD COLUMN identity text NOT NULL DEFAULT '';
ALTER TABLE {schema}.ductwork_jobs ADD COLUMN retry_base integer NOT NULL DEFAULT 0;
