-- Retention (`[retention]`). Dropping captured text (`capture = "30d"`) updates traces;
-- only changes to the columns rollups read mark a day for recomputation, so dropping text
-- costs no rebuild. And the last capture cutoff passed per origin: cutoffs move once a
-- day, so later runs that day have nothing to read.

DROP TRIGGER traces_rollup_on_update;
CREATE TRIGGER traces_rollup_on_update
AFTER UPDATE OF started_at_ms, origin, model_requested, function, variant, feature, tenant,
    status, stream, input_tokens, output_tokens, cost_nanos, unpriced, latency_ms, ttft_ms
ON traces BEGIN
    INSERT OR IGNORE INTO trace_rollup_dirty (day_ms)
    VALUES (old.started_at_ms - ((old.started_at_ms % 86400000) + 86400000) % 86400000);
    INSERT OR IGNORE INTO trace_rollup_dirty (day_ms)
    VALUES (new.started_at_ms - ((new.started_at_ms % 86400000) + 86400000) % 86400000);
END;

CREATE TABLE retention_marks (
    origin                 TEXT    PRIMARY KEY,
    capture_done_before_ms INTEGER NOT NULL
);

-- Retention and erasure delete what derives from a trace by its id: these lookups must
-- not scan their tables while the write lock is held.
CREATE INDEX responses_trace ON responses (trace_id);
CREATE INDEX responses_tenant ON responses (tenant) WHERE tenant IS NOT NULL;
CREATE INDEX review_items_trace ON review_items (trace_id);
CREATE INDEX dataset_drafts_trace ON dataset_drafts (trace_id);
CREATE INDEX replay_cases_trace ON replay_cases (trace_id);
CREATE INDEX online_eval_failures_trace ON online_eval_failures (trace_id);
