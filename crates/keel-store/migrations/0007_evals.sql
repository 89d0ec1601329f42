-- Eval runs. Every trace gets an origin, so eval and replay traffic is traced like any
-- other call but kept apart from live traffic in reports and budgets. An eval run and
-- its per-case results are written as they come (a 20,000-case run never sits in
-- memory); the response cache lets an unchanged request skip the provider.

ALTER TABLE traces ADD COLUMN origin TEXT NOT NULL DEFAULT 'live';
CREATE INDEX traces_origin ON traces (origin, started_at_ms) WHERE origin <> 'live';

CREATE TABLE eval_runs (
    id             TEXT    PRIMARY KEY,
    suite          TEXT    NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,                 -- NULL while running or when interrupted
    status         TEXT    NOT NULL,        -- running | done | interrupted | error
    actor          TEXT    NOT NULL,
    dataset_hash   TEXT    NOT NULL,
    role           TEXT    NOT NULL,        -- candidate | baseline
    target_json    TEXT    NOT NULL,        -- what ran: function/variant, prompt, model
    function       TEXT,
    variant        TEXT,
    prompt_name    TEXT,
    prompt_version INTEGER,
    model          TEXT,
    upstream_model TEXT,
    release_id     TEXT,
    repeat         INTEGER NOT NULL,
    cases          INTEGER NOT NULL DEFAULT 0,   -- results written (cases × repeats)
    passed         INTEGER NOT NULL DEFAULT 0,
    baseline_run   TEXT,                         -- the run this one was compared with
    gate_passed    INTEGER,                      -- NULL when no gate was checked
    summary_json   TEXT                          -- statistics and gate verdict, at the end
);
CREATE INDEX eval_runs_suite ON eval_runs (suite, started_at_ms);
CREATE INDEX eval_runs_release ON eval_runs (release_id) WHERE release_id IS NOT NULL;

CREATE TABLE eval_results (
    run_id          TEXT    NOT NULL,
    case_id         TEXT    NOT NULL,
    repeat_idx      INTEGER NOT NULL,
    pass            INTEGER NOT NULL,
    score           REAL    NOT NULL,
    output          TEXT,
    error           TEXT,
    latency_ms      INTEGER NOT NULL,
    cost_nanos      INTEGER,
    input_tokens    INTEGER,
    output_tokens   INTEGER,
    cached          INTEGER NOT NULL DEFAULT 0,  -- served from the response cache
    trace_id        TEXT,
    assertions_json TEXT    NOT NULL,
    PRIMARY KEY (run_id, case_id, repeat_idx)
);

CREATE TABLE eval_cache (
    key           TEXT    PRIMARY KEY,           -- SHA-256 of the exact request
    response_json TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);
