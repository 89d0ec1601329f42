-- Replays (`keel replay`): recorded production inputs re-sent through a candidate
-- (another variant, prompt version or model). A run is one invocation; its cases are
-- written one by one as they complete, so an interrupted run keeps what it did.
-- Replayed calls are not production traffic and never appear in `traces`.

CREATE TABLE replay_runs (
    id              TEXT    PRIMARY KEY,   -- rpl_<uuid v7, simple>
    created_at_ms   INTEGER NOT NULL,
    finished_at_ms  INTEGER,               -- NULL while running, or when interrupted
    actor           TEXT    NOT NULL,
    function        TEXT    NOT NULL,
    candidate_kind  TEXT    NOT NULL,      -- variant | prompt_version | model
    candidate_value TEXT    NOT NULL,
    filters_json    TEXT    NOT NULL,      -- the trace selection: since, limit, filters
    cases           INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    skipped         INTEGER NOT NULL DEFAULT 0  -- traces without captured input
);
CREATE INDEX replay_runs_function ON replay_runs (function, created_at_ms);

CREATE TABLE replay_cases (
    run_id                  TEXT    NOT NULL REFERENCES replay_runs (id) ON DELETE CASCADE,
    idx                     INTEGER NOT NULL,
    trace_id                TEXT    NOT NULL,
    recorded_variant        TEXT,
    recorded_prompt_version INTEGER,
    recorded_model          TEXT,
    recorded_output         TEXT,
    recorded_input_tokens   INTEGER,
    recorded_output_tokens  INTEGER,
    recorded_cost_nanos     INTEGER,
    recorded_unpriced       INTEGER NOT NULL DEFAULT 0,
    recorded_latency_ms     INTEGER NOT NULL,
    new_variant             TEXT,
    new_prompt_version      INTEGER,
    new_model               TEXT,
    new_output              TEXT,
    new_input_tokens        INTEGER,
    new_output_tokens       INTEGER,
    new_cost_nanos          INTEGER,
    new_unpriced            INTEGER NOT NULL DEFAULT 0,
    new_latency_ms          INTEGER NOT NULL,
    new_error               TEXT,
    PRIMARY KEY (run_id, idx)
);
