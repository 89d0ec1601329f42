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
