-- Version 3: runs carry a random identity (part of every step's idempotency
-- key); jobs a retry base (a revive keeps the attempt count and starts a
-- fresh retry budget from it). InnoDB never hands out an AUTO_INCREMENT
-- value twice, rolled-back inserts included (MySQL 8 and MariaDB 10.2.4+
-- keep the counter across restarts), so IDs need nothing here.
--
-- ADD COLUMN is not idempotent on MySQL 8; Migrate takes a duplicate-column
-- error (1060) as "already applied" for a migration cut short.
ALTER TABLE ductwork_runs ADD COLUMN identity VARBINARY(64) NOT NULL DEFAULT '';
ALTER TABLE ductwork_jobs ADD COLUMN retry_base INT NOT NULL DEFAULT 0;
