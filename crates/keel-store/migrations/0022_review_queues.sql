-- Human review. A call enters a review queue (`[[review_queues]]`) off the request path:
-- by a random sample, a failed or low online-eval score, negative feedback, a guardrail
-- flag, or by hand. Reviewers claim an item while they look at it (the claim expires, so
-- an abandoned tab does not hide an item), then label it or skip it. An item is done when
-- it has as many labels as its queue asks reviewers for.
CREATE TABLE review_items (
    id            INTEGER PRIMARY KEY,
    queue         TEXT    NOT NULL,
    trace_id      TEXT    NOT NULL,
    -- why it entered: sample | failed_eval | score_below | negative_feedback |
    -- guardrail_flagged | added
    reason        TEXT    NOT NULL,
    entered_at_ms INTEGER NOT NULL,
    needed        INTEGER NOT NULL,            -- labels (reviewers) this item needs
    labelled      INTEGER NOT NULL DEFAULT 0,  -- labels recorded so far
    added_by      TEXT,                        -- who added it by hand ('added' only)
    UNIQUE (queue, trace_id)
);
CREATE INDEX review_items_open ON review_items (queue, labelled, entered_at_ms);
CREATE INDEX review_items_entered ON review_items (queue, entered_at_ms);

-- Who is looking at which item, until when.
CREATE TABLE review_claims (
    item_id       INTEGER NOT NULL,
    reviewer      TEXT    NOT NULL,
    claimed_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (item_id, reviewer)
);

-- One reviewer's answer on one item: every label as answered, the verdict pulled out
-- (good | bad | unsure; NULL when the queue's schema has none) and a corrected output.
CREATE TABLE review_labels (
    item_id     INTEGER NOT NULL,
    queue       TEXT    NOT NULL,
    trace_id    TEXT    NOT NULL,
    reviewer    TEXT    NOT NULL,
    verdict     TEXT,
    labels_json TEXT    NOT NULL,
    correction  TEXT,
    at_ms       INTEGER NOT NULL,
    PRIMARY KEY (item_id, reviewer)
);
CREATE INDEX review_labels_queue_at ON review_labels (queue, at_ms);
CREATE INDEX review_labels_trace ON review_labels (trace_id);

-- Items a reviewer passed over: not offered to them again (others still see them).
CREATE TABLE review_skips (
    item_id  INTEGER NOT NULL,
    reviewer TEXT    NOT NULL,
    at_ms    INTEGER NOT NULL,
    PRIMARY KEY (item_id, reviewer)
);

-- How far each queue's intake has read. Traces and scores by rowid: rows are numbered
-- as they are written, so a call traced late (a long stream, a slow batch) or judged
-- later is still seen, once. Feedback by arrival time (a changed thumb updates its row in
-- place, keeping its rowid), re-read with a few seconds' overlap; a trace enters a queue
-- once however often it is seen. Traces feed samples and guardrail flags, scores the
-- online-eval rules, feedback the negative-feedback rule.
CREATE TABLE review_intake (
    queue           TEXT    PRIMARY KEY,
    traces_rowid    INTEGER NOT NULL,
    scores_rowid    INTEGER NOT NULL,
    feedback_at_ms  INTEGER NOT NULL
);
