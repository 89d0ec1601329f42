-- One row per request, one column per TraceRecord field.
-- `id` is the x-keel-request-id; a caller may reuse one, so it is indexed, not unique
-- (the implicit rowid orders rows that share an id).
CREATE TABLE traces (
    id                 TEXT    NOT NULL,
    started_at_ms      INTEGER NOT NULL,
    api                TEXT    NOT NULL,
    endpoint           TEXT    NOT NULL,
    key_id             TEXT,
    tenant             TEXT,
    feature            TEXT,
    user               TEXT,
    session            TEXT,
    tags               TEXT    NOT NULL DEFAULT '[]',  -- JSON array of strings
    model_requested    TEXT,
    provider           TEXT,
    upstream_model     TEXT,
    served_model       TEXT,
    system_fingerprint TEXT,
    stream             INTEGER NOT NULL,               -- 0/1
    input              TEXT,
    output             TEXT,
    input_tokens       INTEGER,
    output_tokens      INTEGER,
    cached_tokens      INTEGER,
    reasoning_tokens   INTEGER,
    cost_nanos         INTEGER,                        -- nano-dollars; NULL = unknown, never 0 for unknown
    unpriced           INTEGER NOT NULL,               -- 0/1
    latency_ms         INTEGER NOT NULL,
    ttft_ms            INTEGER,
    status             TEXT    NOT NULL,               -- ok | error | client_disconnected
    http_status        INTEGER NOT NULL,
    error_class        TEXT,
    error_message      TEXT,
    finish_reason      TEXT
);

CREATE INDEX traces_id ON traces (id);
CREATE INDEX traces_started_at ON traces (started_at_ms);
