-- Governance: virtual keys (only a hash of each secret is stored), alert events (what
-- fired, when, where it was sent), and the index that spend by key and key budgets read.

CREATE TABLE api_keys (
    id                  TEXT    PRIMARY KEY,   -- public id, the middle part of the key
    name                TEXT,
    secret_hash         TEXT    NOT NULL,      -- SHA-256 (hex) of the secret part
    prev_hash           TEXT,                  -- the secret before the last rotation...
    prev_valid_until_ms INTEGER,               -- ...accepted until then (grace period)
    tenant              TEXT    NOT NULL,
    feature             TEXT,
    models_json         TEXT,                  -- JSON array of allowed model/function names; NULL = all
    budget_nanos        INTEGER,
    budget_window       TEXT,                  -- day | week | month | total
    rpm                 INTEGER,
    tpm                 INTEGER,
    expires_at_ms       INTEGER,
    created_at_ms       INTEGER NOT NULL,
    created_by          TEXT    NOT NULL,
    revoked_at_ms       INTEGER,
    updated_at_ms       INTEGER NOT NULL
);

CREATE TABLE alert_events (
    id         INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    source     TEXT    NOT NULL,   -- rule | budget | spike | backend | test
    name       TEXT    NOT NULL,   -- the rule, budget or detector
    scope      TEXT    NOT NULL,   -- e.g. feature=support
    state      TEXT    NOT NULL,   -- firing | resolved | test
    value      REAL,
    threshold  REAL,
    message    TEXT    NOT NULL,
    dedupe_key TEXT    NOT NULL,   -- one firing per key until it resolves
    delivered  TEXT                -- JSON: destination -> "ok" or the error
);
CREATE INDEX alert_events_at ON alert_events (at_ms);
CREATE INDEX alert_events_dedupe ON alert_events (dedupe_key, id);

CREATE INDEX traces_key_time ON traces (key_id, started_at_ms) WHERE key_id IS NOT NULL;
