-- Ductwork schema, version 1, for MySQL 8.0.1+ and MariaDB 10.8+ (SKIP LOCKED
-- and descending indexes, which let the claim scan stop after LIMIT rows).
--
-- Statements are separated by a semicolon at the end of a line and are run
-- one by one (no multiStatements needed). MySQL DDL is not transactional, so
-- every statement is idempotent: indexes are declared inside CREATE TABLE IF
-- NOT EXISTS (MySQL has no CREATE INDEX IF NOT EXISTS).
--
-- Times are BIGINT unix microseconds computed in SQL from the database's
-- clock (UTC_TIMESTAMP(6)), so the DSN's parseTime and loc settings and the
-- session time zone cannot change what is stored. Identifiers are VARBINARY:
-- they compare byte for byte, like text does on PostgreSQL and SQLite, with no
-- collation or trailing-space padding rules.

CREATE TABLE IF NOT EXISTS ductwork_runs (
  id          BIGINT NOT NULL AUTO_INCREMENT,
  pipeline    VARBINARY(255) NOT NULL,
  fingerprint VARBINARY(255) NOT NULL,
  status      VARBINARY(16) NOT NULL,
  input       LONGBLOB NULL,
  output      LONGBLOB NULL,
  error       MEDIUMBLOB NULL,
  metadata    MEDIUMBLOB NULL,
  created_at  BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL,
  PRIMARY KEY (id),
  KEY ductwork_runs_status (status, pipeline, fingerprint),
  KEY ductwork_runs_status_id (status, id),
  KEY ductwork_runs_pipeline (pipeline, id)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS ductwork_jobs (
  id              BIGINT NOT NULL AUTO_INCREMENT,
  run_id          BIGINT NOT NULL,
  node_id         VARBINARY(255) NOT NULL,
  scope           VARBINARY(255) NOT NULL,
  status          VARBINARY(16) NOT NULL,
  priority        INT NOT NULL DEFAULT 0,
  input           LONGBLOB NULL,
  output          LONGBLOB NULL,
  error           MEDIUMBLOB NULL,
  is_join         TINYINT NOT NULL DEFAULT 0,
  join_id         BIGINT NULL,
  arrival_join_id BIGINT NULL,
  arrival_slot    INT NULL,
  attempt         INT NOT NULL DEFAULT 1,
  crashes         INT NOT NULL DEFAULT 0,
  fence           BIGINT NOT NULL DEFAULT 0,
  process_id      VARBINARY(255) NULL,
  created_at      BIGINT NOT NULL,
  due_at          BIGINT NOT NULL,
  started_at      BIGINT NULL,
  finished_at     BIGINT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY ductwork_jobs_node (run_id, node_id, scope),
  KEY ductwork_jobs_claim (status, priority DESC, due_at, id),
  KEY ductwork_jobs_arrival (arrival_join_id, arrival_slot),
  KEY ductwork_jobs_process (process_id),
  KEY ductwork_jobs_run (run_id, id)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS ductwork_joins (
  id       BIGINT NOT NULL AUTO_INCREMENT,
  run_id   BIGINT NOT NULL,
  node_id  VARBINARY(255) NOT NULL,
  scope    VARBINARY(255) NOT NULL,
  expected INT NOT NULL,
  arrived  INT NOT NULL DEFAULT 0,
  priority INT NOT NULL DEFAULT 0,
  delay_us BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (id),
  UNIQUE KEY ductwork_joins_node (run_id, node_id, scope)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS ductwork_processes (
  id           VARBINARY(255) NOT NULL,
  host         VARBINARY(255) NOT NULL,
  pid          BIGINT NOT NULL,
  definitions  MEDIUMBLOB NULL,
  started_at   BIGINT NOT NULL,
  heartbeat_at BIGINT NOT NULL,
  beats        BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (id),
  KEY ductwork_processes_heartbeat (heartbeat_at)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS ductwork_values (
  run_id BIGINT NOT NULL,
  name   VARBINARY(255) NOT NULL,
  value  LONGBLOB NULL,
  PRIMARY KEY (run_id, name)
) ENGINE=InnoDB;
