-- Dataset versions: each `keel eval lock` of a suite records the dataset it locked — its
-- hash, its case ids, the ids added and removed since the version before, who and why —
-- so `keel dataset history` lists versions and `keel eval history` tells a score change
-- from a dataset change (eval_runs.dataset_hash names the version a run used).
CREATE TABLE dataset_versions (
    suite         TEXT    NOT NULL,
    version       INTEGER NOT NULL,          -- 1, 2, … per suite
    hash          TEXT    NOT NULL,
    cases         INTEGER NOT NULL,
    case_ids_json TEXT    NOT NULL,          -- JSON array, in file order
    added_json    TEXT    NOT NULL,          -- ids not in the previous version
    removed_json  TEXT    NOT NULL,          -- ids of the previous version not here
    actor         TEXT    NOT NULL,
    reason        TEXT,
    at_ms         INTEGER NOT NULL,
    PRIMARY KEY (suite, version)
);
CREATE INDEX dataset_versions_hash ON dataset_versions (suite, hash);

-- Cases proposed from the dashboard ("add to dataset" on a trace or a review item): kept
-- here, not written to the suite's file, until `keel dataset pull SUITE` appends them —
-- so the change lands through a pull request, like prompts.
CREATE TABLE dataset_drafts (
    id            INTEGER PRIMARY KEY,
    suite         TEXT    NOT NULL,
    trace_id      TEXT    NOT NULL,
    case_json     TEXT    NOT NULL,
    added_by      TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    pulled_at_ms  INTEGER,                   -- NULL until pulled into the file
    UNIQUE (suite, trace_id)
);
