-- Speed at scale: rollups for the dashboard's overview.
--
-- trace_rollups: per bucket (res_ms = 300000, five minutes; 3600000, one hour; 86400000,
-- one day; UTC),
-- origin and dimension value, the report's sums and log-scale histograms of latency and
-- time to first token (keel-store/src/histogram.rs). Dimensions are rolled up one at a
-- time (dim = all | model | function | variant | feature | tenant; value '(all)' or the
-- group's name — a variant's is function, U+001F, variant — '(none)' when unset), never
-- crossed. The trace writer keeps it up to date in
-- each batch's transaction; this migration's Rust step (rollup::rebuild_all) backfills
-- it from the traces already stored.
CREATE TABLE trace_rollups (
    res_ms           INTEGER NOT NULL,
    origin           TEXT    NOT NULL,
    dim              TEXT    NOT NULL,
    bucket_ms        INTEGER NOT NULL,   -- bucket start, Unix ms, a multiple of res_ms
    value            TEXT    NOT NULL,
    requests         INTEGER NOT NULL,
    errors           INTEGER NOT NULL,   -- status = 'error'
    input_tokens     INTEGER NOT NULL,
    output_tokens    INTEGER NOT NULL,
    calls_with_usage INTEGER NOT NULL,
    cost_nanos       INTEGER NOT NULL,   -- priced calls only
    unpriced         INTEGER NOT NULL,
    latency_hist     BLOB    NOT NULL,
    ttft_hist        BLOB    NOT NULL,   -- streamed calls with a time to first token
    PRIMARY KEY (res_ms, origin, dim, bucket_ms, value)
) WITHOUT ROWID;
CREATE INDEX trace_rollups_bucket ON trace_rollups (bucket_ms);

-- UTC days whose rollups no longer match the traces, because a trace was deleted or
-- changed (Keel itself only inserts). The writer (after each batch) and Store::open
-- recompute them from the traces.
CREATE TABLE trace_rollup_dirty (
    day_ms INTEGER PRIMARY KEY NOT NULL
);
CREATE TRIGGER traces_rollup_on_delete AFTER DELETE ON traces BEGIN
    INSERT OR IGNORE INTO trace_rollup_dirty (day_ms)
    VALUES (old.started_at_ms - ((old.started_at_ms % 86400000) + 86400000) % 86400000);
END;
CREATE TRIGGER traces_rollup_on_update AFTER UPDATE ON traces BEGIN
    INSERT OR IGNORE INTO trace_rollup_dirty (day_ms)
    VALUES (old.started_at_ms - ((old.started_at_ms % 86400000) + 86400000) % 86400000);
    INSERT OR IGNORE INTO trace_rollup_dirty (day_ms)
    VALUES (new.started_at_ms - ((new.started_at_ms % 86400000) + 86400000) % 86400000);
END;
