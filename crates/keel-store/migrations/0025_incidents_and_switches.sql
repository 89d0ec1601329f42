-- Incident response. Kill switches: an operator's "off" for a function, feature, key,
-- tenant or model — calls that match fail fast with 503 `disabled` until it is turned back
-- on; one row per switched-off scope (no row: on). Served by running gateways with the
-- registry snapshot. Budget freezes: spend against a budget stops until unfrozen.
-- Incidents: a scope and a window, opened by hand or by an alert rule, with their events
-- (notes, alerts attached, actions) in order. Every change is also in audit_events.

CREATE TABLE switches (
    kind   TEXT    NOT NULL,   -- function | feature | key | tenant | model
    value  TEXT    NOT NULL,
    reason TEXT    NOT NULL,
    actor  TEXT    NOT NULL,
    at_ms  INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
);

CREATE TABLE budget_freezes (
    budget TEXT    PRIMARY KEY,
    reason TEXT    NOT NULL,
    actor  TEXT    NOT NULL,
    at_ms  INTEGER NOT NULL
);

CREATE TABLE incidents (
    id              INTEGER PRIMARY KEY,
    title           TEXT    NOT NULL,
    kind            TEXT,              -- a playbook kind (hallucination, prompt-injection, cost-runaway, model-regression, …)
    scope           TEXT,              -- function=F | feature=X | tenant=T | model=M; NULL: global
    severity        TEXT    NOT NULL DEFAULT 'sev2',  -- sev1 (worst) … sev4
    status          TEXT    NOT NULL,  -- open | closed
    opened_at_ms    INTEGER NOT NULL,
    opened_by       TEXT    NOT NULL,
    first_signal_ms INTEGER NOT NULL,  -- the first alert (or the opening) — the timeline starts an hour before
    alert_rule      TEXT,              -- the rule that opened it, when one did
    closed_at_ms    INTEGER,
    closed_by       TEXT,
    summary         TEXT
);
CREATE INDEX incidents_open ON incidents (status, alert_rule);

CREATE TABLE incident_events (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    at_ms       INTEGER NOT NULL,
    kind        TEXT    NOT NULL,   -- opened | note | alert | action | closed
    actor       TEXT    NOT NULL,
    text        TEXT    NOT NULL
);
CREATE INDEX incident_events_incident ON incident_events (incident_id, id);
