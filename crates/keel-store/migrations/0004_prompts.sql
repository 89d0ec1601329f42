-- Prompts as code: every distinct content of a prompt is a version; labels point at
-- versions and move only by a recorded act; audit_events is the append-only record of
-- every change (prompts, labels, and later keys, budgets, policies).

CREATE TABLE prompt_versions (
    name          TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    content_hash  TEXT    NOT NULL,
    content_json  TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    author        TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    commit_id     TEXT,
    PRIMARY KEY (name, version)
);

CREATE TABLE prompt_labels (
    name          TEXT    NOT NULL,
    label         TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (name, label)
);

CREATE TABLE prompt_label_moves (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL,
    label        TEXT    NOT NULL,
    from_version INTEGER,
    to_version   INTEGER NOT NULL,
    at_ms        INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    reason       TEXT    NOT NULL
);
CREATE INDEX prompt_label_moves_name ON prompt_label_moves (name, label, id);

CREATE TABLE audit_events (
    id           INTEGER PRIMARY KEY,
    at_ms        INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    from_value   TEXT,
    to_value     TEXT,
    reason       TEXT,
    details_json TEXT
);
CREATE INDEX audit_events_at ON audit_events (at_ms);
