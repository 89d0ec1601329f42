-- Scheduled canary evals (`[[canaries]]`). A lease per canary (`suite@model`) so that of
-- several replicas exactly one runs it; and every run: its trigger, the eval run it
-- recorded, the model version that answered, the run it was compared with (the last one
-- on the previous version) and the comparison's verdict.

CREATE TABLE canary_leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_ms INTEGER NOT NULL
);

CREATE TABLE canary_runs (
    id              INTEGER PRIMARY KEY,
    canary          TEXT    NOT NULL,   -- suite@model
    suite           TEXT    NOT NULL,
    model           TEXT    NOT NULL,
    trigger         TEXT    NOT NULL,   -- schedule | model_changed
    started_ms      INTEGER NOT NULL,
    finished_ms     INTEGER,
    run_id          TEXT,               -- the eval run (NULL when it failed to run)
    model_version   TEXT,               -- what answered: system_fingerprint, else the served model
    baseline_run_id TEXT,               -- the last run on the previous model version
    changed         INTEGER NOT NULL DEFAULT 0,   -- 1: a significant change from the baseline
    verdict_json    TEXT,
    error           TEXT
);
CREATE INDEX canary_runs_canary ON canary_runs (canary, id);
