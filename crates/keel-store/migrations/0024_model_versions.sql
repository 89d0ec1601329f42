-- The versions each model deployment answered with: OpenAI's `system_fingerprint`, else
-- the model the response reported (Anthropic's `model`, OpenAI's dated `model`). Kept
-- per (configured model, deployment = provider/upstream id, version) with when it was
-- first and last seen and how many calls it answered, so a version not seen within the
-- memory window is told apart from one a provider serves alongside others (flapping).
CREATE TABLE model_versions (
    model          TEXT    NOT NULL,
    deployment     TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    first_seen_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL,
    calls          INTEGER NOT NULL,
    first_trace_id TEXT    NOT NULL,
    PRIMARY KEY (model, deployment, version)
);

-- How far the version watch has read the traces table (by rowid: a trace written late
-- is still seen, once).
CREATE TABLE model_version_watch (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    traces_rowid INTEGER NOT NULL
);
