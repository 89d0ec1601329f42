-- Scores: named values 0..1 on a trace. An online eval's judge writes them (source
-- 'online'; 'backfill' when `keel online run` judged a recorded call), a reviewer later
-- ('human'). One row per (trace, eval, metric, source): judging the same call again
-- replaces its scores.
CREATE TABLE scores (
    trace_id         TEXT    NOT NULL,
    eval             TEXT    NOT NULL,
    metric           TEXT    NOT NULL,
    source           TEXT    NOT NULL,
    value            REAL    NOT NULL,
    passed           INTEGER NOT NULL,              -- 0/1
    reason           TEXT,
    judge_cost_nanos INTEGER,                       -- NULL: no judge call, or unpriced
    created_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (trace_id, eval, metric, source)
);
CREATE INDEX scores_eval_created ON scores (eval, created_at_ms);

-- An online eval that could not judge a sampled call (the judge failed after its
-- retries, the call kept no text): counted per eval, the last error shown by
-- `keel online status`. Not a score: a judge outage must not read as bad answers.
CREATE TABLE online_eval_failures (
    eval          TEXT    NOT NULL,
    trace_id      TEXT    NOT NULL,
    at_ms         INTEGER NOT NULL,
    error         TEXT    NOT NULL
);
CREATE INDEX online_eval_failures_eval_at ON online_eval_failures (eval, at_ms);

-- Feedback on a call from the app's users (`POST /v1/feedback`): a number, a boolean
-- (stored as 1/0 in value_num) or a category (value_text). A later value for the same
-- (trace, name, source) replaces the earlier one; the change is audited.
CREATE TABLE feedback (
    trace_id   TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    value_num  REAL,
    value_text TEXT,
    comment    TEXT,
    key_id     TEXT,                                -- the virtual key that sent it, NULL for admin/open
    at_ms      INTEGER NOT NULL,
    PRIMARY KEY (trace_id, name, source)
);
CREATE INDEX feedback_at ON feedback (at_ms);
