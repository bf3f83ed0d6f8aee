-- Version 2: what halted a run, in columns of its own (the reason string
-- stays short and readable), and the panic stack of a job's last failure.

ALTER TABLE {schema}.ductwork_runs
    ADD COLUMN halt_node    text    NOT NULL DEFAULT '',
    ADD COLUMN halt_scope   text    NOT NULL DEFAULT '',
    ADD COLUMN halt_cause   text    NOT NULL DEFAULT '',
    ADD COLUMN halt_attempt integer NOT NULL DEFAULT 0,
    ADD COLUMN halt_stack   text    NOT NULL DEFAULT '';
ALTER TABLE {schema}.ductwork_jobs ADD COLUMN error_stack text NOT NULL DEFAULT '';
